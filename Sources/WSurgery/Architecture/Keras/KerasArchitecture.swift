/// The editor of a Keras model config (Functional or Sequential, Keras 2 or 3, nested models included):
/// shapes are inferred from the config the way Keras computes them, every recorded shape is kept in
/// step, and a weight that no longer fits its layer's input is found by the layer's variable rules.
struct KerasArchitecture: ArchitectureEditor {
    let document: ConfigDocument

    var model: JSONValue { document.json }

    /// The convolution's own padding, or the ZeroPadding layer in front of it.
    func padding(ofConvolution layer: String) -> String? {
        let own = KerasConfig.layer(named: layer, in: model)?.config["padding"]?.stringValue
        let configs = configs(of: model)
        var current = configs[layer]
        var seen = Set<String>()
        while let config = current, config.inbound.count == 1, seen.insert(config.name).inserted {
            guard let source = configs[config.inbound[0]] else { break }
            if source.className.hasPrefix("ZeroPadding") { return "\(own ?? "valid") after \(source.className) '\(source.name)'" }
            current = source
        }
        return own
    }

    /// Normalization and Rescaling layers on the way from the input to `conv` (channels last).
    func inputPreprocessing(before conv: String, in graph: TensorGraph) throws -> [InputPreprocessing] {
        let upstream = try KerasConfigEdit.upstreamLayers(of: conv, in: graph, model: model).layers
        let configs = configs(of: model)
        var result: [InputPreprocessing] = []
        for layer in graph.layers where upstream.contains(layer.name) {
            guard let config = configs[layer.name]?.config, let className = configs[layer.name]?.className,
                LayerDetection.inputPreprocessingClasses.contains(className)
            else { continue }
            func values(_ key: String) -> [Double]? {
                if let number = config[key]?.doubleValue { return [number] }
                return config[key]?.arrayValue.map { $0.compactMap(\.doubleValue) }
            }
            let axes = config["axis"]?.arrayValue?.compactMap(\.intValue) ?? config["axis"]?.intValue.map { [$0] } ?? [-1]
            guard className == "Rescaling" || axes == [-1] || axes == [3] else {
                throw WSurgeryError.unsupportedLayer(
                    path: graph.sourcePath, layer: layer.name,
                    reason: "normalises over axes \(axes); only the channels-last axis of an image can be adapted")
            }
            switch className {
            case "Rescaling":
                result.append(
                    InputPreprocessing(
                        layer: layer.name, statistics: .rescaling(scale: values("scale") ?? [1], offset: values("offset") ?? [0]), storage: .config))
            default:
                if let mean = values("mean"), let variance = values("variance") {
                    result.append(InputPreprocessing(layer: layer.name, statistics: .normalization(mean: mean, variance: variance), storage: .config))
                } else if let m = WeightRoles.tensorIndex(in: layer, named: ["mean"]), let v = WeightRoles.tensorIndex(in: layer, named: ["variance"])
                {
                    // The values are in the weights; the pass reads them.
                    result.append(
                        InputPreprocessing(
                            layer: layer.name, statistics: .normalization(mean: [], variance: []), storage: .weights(mean: m, variance: v)))
                } else {
                    throw WSurgeryError.unsupportedLayer(
                        path: graph.sourcePath, layer: layer.name, reason: "a Normalization without mean and variance")
                }
            }
        }
        return result
    }

    func settingInputChannels(_ channels: Int, convolutions: [String], preprocessing: [InputPreprocessing], in graph: TensorGraph) throws
        -> ArchitectureEdit
    {
        var document = self.document
        var notes: [String] = []
        for conv in convolutions {
            let (edited, fields) = try KerasConfigEdit.settingInputChannels(
                document, graph: graph, conv: conv, channels: channels, preprocessing: preprocessing)
            document = edited
            if !fields.isEmpty { notes.append("Keras config: input channels set to \(channels) in " + fields.joined(separator: ", ")) }
        }
        return ArchitectureEdit(architecture: .keras(document), notes: notes)
    }

    func settingClasses(_ classes: Int, heads: [(layer: String, oldClasses: Int)], keep: [Int], in graph: TensorGraph) throws -> ArchitectureEdit {
        var document = self.document
        var notes: [String] = []
        for head in heads {
            let (edited, fields) = try KerasConfigEdit.settingClasses(
                document, graph: graph, head: head.layer, oldClasses: head.oldClasses, classes: classes)
            document = edited
            if !fields.isEmpty { notes.append("Keras config: \(classes) classes set in " + fields.joined(separator: ", ")) }
        }
        return ArchitectureEdit(architecture: .keras(document), notes: notes)
    }

    /// Every layer's shapes at the new size: convolution weights never depend on it, a Dense after global
    /// pooling does not either, a Dense fed by Flatten does (its fan-in is H' * W' * C). Any other weight
    /// that stops fitting is an error.
    func settingInputSize(height: Int, width: Int, in graph: TensorGraph) throws -> InputSizeEdit {
        let path = graph.sourcePath
        let old = try ShapeInference.infer(model: model, path: path)
        guard let recorded = ShapeInference.recordedInputShapes(of: model), recorded.count == 1, recorded[0].count == 4 else {
            throw WSurgeryError.unsupportedLayer(
                path: path, layer: KerasConfig.entryName(model) ?? "model",
                reason: "set-input-shape changes models with one image input (batch, height, width, channels)")
        }
        let layers = configs(of: model)
        let channelsFirst = layers.values.contains { $0.config["data_format"]?.stringValue == "channels_first" }
        var newInput = recorded[0]
        newInput[channelsFirst ? 2 : 1] = height
        newInput[channelsFirst ? 3 : 2] = width
        let new = try ShapeInference.infer(model: model, inputShapes: [newInput], path: path)
        try new.requireAll()

        // Only a Dense kernel's fan-in (its rows) may change with the input size.
        let misfits = try Self.misfits(graph, model: model, shapes: new, before: old)
        for m in misfits
        where
            !(layers[m.layer]?.className == "Dense" && StateDictGrouping.localName(m.tensor.name) == "kernel" && m.expected.count == 2
            && m.expected[1] == m.tensor.shape[1])
        {
            throw WSurgeryError.shapeMismatch(path: path, layer: m.layer, reason: m.description)
        }
        var result = InputSizeEdit(edit: ArchitectureEdit(architecture: nil))
        result.fanInChanges = misfits.map { m in
            FanInChange(misfit: m, grid: flattenedGrid(before: m.layer, layers: layers, old: old, new: new, channelsFirst: channelsFirst))
        }
        let (edited, fields) = KerasConfigEdit.refreshingShapes(document, with: new)
        result.edit = ArchitectureEdit(
            architecture: .keras(edited),
            notes: fields.isEmpty ? [] : ["Keras config: shapes updated in \(fields.count) field(s), input now \(ShapeText.python(newInput))"])
        result.layerShapes = new.order.filter { layers[$0] != nil }.map { name in
            LayerOutputShapes(layer: name, old: old.outputs[name]?.first, new: new.outputs[name]?.first)
        }
        result.globalPooling = new.order.filter { layers[$0]?.className.hasPrefix("Global") ?? false }
        return result
    }

    /// The (H, W, C) map a Dense kernel reads through a Flatten right before it, at the old and new size.
    func flattenedGrid(
        before layer: String, layers: [String: KerasLayerConfig], old: ShapeInference.Result, new: ShapeInference.Result, channelsFirst: Bool
    ) -> Result<FlattenedGrid, ArchitectureProblem> {
        guard let flatten = ShapeInference.flatten(before: layer, in: layers), let before = old.inputs[flatten]?.first,
            let after = new.inputs[flatten]?.first,
            before.count == 4, let h = before[1], let w = before[2], let c = before[3], let h2 = after[1], let w2 = after[2], after[3] == c
        else {
            return .failure(
                ArchitectureProblem(reason: "resampling needs a Flatten of a (height, width, channels) feature map right before the layer"))
        }
        if channelsFirst { return .failure(ArchitectureProblem(reason: "resampling supports channels_last feature maps only")) }
        return .success(FlattenedGrid(old: (h, w, c), new: (h2, w2)))
    }

    func removingLayers(_ selection: LayerSelection, in graph: TensorGraph) throws -> LayerRemovalEdit {
        let path = graph.sourcePath
        let names: [String]
        switch selection {
        case .named(let list): names = list
        case .top: names = try topStack(graph)
        }
        let edited = try KerasLayerRemoval.removing(Set(names), from: model, path: path)
        var shapes = try ShapeInference.infer(model: edited, path: path)
        try shapes.requireAll()
        var remaining = graph
        remaining.layers.removeAll { names.contains($0.name) }
        let before = try ShapeInference.infer(model: model, path: path)
        var misfits = try Self.misfits(remaining, model: edited, shapes: shapes, before: before)
        var notes: [String] = []
        if case .top(let keep) = selection, let recorded = ShapeInference.recordedInputShapes(of: edited), recorded.count == 1,
            recorded[0].count == 4
        {
            // include_top=False builds the backbone for any size: free the height and width when every
            // remaining layer takes any size and every weight still fits.
            let channelsFirst = configs(of: edited).values.contains { $0.config["data_format"]?.stringValue == "channels_first" }
            let (hAxis, wAxis) = channelsFirst ? (2, 3) : (1, 2)
            var free = recorded[0]
            free[hAxis] = nil
            free[wAxis] = nil
            /// The backbone composes at `h` x `w` with every weight fitting.
            func composes(_ shape: KerasShape) -> (ShapeInference.Result, [WeightMisfit])? {
                guard let result = try? ShapeInference.infer(model: edited, inputShapes: [shape], path: path), (try? result.requireAll()) != nil,
                    let found = try? Self.misfits(remaining, model: edited, shapes: result, before: before), found.count == misfits.count
                else { return nil }
                return (result, found)
            }
            // "Any size" is checked at sizes around the trained one (NASNet's cells compose at some sizes only).
            let probes: [KerasShape] =
                recorded[0][hAxis].flatMap { h in
                    recorded[0][wAxis].map { w in
                        [(1, 1), (16, 16), (32, 32), (h, w)].map { dh, dw in
                            var probe = recorded[0]
                            probe[hAxis] = h + dh
                            probe[wAxis] = w + dw
                            return probe
                        }
                    }
                } ?? []
            if free != recorded[0], keep {
                notes.append("input kept at \(ShapeText.python(recorded[0])) (\(option("keep-input-shape")))")
            } else if free != recorded[0] {
                let open = composes(free)
                let failing = open == nil ? free : probes.first { composes($0) == nil }
                if let open, failing == nil {
                    (shapes, misfits) = open
                    notes.append(
                        "input now \(ShapeText.python(free)), as include_top=False builds the backbone (\(option("keep-input-shape")) keeps \(ShapeText.python(recorded[0])))"
                    )
                } else {
                    notes.append(
                        "input kept at \(ShapeText.python(recorded[0])): the remaining layers do not compose at every size"
                            + (failing.map { " (not at \(ShapeText.python($0)))" } ?? ""))
                }
            }
        }
        let (refreshed, _) = KerasConfigEdit.refreshingShapes(ConfigDocument(json: edited, originalText: document.originalText), with: shapes)
        return LayerRemovalEdit(
            edit: ArchitectureEdit(
                architecture: .keras(refreshed),
                notes: notes + ["model output now " + shapes.modelOutputs.map(ShapeText.python).joined(separator: ", ")]),
            removed: names, misfits: misfits)
    }

    /// The layers after the last one with a spatial output on the way back from the (single) model output.
    func topStack(_ graph: TensorGraph) throws -> [String] {
        let path = graph.sourcePath
        let shapes = try ShapeInference.infer(model: model, path: path)
        let outputs = KerasConfig.outputs(of: model)
        guard outputs.count == 1, var current = outputs.first else {
            throw WSurgeryError.unsupportedLayer(
                path: path, layer: KerasConfig.entryName(model) ?? "model",
                reason: "removing the classifier stack needs a model with one output (it has \(outputs.count))")
        }
        let configs = configs(of: model)
        // The classifier starts at the last global pooling on the chain back from the output (MobileNet
        // pools with keepdims and classifies with a 1x1 convolution), else at the last Flatten.
        var chain: [String] = []
        var walker: String? = current
        while let name = walker, let config = configs[name], config.sublayers.isEmpty {
            chain.append(name)
            walker = config.inbound.count == 1 ? config.inbound[0] : nil
        }
        for isStart in [{ (c: String) in c.hasPrefix("Global") }, { (c: String) in c == "Flatten" }] {
            guard var start = chain.firstIndex(where: { isStart(configs[$0]?.className ?? "") }) else { continue }
            // A classifier convolution before the pooling (SqueezeNet's conv10, fer's conv2d_7: one filter
            // per class, then global pooling and softmax) is part of the top, as replace-head finds it,
            // with what only shapes its output in between and the Dropout before it.
            let keeping: Set<String> = ["Activation", "ReLU", "Softmax", "BatchNormalization", "Dropout"]
            if let heads = try? LayerDetection.classifierHeads(in: graph), heads.count == 1, let head = chain.firstIndex(of: heads[0]),
                head > start, chain[(start + 1)..<head].allSatisfy({ keeping.contains(configs[$0]?.className ?? "") })
            {
                start = head
                while start + 1 < chain.count, configs[chain[start + 1]]?.className == "Dropout" { start += 1 }
            }
            return Array(chain[...start])
        }
        var stack: [String] = []
        while let config = configs[current], try shapes.output(of: current).count <= 2 {
            if !config.sublayers.isEmpty {
                throw WSurgeryError.unsupportedLayer(
                    path: path, layer: current, reason: "the classifier stack reaches into nested model '\(current)'; name the layers to remove")
            }
            guard config.inbound.count == 1 else {
                throw WSurgeryError.unsupportedLayer(
                    path: path, layer: current, reason: "the classifier stack reaches '\(current)', which has \(config.inbound.count) inputs")
            }
            stack.append(current)
            current = config.inbound[0]
        }
        guard !stack.isEmpty else {
            throw WSurgeryError.unsupportedLayer(
                path: path, layer: outputs[0], reason: "the model output is already a spatial feature map; there is no classifier stack to remove")
        }
        return stack
    }

    /// `units` in the config, the readers found from the graph (through shape-keeping layers and the
    /// normalisation layers that follow the units), the shapes re-inferred.
    func resizingUnits(of layer: String, to units: Int, in graph: TensorGraph) throws -> UnitResizeEdit {
        let path = graph.sourcePath
        let old = KerasConfig.layer(named: layer, in: model)?.config["units"]?.intValue
        let edited = KerasConfigEdit.transformLayers(model) { entry in
            guard KerasConfig.entryName(entry) == layer, var config = entry["config"] else { return entry }
            var entry = entry
            config.set("units", .int(units))
            entry.set("config", config)
            return entry
        }
        let configs = configs(of: edited)
        let consumers = graph.consumers
        var queue = consumers[layer] ?? []
        var seen = Set<String>()
        var readers: [String] = []
        while !queue.isEmpty {
            let name = queue.removeFirst()
            guard seen.insert(name).inserted, let reader = graph.layer(named: name) else { continue }
            let className = configs[name]?.className ?? ""
            if reader.tensors.isEmpty {
                guard LayerShapes.shapePreserving.contains(className) else {
                    throw WSurgeryError.unsupportedLayer(
                        path: path, layer: name,
                        reason:
                            "reads '\(layer)' and is a \(className); only Dense, normalisation and shape-keeping layers can follow a resized Dense")
                }
                queue += consumers[name] ?? []
                continue
            }
            readers.append(name)
            if [.batchNorm, .layerNorm].contains(reader.kind) { queue += consumers[name] ?? [] }
        }
        let shapes = try ShapeInference.infer(model: edited, path: path)
        try shapes.requireAll()
        let (refreshed, _) = KerasConfigEdit.refreshingShapes(ConfigDocument(json: edited, originalText: document.originalText), with: shapes)
        let note = "Keras config: '\(layer)'.units \(old.map(String.init) ?? "?") -> \(units), shapes downstream updated"
        return UnitResizeEdit(edit: ArchitectureEdit(architecture: .keras(refreshed), notes: [note]), readers: readers)
    }

    func checkWeights(of graph: TensorGraph, before: TensorGraph) throws {
        let path = graph.sourcePath
        guard case .keras(let previous)? = before.architecture else { return }
        let shapes = try ShapeInference.infer(model: model, path: path)
        if let misfit = try Self.misfits(graph, model: model, shapes: shapes, before: try ShapeInference.infer(model: previous.json, path: path))
            .first
        {
            throw WSurgeryError.shapeMismatch(path: path, layer: misfit.layer, reason: misfit.description)
        }
    }

    /// Every weight against the shapes inferred from the config (layers whose shapes cannot be inferred
    /// are skipped), and every per-channel constant in the config against its input's channels.
    func checkConsistency(of graph: TensorGraph) throws {
        let path = graph.sourcePath
        let shapes = try ShapeInference.infer(model: model, path: path)
        let configs = configs(of: model)
        for layer in graph.layers where !layer.tensors.isEmpty {
            guard let config = configs[layer.name], config.sublayers.isEmpty, shapes.blockedBy[layer.name] == nil,
                let input = shapes.inputs[layer.name]?.first,
                let expected = WeightFit.expectedShapes(className: config.className, config: config.config, input: input)
            else { continue }
            if let (index, want) = WeightFit.misfits(layer, expected: expected).first {
                let misfit = WeightMisfit(layer: layer.name, index: index, tensor: layer.tensors[index], expected: want, input: input)
                throw WSurgeryError.shapeMismatch(
                    path: path, layer: layer.name, reason: "the model config and the weights disagree: " + misfit.description)
            }
        }
        for (name, config) in configs where LayerDetection.inputPreprocessingClasses.contains(config.className) {
            guard shapes.blockedBy[name] == nil, let channels = shapes.inputs[name]?.first?.last ?? nil else { continue }
            for key in ["mean", "variance", "scale", "offset"] {
                guard let count = config.config[key]?.arrayValue?.count, count != 1, count != channels else { continue }
                throw WSurgeryError.shapeMismatch(
                    path: path, layer: name, reason: "its config gives \(count) values for '\(key)' but its input has \(channels) channels")
            }
        }
    }

    /// Every layer config by name, nested models' layers included.
    func configs(of model: JSONValue) -> [String: KerasLayerConfig] {
        Dictionary(KerasConfig.flattened(KerasConfig.layers(of: model)).map { ($0.layer.name, $0.layer) }, uniquingKeysWith: { a, _ in a })
    }

    /// Every tensor whose shape differs from what its layer's inferred input needs. A layer with weights
    /// whose class has no rule is refused when its input differs from `before` (the shapes before the
    /// edit): whether its weights still fit cannot be told.
    static func misfits(_ graph: TensorGraph, model: JSONValue, shapes: ShapeInference.Result, before: ShapeInference.Result) throws -> [WeightMisfit]
    {
        let configs = Dictionary(
            KerasConfig.flattened(KerasConfig.layers(of: model)).map { ($0.layer.name, $0.layer) }, uniquingKeysWith: { a, _ in a })
        var result: [WeightMisfit] = []
        for layer in graph.layers where !layer.tensors.isEmpty {
            guard let config = configs[layer.name], config.sublayers.isEmpty else { continue }
            let input = try shapes.input(of: layer.name)
            guard let expected = WeightFit.expectedShapes(className: config.className, config: config.config, input: input) else {
                let old = before.inputs[layer.name]?.first
                if old != input {
                    throw WSurgeryError.unsupportedLayer(
                        path: graph.sourcePath, layer: layer.name,
                        reason:
                            "its input changes from \(old.map(ShapeText.python) ?? "?") to \(ShapeText.python(input)) and wsurgery cannot tell whether its \(config.className) weights depend on that"
                    )
                }
                continue
            }
            for (index, want) in WeightFit.misfits(layer, expected: expected) {
                result.append(WeightMisfit(layer: layer.name, index: index, tensor: layer.tensors[index], expected: want, input: input))
            }
        }
        return result
    }
}
