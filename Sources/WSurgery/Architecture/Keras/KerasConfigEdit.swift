/// Rewrites a Keras model config so it describes the edited tensors: input shapes when the first
/// convolution takes another number of channels, `units` / `filters` and the shapes downstream when the
/// head has another number of classes. Edits touch only the fields that change, so the rest of the
/// config comes out as it was.
enum KerasConfigEdit {
    /// Layer classes that leave the channel count as it is, so they may sit between the input and the
    /// first convolution, or after the head.
    static let channelPreserving: Set<String> = LayerShapes.shapePreserving.union([
        "InputLayer", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
        "Resizing", "CenterCrop", "RandomCrop", "UpSampling1D", "UpSampling2D", "UpSampling3D",
        "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
        "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
        "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    ])

    /// The config of a graph whose first convolution `conv` now takes `channels` input channels: input
    /// layer shapes, `build_config` input shapes and the recorded tensor shapes on the way from the inputs
    /// to `conv` get the new channel count.
    static func settingInputChannels(
        _ document: ConfigDocument, graph: TensorGraph, conv: String, channels: Int, preprocessing: [InputPreprocessing] = []
    ) throws -> (ConfigDocument, [String]) {
        let model = document.json
        let (upstream, containing) = try upstreamLayers(of: conv, in: graph, model: model)
        let newValues = Dictionary(preprocessing.map { ($0.layer, $0) }, uniquingKeysWith: { a, _ in a })
        let channelsFirst = KerasConfig.layer(named: conv, in: model)?.config["data_format"]?.stringValue == "channels_first"
        var edited: [String] = []
        func shape(_ value: JSONValue) -> JSONValue { setChannel(value, channels, channelsFirst: channelsFirst) }
        // Input shapes recorded on a layer or model entry: InputLayer `batch_shape` (Keras 3) /
        // `batch_input_shape` (Keras 2), a Sequential's `build_input_shape`, `build_config.input_shape`.
        func rewriteInputShapes(_ entry: inout JSONValue, _ label: String) {
            var config = entry["config"] ?? .null
            for key in ["batch_shape", "batch_input_shape", "build_input_shape"] where config[key]?.arrayValue != nil {
                config.set(key, shape(config[key]!))
                edited.append("\(label).\(key)")
            }
            if entry["config"] != nil { entry.set("config", config) }
            if rewriteBuildInputShape(&entry, shape) { edited.append("\(label).build_config.input_shape") }
        }
        var result = transformLayers(model) { entry in
            var entry = entry
            let name = KerasConfig.entryName(entry) ?? ""
            if upstream.contains(name) || name == conv || containing.contains(name) { rewriteInputShapes(&entry, name) }
            if let values = newValues[name], case .config = values.storage, var config = entry["config"] {
                for (key, list) in values.configFields {
                    // A Rescaling's one value stays a number; a Normalization keeps its lists.
                    let scalar = list.count == 1 && config[key]?.arrayValue == nil
                    config.set(key, scalar ? .number(JSONValue.numberText(list[0])) : .array(list.map { .number(JSONValue.numberText($0)) }))
                    edited.append("\(name).\(key)")
                }
                entry.set("config", config)
            }
            if let nodes = entry["inbound_nodes"] {
                entry.set("inbound_nodes", rewritingTensorShapes(nodes, from: upstream, shape))
            }
            return entry
        }
        rewriteInputShapes(&result, "model")
        return (ConfigDocument(json: result, originalText: document.originalText), edited)
    }

    /// The layers between the model input and `conv` (walking back over layers that keep the channels,
    /// leaving nested models through their inputs), and the models holding `conv` or any of them.
    static func upstreamLayers(of conv: String, in graph: TensorGraph, model: JSONValue) throws -> (layers: Set<String>, models: Set<String>) {
        let scopes = KerasConfig.parentModels(KerasConfig.layers(of: model))
        var upstream = Set<String>()
        var containing = Set<String>()
        var parent = scopes[conv]
        while let p = parent {
            containing.insert(p)
            parent = scopes[p]
        }
        // The first layer of a Sequential lists no inbound layer: it reads what its model reads.
        func inbound(_ name: String) -> [String] {
            var current = name
            while let layer = graph.layer(named: current), layer.inbound.isEmpty, let owner = scopes[current] {
                containing.insert(owner)
                current = owner
            }
            return graph.layer(named: current)?.inbound ?? []
        }
        var stack = inbound(conv)
        while let name = stack.popLast() {
            guard upstream.insert(name).inserted else { continue }
            guard let layer = graph.layer(named: name) else {
                // A nested model's input layer that the weights file does not list: leave the model.
                if let model = scopes[name] {
                    containing.insert(model)
                    stack += inbound(model)
                }
                continue
            }
            let className = layer.className ?? ""
            guard layer.tensors.isEmpty || LayerDetection.inputPreprocessingClasses.contains(className) else {
                throw WSurgeryError.unsupportedLayer(
                    path: graph.sourcePath, layer: name,
                    reason:
                        "it has weights and lies between the input and the first convolution '\(conv)'; its per-channel weights would need adapting too"
                )
            }
            if layer.kind == .input, let model = scopes[name] {
                containing.insert(model)
                stack += graph.layer(named: model)?.inbound ?? []
            } else if !channelPreserving.contains(className) {
                throw WSurgeryError.unsupportedLayer(
                    path: graph.sourcePath, layer: name,
                    reason: "\(className) lies between the input and the first convolution '\(conv)'; cannot tell how it uses the channels")
            }
            stack += inbound(name)
        }
        return (upstream, containing)
    }

    /// The config of a graph whose head `head` now has `classes` outputs: its `units` / `filters`, and the
    /// shapes recorded downstream of it.
    static func settingClasses(_ document: ConfigDocument, graph: TensorGraph, head: String, oldClasses: Int, classes: Int) throws -> (
        ConfigDocument, [String]
    ) {
        let model = document.json
        let scopes = KerasConfig.parentModels(KerasConfig.layers(of: model))
        let consumers = graph.consumers
        var downstream: Set<String> = [head]
        var stack = consumers[head] ?? []
        if let owner = scopes[head], KerasConfig.outputs(of: model, nested: owner).contains(head) {
            downstream.insert(owner)
            stack += consumers[owner] ?? []
        }
        while let name = stack.popLast() {
            guard downstream.insert(name).inserted, let layer = graph.layer(named: name) else { continue }
            let className = layer.className ?? ""
            guard layer.tensors.isEmpty, channelPreserving.contains(className) || ["Flatten", "Reshape"].contains(className) else {
                throw WSurgeryError.unsupportedLayer(
                    path: graph.sourcePath, layer: name,
                    reason:
                        "\(className.isEmpty ? layer.kind.rawValue : className) follows the head '\(head)'; cannot carry the new class count through it"
                )
            }
            stack += consumers[name] ?? []
            if let owner = scopes[name], KerasConfig.outputs(of: model, nested: owner).contains(name) {
                downstream.insert(owner)
                stack += consumers[owner] ?? []
            }
        }
        let channelsFirst = KerasConfig.layer(named: head, in: model)?.config["data_format"]?.stringValue == "channels_first"
        var edited: [String] = []
        func shape(_ value: JSONValue) -> JSONValue { setChannel(value, classes, channelsFirst: channelsFirst) }
        let result = transformLayers(model) { entry in
            var entry = entry
            let name = KerasConfig.entryName(entry) ?? ""
            var config = entry["config"] ?? .null
            if name == head {
                for key in ["units", "filters"] where config[key]?.intValue != nil {
                    config.set(key, .int(classes))
                    edited.append("\(name).\(key)")
                }
            } else if downstream.contains(name), config["target_shape"]?.arrayValue?.last?.intValue == oldClasses {
                config.set("target_shape", setChannel(config["target_shape"]!, classes, channelsFirst: false))
                edited.append("\(name).target_shape")
            }
            entry.set("config", config)
            if downstream.contains(name), name != head, rewriteBuildInputShape(&entry, shape) {
                edited.append("\(name).build_config.input_shape")
            }
            if let nodes = entry["inbound_nodes"] {
                entry.set("inbound_nodes", rewritingTensorShapes(nodes, from: downstream, shape))
            }
            return entry
        }
        return (ConfigDocument(json: result, originalText: document.originalText), edited)
    }

    /// Applies `shape` to `build_config.input_shape` of a layer or model entry; false when it has none.
    static func rewriteBuildInputShape(_ entry: inout JSONValue, _ shape: (JSONValue) -> JSONValue) -> Bool {
        guard var build = entry["build_config"], let input = build["input_shape"], input.arrayValue != nil else { return false }
        build.set("input_shape", shape(input))
        entry.set("build_config", build)
        return true
    }

    /// `shape` with its channel axis set: axis 1 for channels-first feature maps, else the last axis.
    static func setChannel(_ shape: JSONValue, _ value: Int, channelsFirst: Bool) -> JSONValue {
        guard var dims = shape.arrayValue, !dims.isEmpty else { return shape }
        dims[channelsFirst && dims.count > 2 ? 1 : dims.count - 1] = .int(value)
        return .array(dims)
    }

    /// Applies `body` to every layer entry, nested models' layers first, and returns the new model.
    static func transformLayers(_ model: JSONValue, _ body: (JSONValue) -> JSONValue) -> JSONValue {
        guard var config = model["config"] else { return model }
        var result = model
        if let list = config.arrayValue {  // Keras 2.0 Sequential: the config is the list of layers
            result.set("config", .array(list.map { body(transformLayers($0, body)) }))
            return result
        }
        guard let layers = config["layers"]?.arrayValue else { return model }
        config.set("layers", .array(layers.map { body(transformLayers($0, body)) }))
        result.set("config", config)
        return result
    }

    /// Keras 3 records each inbound tensor's shape (`__keras_tensor__` with `keras_history`); those made by
    /// `layers` get `shape` applied.
    static func rewritingTensorShapes(_ value: JSONValue, from layers: Set<String>, _ shape: (JSONValue) -> JSONValue) -> JSONValue {
        rewritingTensorShapes(value) { source, _, old in layers.contains(source) ? shape(old) : nil }
    }

    /// Applies `shape(source layer, tensor index, old shape)` to every recorded keras tensor shape; nil keeps it.
    static func rewritingTensorShapes(_ value: JSONValue, _ shape: (String, Int, JSONValue) -> JSONValue?) -> JSONValue {
        switch value {
        case .array(let items): return .array(items.map { rewritingTensorShapes($0, shape) })
        case .object(let pairs):
            if var config = value["config"], let history = config["keras_history"]?.arrayValue, let source = history.first?.stringValue,
                let old = config["shape"]
            {
                guard let new = shape(source, history.count > 2 ? history[2].intValue ?? 0 : 0, old) else { return value }
                config.set("shape", new)
                var result = value
                result.set("config", config)
                return result
            }
            return .object(pairs.map { ($0.0, rewritingTensorShapes($0.1, shape)) })
        default: return value
        }
    }

    /// The config with every shape it records set to the inferred ones: input layers' `batch_shape` /
    /// `batch_input_shape`, each layer's and model's `build_config.input_shape`, a Sequential's
    /// `build_input_shape` and the shapes of the keras tensors between layers. Returns the fields changed.
    static func refreshingShapes(_ document: ConfigDocument, with shapes: ShapeInference.Result) -> (ConfigDocument, [String]) {
        var edited: [String] = []
        func inputValue(_ name: String) -> JSONValue? {
            guard let inputs = shapes.inputs[name], !inputs.isEmpty else { return nil }
            return inputs.count == 1 ? ShapeText.json(inputs[0]) : .array(inputs.map(ShapeText.json))
        }
        func set(_ object: inout JSONValue, _ key: String, _ value: JSONValue?, _ label: String) {
            guard let value, let old = object[key], !old.isNull, old != value else { return }
            object.set(key, value)
            edited.append("\(label).\(key)")
        }
        func refresh(_ entry: JSONValue, name: String, modelInputs: [KerasShape]?) -> JSONValue {
            var entry = entry
            var config = entry["config"] ?? .null
            let className = entry["class_name"]?.stringValue
            let input = modelInputs.map { $0.count == 1 ? ShapeText.json($0[0]) : .array($0.map(ShapeText.json)) } ?? inputValue(name)
            if className == "InputLayer" {
                let output = shapes.outputs[name]?.first.map(ShapeText.json)
                set(&config, "batch_shape", output, name)
                set(&config, "batch_input_shape", output, name)
            } else {
                set(&config, "batch_input_shape", input, name)
                set(&config, "build_input_shape", input, name)
            }
            if entry["config"] != nil { entry.set("config", config) }
            if var build = entry["build_config"] {
                set(&build, "input_shape", input, "\(name).build_config")
                entry.set("build_config", build)
            }
            if let nodes = entry["inbound_nodes"] {
                let rewritten = rewritingTensorShapes(nodes) { source, index, old in
                    guard let outputs = shapes.outputs[source], index < outputs.count else { return nil }
                    let new = ShapeText.json(outputs[index])
                    return new == old ? nil : new
                }
                if rewritten != nodes { edited.append("\(name).inbound_nodes") }
                entry.set("inbound_nodes", rewritten)
            }
            return entry
        }
        var result = transformLayers(document.json) { entry in
            refresh(entry, name: KerasConfig.entryName(entry) ?? "", modelInputs: nil)
        }
        // The model's inputs: a Sequential's are its first layer's; a Functional's are its input layers'.
        let first = (result["config"]?["layers"]?.arrayValue ?? result["config"]?.arrayValue)?.first.flatMap(KerasConfig.entryName)
        let modelInputs =
            result["class_name"]?.stringValue == "Sequential" ? first.flatMap { shapes.inputs[$0] } : ShapeInference.recordedInputShapes(of: result)
        result = refresh(result, name: "model", modelInputs: modelInputs)
        return (ConfigDocument(json: result, originalText: document.originalText), edited)
    }
}
