/// Reads Keras HDF5 weight files into a graph:
/// - legacy full model (`model_weights` group plus `model_config`), from Keras 2, tf.keras or Keras 3;
/// - legacy weights-only (`layer_names` at the root);
/// - Keras 3 `.weights.h5` (`layers/<auto_name>/vars/N`, nested models nested).
/// Layer order comes from `layer_names` or the config, never from HDF5 link order.
public enum KerasH5Reader {
    /// Reads any of the three layouts from `path`.
    public static func read(path: String) throws -> TensorGraph {
        try ProcessGuard.parsing(path) { try readWithoutGuard(path: path) }
    }

    /// Reads back an output this process has just written (`temporaryPath`, named `name` in errors),
    /// without the probe: the file came from libhdf5 here.
    static func readOwnOutput(path: String, name: String) throws -> TensorGraph {
        try readWithoutGuard(path: path, name: name, probing: false)
    }

    private static func readWithoutGuard(path: String, name: String? = nil, probing: Bool = true) throws -> TensorGraph {
        let raw = try InputFile(path: path)
        let h5 = try HDF5File.open(raw, name: name, probing: probing)
        // `layer_names`, or split as Keras splits a long list (`layer_names0`, `layer_names1`, ...).
        if try h5.hasAttribute("/", KerasH5Key.layerNames) || h5.hasAttribute("/", KerasH5Key.layerNames + "0") {
            return try readLegacy(h5, raw: raw, group: "/", flavor: .legacyWeightsOnly, accounting: probing)
        }
        if try h5.exists(KerasH5Key.modelWeights) {
            return try readLegacy(h5, raw: raw, group: KerasH5Key.modelWeights, flavor: .legacyFullModel, accounting: probing)
        }
        if try h5.exists("layers") || h5.exists("vars") {
            return try readKeras3(h5, raw: raw, config: nil, sourceFormat: .kerasWeightsH5, sourcePath: path, accounting: probing)
        }
        let top = try h5.children(of: "/").prefix(5).joined(separator: ", ")
        throw WSurgeryError.unknownHDF5Layout(
            path: path,
            reason: "no 'layer_names' attribute, 'model_weights' group or 'layers' group at the root (found: \(top.isEmpty ? "nothing" : top))")
    }

    /// Reads one dataset as a tensor: a file region when stored plainly, else through libhdf5.
    static func tensor(
        _ h5: HDF5File, raw: InputFile, datasetPath: String, name: String, layer: String, bfloat16Policy: Bool, legacyIndex: Int? = nil
    ) throws -> Tensor {
        guard try h5.exists(datasetPath) else { throw WSurgeryError.missingObject(path: h5.path, object: datasetPath, layer: layer) }
        let info = try h5.datasetInfo(datasetPath)
        var dtype = info.dtype
        // Keras 3's legacy writer stores bfloat16 as a bare 2-byte opaque type; the layer's policy names it.
        if case .opaque(_, 2) = dtype, info.dtypeAttribute == nil, bfloat16Policy { dtype = .bf16 }
        func tooLarge(_ reason: String) -> WSurgeryError {
            .unknownHDF5Layout(path: h5.path, reason: "dataset '\(datasetPath)': \(reason)")
        }
        let elements = try Checked.elementCount(info.shape, or: tooLarge)
        let byteCount: Int?
        switch dtype {
        case .opaque(_, let size?): byteCount = Checked.multiply(elements, size)
        default: byteCount = dtype.byteCount(elements: UInt64(elements)).flatMap { $0 <= UInt64(Checked.maxCount) ? Int($0) : nil }
        }
        guard let byteCount else { throw tooLarge("\(elements) elements of \(dtype.numpyName) are more than 2^60 bytes") }
        let bytes = UInt64(byteCount)
        let data: any TensorSource
        if let offset = info.contiguousOffset {
            guard offset <= raw.size, bytes <= raw.size - offset else {
                throw WSurgeryError.truncatedFile(path: h5.path, expectedBytes: offset &+ bytes, actualBytes: raw.size)
            }
            data = FileRegionSource(region: FileRegion(file: raw, offset: offset, length: bytes))
        } else {
            // Compressed, chunked or never written: bounded by what it stores, so a small file cannot
            // decode to terabytes.
            try Limits.current.checkExpansion(decoded: bytes, stored: info.storedBytes, path: h5.path, dataset: datasetPath)
            data = HDF5DatasetSource(file: h5, datasetPath: datasetPath, dtype: dtype, shape: info.shape, byteCount: bytes)
        }
        return Tensor(
            name: name, dtype: dtype, shape: info.shape, layout: StateDictGrouping.layout(name: name, shape: info.shape), data: data,
            origin: HDF5TensorOrigin(dataset: (h5, datasetPath), legacyIndex: legacyIndex))
    }

    /// The `wsurgery_provenance` root attribute, when it holds a provenance record.
    static func readProvenance(_ h5: HDF5File) throws -> Provenance? {
        try h5.stringAttribute("/", Provenance.key).flatMap(Provenance.init(text:))
    }

    // MARK: Legacy

    static func readLegacy(_ h5: HDF5File, raw: InputFile, group: String, flavor: KerasFlavor, accounting: Bool = true) throws -> TensorGraph {
        let path = h5.path
        func child(_ name: String) -> String { group == "/" ? name : group + "/" + name }
        var graph = TensorGraph(layers: [], layersInModelOrder: true, sourceFormat: .kerasLegacyH5, sourcePath: path, sourceFiles: [raw])
        var state = KerasH5FileState(kerasFlavor: flavor)
        graph.fileStates[KerasSavedBy.self] = KerasSavedBy(
            version: try h5.stringAttribute("/", KerasH5Key.kerasVersion) ?? h5.stringAttribute(group, KerasH5Key.kerasVersion),
            backend: try h5.stringAttribute("/", KerasH5Key.backend) ?? h5.stringAttribute(group, KerasH5Key.backend),
            trainingConfig: try h5.stringAttribute("/", KerasH5Key.trainingConfig))
        graph.provenance = try readProvenance(h5)
        var configLayers: [String: (layer: KerasLayerConfig, owner: String)] = [:]
        if let text = try h5.stringAttribute("/", KerasH5Key.modelConfig) {
            try Limits.current.checkConfig(bytes: UInt64(text.utf8.count), path: path, what: "model_config")
            let document: ConfigDocument
            do { document = try ConfigDocument(text: text) } catch {
                throw WSurgeryError.invalidConfig(path: path, reason: "model_config: \(error)")
            }
            graph.architecture = .keras(document)
            for entry in KerasConfig.flattened(KerasConfig.layers(of: document.json)) { configLayers[entry.layer.name] = entry }
        }
        guard let layerNames = try h5.stringsAttribute(group, KerasH5Key.layerNames) else {
            throw WSurgeryError.unknownHDF5Layout(path: path, reason: "'\(group)' has no 'layer_names' attribute")
        }
        // A nested model's weight names its sublayer first (`block1_conv1/kernel:0`), or, as Keras 3 writes
        // them, after the model (`stem/stem_conv/kernel`): the owner is the last component naming a layer.
        func owner(_ weightName: String) -> String? {
            weightName.split(separator: "/").dropLast().map(String.init).last { configLayers[$0] != nil }
                ?? StateDictGrouping.split(weightName).layer
        }
        for layerName in layerNames {
            let layerGroup = child(layerName)
            guard try h5.exists(layerGroup) else { throw WSurgeryError.missingObject(path: path, object: layerGroup, layer: layerName) }
            guard let weightNames = try h5.stringsAttribute(layerGroup, KerasH5Key.weightNames) else {
                throw WSurgeryError.unknownHDF5Layout(path: path, reason: "layer '\(layerName)' has no 'weight_names' attribute")
            }
            let config = configLayers[layerName]?.layer
            var tensors: [Tensor] = []
            for (index, weightName) in weightNames.enumerated() {
                // A weight of a nested model names its sublayer first ("block1_conv1/kernel:0").
                let sublayer = config.flatMap { c in c.sublayers.isEmpty ? nil : configLayers[StateDictGrouping.split(weightName).layer]?.layer }
                let bf16 = (sublayer ?? config)?.dtypePolicy == "bfloat16"
                tensors.append(
                    try tensor(
                        h5, raw: raw, datasetPath: layerGroup + "/" + weightName, name: weightName, layer: layerName, bfloat16Policy: bf16,
                        legacyIndex: index))
            }
            let placement = KerasWeightPlacement(legacyGroup: layerName)
            if let config, !config.sublayers.isEmpty {
                // Nested model: one layer per sublayer, in the nested config's order.
                graph.layers.append(Layer(name: layerName, kind: .model, className: config.className, inbound: config.inbound, origin: placement))
                for (sub, _) in KerasConfig.flattened(config.sublayers) {
                    let own = tensors.filter { owner($0.name) == sub.name }
                    graph.layers.append(
                        Layer(
                            name: sub.name, kind: LayerKind(kerasClassName: sub.className), className: sub.className,
                            tensors: own, inbound: sub.inbound, origin: placement))
                }
                let claimed = Set(KerasConfig.flattened(config.sublayers).map(\.layer.name))
                let orphans = tensors.filter { owner($0.name).map { !claimed.contains($0) } ?? true }
                if !orphans.isEmpty { graph.layers[graph.layers.firstIndex { $0.name == layerName }!].tensors = orphans }
            } else {
                let kind = config.map { LayerKind(kerasClassName: $0.className) } ?? StateDictGrouping.inferKind(layer: layerName, tensors: tensors)
                graph.layers.append(
                    Layer(
                        name: layerName, kind: kind, className: config?.className, tensors: tensors,
                        inbound: config?.inbound ?? [], origin: placement))
            }
        }
        // Keras 3 writes the model's own variables under `top_level_model_weights`, outside `layer_names`.
        let topLevel = KerasWeightPlacement.topLevelGroup
        if group != "/", try h5.exists(child(topLevel)), let names = try h5.stringsAttribute(child(topLevel), KerasH5Key.weightNames) {
            let tensors = try names.enumerated().map { index, name in
                try tensor(
                    h5, raw: raw, datasetPath: child(topLevel) + "/" + name, name: name, layer: topLevel, bfloat16Policy: false, legacyIndex: index)
            }
            state.topLevelWeights = true
            if !tensors.isEmpty {
                graph.layers.append(Layer(name: topLevel, kind: .unknown, tensors: tensors, origin: KerasWeightPlacement(legacyGroup: topLevel)))
            }
        }
        graph.fileStates[KerasH5FileState.self] = state
        if group != "/", try h5.exists(KerasH5Key.optimizerWeights) {
            let names = try h5.stringsAttribute(KerasH5Key.optimizerWeights, KerasH5Key.weightNames) ?? []
            let tensors = try names.map { name in
                try tensor(
                    h5, raw: raw, datasetPath: KerasH5Key.optimizerWeights + "/" + name, name: name, layer: KerasH5Key.optimizerWeights,
                    bfloat16Policy: false)
            }
            graph.optimizer = OptimizerState(layout: KerasOptimizerLayout.legacyH5, tensors: tensors)
        }
        // An output read back (`accounting` false) holds only what this process wrote from the graph.
        if accounting { try accountForEveryDataset(h5, in: &graph, optimizerGroups: [KerasH5Key.optimizerWeights]) }
        return graph
    }

    /// Every dataset of the file must be a tensor the graph read (a weight, the optimizer's state): one
    /// that is not, a variable Keras would load that this reader did not find, is an error naming it, so
    /// an input with weights never becomes an output without them. Datasets under the optimizer's group
    /// that were not read are noted (they are training state, not weights).
    static func accountForEveryDataset(_ h5: HDF5File, in graph: inout TensorGraph, optimizerGroups: [String]) throws {
        var read = Set<String>()
        for tensor in graph.tensors + (graph.optimizer?.tensors ?? []) {
            if let path = (tensor.origin as? HDF5TensorOrigin)?.dataset?.path { read.insert(path) }
        }
        var unread: [String] = []
        var visited = Set<UInt64>()
        var pending: [(path: String, depth: Int)] = [("/", 0)]
        while let (group, depth) = pending.popLast() {
            guard depth < 64, visited.insert(h5.objectAddress(group)).inserted else { continue }
            for name in try h5.children(of: group) {
                let child = group == "/" ? name : group + "/" + name
                switch try h5.objectType(child) {
                case .group: pending.append((child, depth + 1))
                case .dataset: if !read.contains(child) { unread.append(child) }
                case .other: continue
                }
            }
        }
        unread.sort { naturalKey($0).lexicographicallyPrecedes(naturalKey($1)) }
        let training = unread.filter { path in optimizerGroups.contains { path.hasPrefix($0 + "/") } }
        if let first = unread.first(where: { path in !optimizerGroups.contains { path.hasPrefix($0 + "/") } }) {
            let more = unread.count - training.count - 1
            throw WSurgeryError.unknownHDF5Layout(
                path: h5.path,
                reason:
                    "dataset '\(first)'\(more > 0 ? " (and \(more) more)" : "") is not a weight this reader places in a layer; refusing rather than dropping it"
            )
        }
        if !training.isEmpty {
            let listed = training.prefix(3).joined(separator: ", ") + (training.count > 3 ? ", ..." : "")
            graph.readerNotes.append("\(training.count) optimizer dataset(s) not read (\(listed)): training state, not weights")
        }
    }

    // MARK: Keras 3

    /// Reads a Keras 3 `.weights.h5`; `config` (from a `.keras` archive) supplies order, classes and
    /// variable names when present.
    static func readKeras3(
        _ h5: HDF5File, raw: InputFile, config: ConfigDocument?, sourceFormat: CheckpointFormat, sourcePath: String, accounting: Bool = true
    ) throws
        -> TensorGraph
    {
        var graph = TensorGraph(layers: [], layersInModelOrder: config != nil, sourceFormat: sourceFormat, sourcePath: sourcePath, sourceFiles: [raw])
        var state = KerasH5FileState(kerasFlavor: sourceFormat == .kerasArchive ? .kerasArchive : .keras3Weights)
        if let config { graph.architecture = .keras(config) }
        if try h5.exists("vars") { state.keras3ModelName = try h5.stringAttribute("vars", "name") }
        graph.fileStates[KerasH5FileState.self] = state
        graph.provenance = try readProvenance(h5)

        // Every saveable: a group holding `vars`, found under `layers` (recursively for nested models).
        // A damaged file may link a group into itself: each group is visited once, and not deeper than 64.
        var saveables: [String] = []
        var visited = Set<UInt64>()
        func walk(_ groupPath: String, depth: Int) throws {
            guard depth < 64 else {
                throw WSurgeryError.unknownHDF5Layout(path: h5.path, reason: "groups nested more than 64 deep under 'layers' at '\(groupPath)'")
            }
            for name in try h5.children(of: groupPath) where name != "vars" {
                let childPath = groupPath + "/" + name
                guard try h5.objectType(childPath) == .group else { continue }
                guard visited.insert(h5.objectAddress(childPath)).inserted else {
                    throw WSurgeryError.unknownHDF5Layout(path: h5.path, reason: "'\(childPath)' links back to a group already seen (a cycle)")
                }
                if try h5.exists(childPath + "/vars") { saveables.append(childPath) }
                try walk(childPath, depth: depth + 1)
            }
        }
        // Functional and Sequential models keep their layers under `layers`; a subclassed model keeps each
        // sublayer under the attribute that holds it (`conv/vars`, `block1/layers_/conv2d/vars`), at any
        // depth: every group of the file holding `vars` is a saveable, the optimizer's aside.
        for name in try h5.children(of: "/") where name != "vars" && name != "optimizer" {
            guard try h5.objectType(name) == .group else { continue }
            guard visited.insert(h5.objectAddress(name)).inserted else { continue }
            if try h5.exists(name + "/vars") { saveables.append(name) }
            try walk(name, depth: 1)
        }

        let configLayers = config.map { KerasConfig.flattened(KerasConfig.layers(of: $0.json)) } ?? []
        let expectedPaths = config.map { keras3Paths(for: KerasConfig.layers(of: $0.json)) } ?? [:]
        var saveableNames: [String: String] = [:]  // saveable path -> layer name
        for saveable in saveables {
            let attributeName = try h5.stringAttribute(saveable + "/vars", "name")
            let fromConfig = expectedPaths.first(where: { $0.value == saveable })?.key
            saveableNames[saveable] = attributeName ?? fromConfig ?? String(saveable.split(separator: "/").last!)
        }
        func configLayer(_ saveable: String) -> KerasLayerConfig? {
            configLayers.first(where: { $0.layer.name == saveableNames[saveable] })?.layer
        }
        func className(_ saveable: String) -> String? {
            // Without a config the class is read off an automatic name: the group's (`layers/conv2d`), else
            // the layer's own (a subclassed model's `head/vars` is named `dense_1`).
            configLayer(saveable)?.className ?? KerasConfig.className(forAutoName: String(saveable.split(separator: "/").last!))
                ?? saveableNames[saveable].flatMap { KerasConfig.className(forAutoName: $0) }
        }
        func isModel(_ saveable: String) throws -> Bool {
            if let c = className(saveable), LayerKind(kerasClassName: c) == .model { return true }
            return try h5.exists(saveable + "/layers")
        }
        // The sublayers of a layer Keras builds out of sublayers (`KerasComposites`) belong to that layer.
        var compositeOwner: [String: String] = [:]
        for saveable in saveables {
            guard let owner = saveables.filter({ saveable.hasPrefix($0 + "/") }).min(by: { $0.count < $1.count }),
                KerasComposites.isComposite(className(owner))
            else { continue }
            compositeOwner[saveable] = owner
        }
        // Keras 3 names a variable by the name scopes it was made in: a Sequential model builds its layers
        // inside its own (`seqcnn/c1/kernel`), a Functional model's layers are built before it (`c1/kernel`).
        let rootIsSequential: Bool
        if let config {
            rootIsSequential = config.json["class_name"]?.stringValue == "Sequential"
        } else {
            rootIsSequential =
                try h5.exists("layers") && state.keras3ModelName != nil
                && !h5.children(of: "layers").contains { $0.hasPrefix("input_layer") }
        }
        func scope(_ saveable: String) throws -> String {
            let models = try saveables.filter { saveable.hasPrefix($0 + "/") }.filter(isModel)
            if let model = models.max(by: { $0.count < $1.count }) {
                let sequential =
                    configLayer(model).map { $0.className == "Sequential" }
                    ?? model.split(separator: "/").last!.hasPrefix("sequential")
                return sequential ? saveableNames[model]! + "/" : ""
            }
            return rootIsSequential ? (state.keras3ModelName ?? config?.json["config"]?["name"]?.stringValue).map { $0 + "/" } ?? "" : ""
        }

        // The variable name wsurgery writes beside a dataset (`KerasH5Writer.variableNameAttribute`), when
        // it is one: a plain identifier, not a path or a number that would clash with `vars/N`.
        func recordedVariableName(_ dataset: String) throws -> String? {
            guard try h5.hasAttribute(dataset, KerasH5Writer.variableNameAttribute),
                let name = try? h5.stringAttribute(dataset, KerasH5Writer.variableNameAttribute),
                (1...128).contains(name.count), Int(name) == nil,
                name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") })
            else { return nil }
            return name
        }

        var entries: [(path: String, name: String, config: KerasLayerConfig?)] = []
        for saveable in saveables where compositeOwner[saveable] == nil {
            entries.append((saveable, saveableNames[saveable]!, configLayer(saveable)))
        }
        if config != nil {
            // Config order; saveables the config does not know go last.
            let order = Dictionary(configLayers.enumerated().map { ($1.layer.name, $0) }, uniquingKeysWith: { a, _ in a })
            entries.sort { (order[$0.name] ?? Int.max, $0.path) < (order[$1.name] ?? Int.max, $1.path) }
        } else {
            // No config: the file does not record model order, so sort saveable paths naturally
            // (`conv2d`, `conv2d_1`, ..., `conv2d_10`) for a stable, reproducible order.
            entries.sort { naturalKey($0.path).lexicographicallyPrecedes(naturalKey($1.path)) }
        }
        for entry in entries {
            let className = className(entry.path)
            let prefix = try scope(entry.path) + entry.name
            let bf16 = entry.config?.dtypePolicy == "bfloat16"
            func read(_ saveable: String, names variableNames: [String]?, as path: String) throws -> [Tensor] {
                let vars = saveable + "/vars"
                let indices = try h5.children(of: vars).compactMap { Int($0) }.sorted()
                var names = variableNames?.count == indices.count ? variableNames : nil
                if names == nil {
                    // Names wsurgery recorded, used only when every variable has one and they differ.
                    let recorded = try indices.map { try recordedVariableName("\(vars)/\($0)") }
                    if !recorded.isEmpty, !recorded.contains(nil), Set(recorded).count == recorded.count { names = recorded.map { $0! } }
                }
                return try indices.enumerated().map { position, i in
                    let tensorName = names.map { "\(path)/\($0[position])" } ?? "\(path)/vars/\(i)"
                    return try tensor(h5, raw: raw, datasetPath: "\(vars)/\(i)", name: tensorName, layer: entry.name, bfloat16Policy: bf16)
                }
            }
            let names = entry.config?.variableNames ?? className.flatMap { KerasConfig.variableNames(className: $0, config: .object([])) }
            var tensors = try read(entry.path, names: names, as: prefix)
            // A composite's sublayers, in Keras's weight order, each named by its variable path.
            var sublayers: [KerasSublayer] = []
            let subs = saveables.filter { compositeOwner[$0] == entry.path }.map { sub in
                (path: sub, groups: sub.dropFirst(entry.path.count + 1).split(separator: "/").map(String.init))
            }
            for sub in subs.sorted(by: { a, b in
                a.groups.map { (KerasComposites.rank(ofGroup: $0), $0) }.lexicographicallyPrecedes(
                    b.groups.map { (KerasComposites.rank(ofGroup: $0), $0) }, by: <)
            }) {
                let chain = sub.groups.indices.map { i in
                    saveableNames[entry.path + "/" + sub.groups[...i].joined(separator: "/")] ?? sub.groups[i]
                }
                let count = try h5.children(of: sub.path + "/vars").compactMap { Int($0) }.count
                let variableNames = KerasComposites.variableNames(
                    ownerClass: className, ownerConfig: entry.config?.config, groups: sub.groups, count: count)
                tensors += try read(sub.path, names: variableNames, as: ([prefix] + chain).joined(separator: "/"))
                sublayers.append(KerasSublayer(chain: chain, groups: sub.groups))
            }
            let kind = className.map { LayerKind(kerasClassName: $0) } ?? StateDictGrouping.inferKind(layer: entry.name, tensors: tensors)
            graph.layers.append(
                Layer(
                    name: entry.name, kind: kind, className: className, tensors: tensors,
                    inbound: entry.config?.inbound ?? [], origin: KerasWeightPlacement(saveablePath: entry.path, sublayers: sublayers)))
        }
        // Root-level variables of the model itself, if any.
        if try h5.exists("vars") {
            let indices = try h5.children(of: "vars").compactMap { Int($0) }.sorted()
            if !indices.isEmpty {
                let name = state.keras3ModelName ?? "model"
                let tensors = try indices.map {
                    try tensor(h5, raw: raw, datasetPath: "vars/\($0)", name: "\(name)/vars/\($0)", layer: name, bfloat16Policy: false)
                }
                graph.layers.append(Layer(name: name, kind: .model, tensors: tensors, origin: KerasWeightPlacement(saveablePath: "")))
            }
        }
        if try h5.exists("optimizer/vars") {
            let indices = try h5.children(of: "optimizer/vars").compactMap { Int($0) }.sorted()
            let tensors = try indices.map {
                try tensor(h5, raw: raw, datasetPath: "optimizer/vars/\($0)", name: "optimizer/vars/\($0)", layer: "optimizer", bfloat16Policy: false)
            }
            graph.optimizer = OptimizerState(
                layout: KerasOptimizerLayout.keras3(name: try h5.stringAttribute("optimizer/vars", "name")), tensors: tensors)
        }
        if accounting { try accountForEveryDataset(h5, in: &graph, optimizerGroups: ["optimizer"]) }
        return graph
    }

    /// A sort key comparing digit runs by value (`conv2d_2` before `conv2d_10`).
    static func naturalKey(_ s: String) -> [NaturalPart] {
        var parts: [NaturalPart] = []
        var digits = ""
        var text = ""
        for c in s {
            if c.isASCII && c.isNumber {
                if !text.isEmpty {
                    parts.append(.text(text))
                    text = ""
                }
                digits.append(c)
            } else {
                if !digits.isEmpty {
                    parts.append(.number(Int(digits) ?? 0))
                    digits = ""
                }
                text.append(c)
            }
        }
        if !text.isEmpty { parts.append(.text(text)) }
        if !digits.isEmpty { parts.append(.number(Int(digits) ?? 0)) }
        return parts
    }

    enum NaturalPart: Comparable {
        case number(Int)
        case text(String)
    }

    /// The saveable path Keras 3 gives each layer of a model config: `layers/<snake_case(class)>[_N]`,
    /// numbered in order among siblings; nested models nest (`layers/functional/layers/dense`).
    static func keras3Paths(for layers: [KerasLayerConfig], prefix: String = "layers") -> [String: String] {
        var used: [String: Int] = [:]
        var paths: [String: String] = [:]
        for layer in layers {
            let base = KerasConfig.snakeCase(KerasConfig.pythonClassName(layer.className))
            let count = used[base, default: 0]
            used[base] = count + 1
            let path = "\(prefix)/\(count == 0 ? base : "\(base)_\(count)")"
            paths[layer.name] = path
            if !layer.sublayers.isEmpty {
                paths.merge(keras3Paths(for: layer.sublayers, prefix: path + "/layers")) { a, _ in a }
            }
        }
        return paths
    }
}
