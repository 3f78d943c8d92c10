/// Writes graphs as Keras HDF5 weight files: legacy (`.h5`, full model when the graph has a Keras config,
/// weights-only otherwise) and Keras 3 `.weights.h5`. libhdf5 writes the metadata; tensor bytes are
/// placed at their datasets' offsets afterwards (kernel copies for untouched contiguous datasets), and
/// untouched chunked or compressed datasets are copied dataset-to-dataset (`H5Ocopy`).
public enum KerasH5Writer {
    /// Writes one tensor as a dataset. An unchanged dataset that is chunked, compressed or carries
    /// attributes of its own is copied whole by libhdf5 (`H5Ocopy`, keeping all of that); every other
    /// tensor gets a contiguous dataset whose bytes are placed at its file offset after the metadata is
    /// laid out (`writeQueuedData`), file-to-file in the kernel when they lie in an input file.
    static func write(_ tensor: Tensor, to h5: HDF5File, at datasetPath: String) throws {
        if let origin = (tensor.origin as? HDF5TensorOrigin)?.dataset, !(tensor.data is MemorySource),
            let info = try? origin.file.datasetInfo(origin.path), info.shape == tensor.shape,
            info.dtype == tensor.dtype || info.dtype == .opaque(name: "V2", bytesPerElement: 2) && tensor.dtype == .bf16,
            tensor.data.fileRegion == nil || info.attributeCount > (info.dtypeAttribute == nil ? 0 : 1)
        {
            try h5.copyDataset(from: origin.file, origin.path, to: datasetPath, dtype: tensor.dtype)
            WriteProgress.advance(tensor.data.byteCount)
            return
        }
        try h5.createDataset(datasetPath, dtype: tensor.dtype, shape: tensor.shape, placing: tensor.data, tensorName: tensor.name)
    }

    /// The provenance record as a root attribute (Keras reads only the attributes it knows).
    static func writeProvenance(_ graph: TensorGraph, to h5: HDF5File) throws {
        guard let provenance = graph.provenance else { return }
        try h5.writeStrings("/", Provenance.key, [try provenance.text(resolving: graph.pendingDigest)], scalar: true, utf8: true)
    }

    /// The legacy `layer_names` groups in order, each with its tensors in Keras's weight order.
    static func legacyGroups(_ graph: TensorGraph) -> [(name: String, tensors: [Tensor])] {
        // A layer of a nested model belongs to the group of the top-level layer holding it.
        var owners: [String: String] = [:]
        if case .keras(let config)? = graph.architecture {
            for entry in KerasConfig.flattened(KerasConfig.layers(of: config.json)) { owners[entry.layer.name] = entry.owner }
        }
        var groups: [(name: String, tensors: [Tensor])] = []
        var position: [String: Int] = [:]
        for layer in graph.layers where graph.kerasPlacement(layer)?.legacyGroup != KerasWeightPlacement.topLevelGroup {
            let group = graph.kerasPlacement(layer)?.legacyGroup ?? owners[layer.name] ?? layer.name
            if let i = position[group] {
                groups[i].tensors += layer.tensors
            } else {
                position[group] = groups.count
                groups.append((group, layer.tensors))
            }
        }
        return groups.map { group in
            // Keras lists a nested model's weights trainable first; keep the order the file had, and put
            // non-trainable statistics last for tensors that never were in a legacy file.
            let nonTrainable: Set<String> = ["moving_mean", "moving_variance", "running_mean", "running_var", "num_batches_tracked"]
            let ordered = group.tensors.enumerated().sorted { a, b in
                func key(_ e: (offset: Int, element: Tensor)) -> (Int, Int) {
                    if let i = (e.element.origin as? HDF5TensorOrigin)?.legacyIndex { return (i, e.offset) }
                    var local = StateDictGrouping.split(e.element.name).local
                    if local.hasSuffix(":0") { local = String(local.dropLast(2)) }
                    return (nonTrainable.contains(local) ? 1 << 40 : 0, e.offset)
                }
                return key(a) < key(b)
            }.map(\.element)
            return (group.name, ordered)
        }
    }

    /// Writes a legacy Keras `.h5`: a full model (root attributes, `model_weights`) when the graph has a
    /// Keras config, weights-only (layout at the root) otherwise.
    public static func writeLegacy(_ graph: TensorGraph, to output: OutputFile) throws -> [String] {
        var notes: [String] = []
        if case .huggingFace? = graph.architecture {
            notes.append("the Hugging Face config.json is not written into a Keras file")
        }
        let h5 = try HDF5File.create(output)
        let keras: ConfigDocument?
        if case .keras(let config)? = graph.architecture { keras = config } else { keras = nil }
        let savedBy = graph.fileStates[KerasSavedBy.self]
        let version = savedBy?.version ?? "3.0.0"
        let backend = savedBy?.backend ?? "jax"
        let root = keras == nil ? "/" : KerasH5Key.modelWeights
        func child(_ name: String) -> String { root == "/" ? name : root + "/" + name }
        if let keras {
            try h5.writeStrings("/", KerasH5Key.backend, [backend], scalar: true)
            try h5.writeStrings("/", KerasH5Key.kerasVersion, [version], scalar: true)
            let legacy = KerasConfig.legacyModelConfig(keras.json)
            let text = legacy == keras.json ? keras.text(style: .python) : legacy.serialized(.python)
            try h5.writeStrings("/", KerasH5Key.modelConfig, [text], scalar: true)
            if let training = savedBy?.trainingConfig {
                try h5.writeStrings("/", KerasH5Key.trainingConfig, [training], scalar: true)
            }
            try h5.createGroup(root)
        }
        let groups = legacyGroups(graph)
        try h5.writeNameList(root, KerasH5Key.layerNames, groups.map(\.name))
        try h5.writeStrings(root, KerasH5Key.backend, [backend], scalar: true)
        try h5.writeStrings(root, KerasH5Key.kerasVersion, [version], scalar: true)
        for group in groups {
            let groupPath = child(group.name)
            try h5.createGroup(groupPath)
            try h5.writeNameList(groupPath, KerasH5Key.weightNames, group.tensors.map(\.name))
            for tensor in group.tensors { try write(tensor, to: h5, at: groupPath + "/" + tensor.name) }
        }
        let topLevel = KerasWeightPlacement.topLevelGroup
        let topLayer = graph.layers.first { graph.kerasPlacement($0)?.legacyGroup == topLevel }
        if keras != nil, graph.fileStates[KerasH5FileState.self]?.topLevelWeights == true || topLayer != nil {
            let top = topLayer?.tensors ?? []
            try h5.createGroup(child(topLevel))
            try h5.writeNameList(child(topLevel), KerasH5Key.weightNames, top.map(\.name))
            for tensor in top { try write(tensor, to: h5, at: child(topLevel) + "/" + tensor.name) }
        }
        if let optimizer = graph.optimizer {
            if optimizer.layout as? KerasOptimizerLayout == .legacyH5, keras != nil {
                try h5.createGroup(KerasH5Key.optimizerWeights)
                try h5.writeNameList(KerasH5Key.optimizerWeights, KerasH5Key.weightNames, optimizer.tensors.map(\.name))
                for tensor in optimizer.tensors { try write(tensor, to: h5, at: KerasH5Key.optimizerWeights + "/" + tensor.name) }
            } else {
                notes.append("optimizer state (\(optimizer.tensors.count) tensors) dropped: it is kept only between files of the same Keras flavour")
            }
        }
        if keras == nil { notes.append("no Keras model config: wrote a weights-only legacy file (load it with model.load_weights)") }
        try finish(h5, graph)
        return notes
    }

    /// The Keras 3 saveable path of every layer: as read, or derived from the Keras config.
    static func saveablePaths(_ graph: TensorGraph) throws -> [String: String] {
        var derived: [String: String] = [:]
        if case .keras(let config)? = graph.architecture {
            derived = KerasH5Reader.keras3Paths(for: KerasConfig.layers(of: config.json))
        }
        var paths: [String: String] = [:]
        for layer in graph.layers where graph.kerasPlacement(layer)?.legacyGroup != KerasWeightPlacement.topLevelGroup {
            if let path = graph.kerasPlacement(layer)?.saveablePath ?? derived[layer.name] {
                paths[layer.name] = path
            } else if !layer.tensors.isEmpty {
                throw WSurgeryError.cannotExpress(
                    format: "Keras 3 .weights.h5", tensor: layer.tensors.first?.name,
                    reason:
                        "Keras 3 finds a layer's weights under layers/<class name>/vars, and the graph has no Keras config giving the class of layer '\(layer.name)'; write .h5 or .safetensors instead"
                )
            }
        }
        return paths
    }

    /// A layer's tensors by the saveable holding them, relative to the layer's own (no groups: its own
    /// variables; `query_dense`, `forward_layer/cell`: a composite's sublayers, `KerasComposites`), with
    /// the sublayer names of each group; sublayers read without variables come along empty. A tensor
    /// whose variable path names a sublayer the table cannot place is refused: Keras would not find it.
    static func sublayerSlots(_ layer: Layer, config: KerasLayerConfig?) throws -> [(groups: [String], (chain: [String], tensors: [Tensor]))] {
        let recorded = (layer.origin as? KerasWeightPlacement)?.sublayers ?? []
        var slots: [(groups: [String], (chain: [String], tensors: [Tensor]))] = [([], ([], []))]
        for sub in recorded { slots.append((sub.groups, (sub.chain, []))) }
        for tensor in layer.tensors {
            let chain = Array(KerasComposites.chain(ofTensor: tensor.name, inLayer: layer.name))
            if let i = slots.firstIndex(where: { $0.1.chain == chain }) {
                slots[i].1.tensors.append(tensor)
                continue
            }
            guard
                let groups = KerasComposites.groups(
                    ownerClass: layer.className ?? config?.className, ownerConfig: config?.config, chain: chain[...])
            else {
                throw WSurgeryError.cannotExpress(
                    format: "Keras 3 .weights.h5", tensor: tensor.name,
                    reason:
                        "its name puts it in sublayer '\(chain.joined(separator: "/"))' of layer '\(layer.name)' (\(layer.className ?? "class unknown")), and this tool does not know where Keras 3 keeps that sublayer's variables; write .h5 or .safetensors instead"
                )
            }
            slots.append((groups, (chain, [tensor])))
        }
        return slots
    }

    /// The dataset attribute naming a Keras 3 variable: Keras numbers a layer's variables (`vars/0`) and
    /// ignores other attributes, and without a config (a `.weights.h5`) a reader can name them only for
    /// the classes it knows. Writing the name keeps it for every class, the wrapped layer of a
    /// `TimeDistributed` and a subclassed model's layers included.
    static let variableNameAttribute = "wsurgery_variable"

    private static func recordVariableName(of tensor: Tensor, at datasetPath: String, in h5: HDF5File) throws {
        let components = tensor.name.split(separator: "/")
        guard let last = components.last, Int(last) == nil || components.dropLast().last != "vars" else { return }
        try h5.writeStrings(datasetPath, variableNameAttribute, [String(last)], scalar: true, utf8: true)
    }

    /// Writes a Keras 3 `.weights.h5`.
    public static func writeKeras3Weights(_ graph: TensorGraph, to output: OutputFile) throws -> [String] {
        let h5 = try HDF5File.create(output)
        return try writeKeras3Weights(graph, into: h5)
    }

    static func writeKeras3Weights(_ graph: TensorGraph, into h5: HDF5File) throws -> [String] {
        var notes: [String] = []
        let paths = try saveablePaths(graph)
        try h5.createGroup("layers")
        var configs: [String: KerasLayerConfig] = [:]
        if case .keras(let config)? = graph.architecture {
            for entry in KerasConfig.flattened(KerasConfig.layers(of: config.json)) { configs[entry.layer.name] = entry.layer }
        }
        for layer in graph.layers {
            guard let path = paths[layer.name] else { continue }
            let vars = path.isEmpty ? "vars" : path + "/vars"
            try h5.createGroup(vars)
            if path.isEmpty { continue }
            try h5.writeStrings(vars, "name", [layer.name], scalar: true, utf8: true)
            for (groups, tensors) in try sublayerSlots(layer, config: configs[layer.name]) {
                var at = path
                for (depth, group) in groups.enumerated() {
                    at += "/" + group
                    guard try !h5.exists(at + "/vars") else { continue }
                    try h5.createGroup(at + "/vars")
                    try h5.writeStrings(at + "/vars", "name", [tensors.chain[depth]], scalar: true, utf8: true)
                }
                for (i, tensor) in tensors.tensors.enumerated() {
                    try write(tensor, to: h5, at: "\(at)/vars/\(i)")
                    try recordVariableName(of: tensor, at: "\(at)/vars/\(i)", in: h5)
                }
            }
        }
        var modelName = graph.fileStates[KerasH5FileState.self]?.keras3ModelName
        if modelName == nil, case .keras(let config)? = graph.architecture { modelName = config.json["config"]?["name"]?.stringValue }
        try h5.createGroup("vars")
        if let modelName { try h5.writeStrings("vars", "name", [modelName], scalar: true, utf8: true) }
        if let own = graph.layers.first(where: { paths[$0.name] == "" }) {
            for (i, tensor) in own.tensors.enumerated() { try write(tensor, to: h5, at: "vars/\(i)") }
        }
        if let optimizer = graph.optimizer {
            if case .keras3(let name)? = optimizer.layout as? KerasOptimizerLayout {
                try h5.createGroup("optimizer/vars")
                if let name { try h5.writeStrings("optimizer/vars", "name", [name], scalar: true, utf8: true) }
                for (i, tensor) in optimizer.tensors.enumerated() { try write(tensor, to: h5, at: "optimizer/vars/\(i)") }
            } else {
                notes.append("optimizer state (\(optimizer.tensors.count) tensors) dropped: it is kept only between files of the same Keras flavour")
            }
        }
        try finish(h5, graph)
        return notes
    }

    /// Ends a file whose layout is complete: libhdf5 closes it (writing the metadata), the tensor bytes
    /// go in at their offsets, and the file is reopened for the provenance attribute, last because the
    /// input digest it records is computed while the datasets are written (`InputDigest`).
    static func finish(_ h5: HDF5File, _ graph: TensorGraph) throws {
        try h5.close()
        try h5.writeQueuedData()
        guard graph.provenance != nil else { return }
        let reopened = try h5.reopenForUpdate()
        try writeProvenance(graph, to: reopened)
        try reopened.close()
    }
}
