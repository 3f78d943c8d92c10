/// A layer as a Keras model config describes it.
public struct KerasLayerConfig: Sendable {
    /// The layer's name.
    public var name: String
    /// The layer's class (`Conv2D`).
    public var className: String
    /// Names of the layers feeding this one.
    public var inbound: [String]
    /// The layer's own `config` object.
    public var config: JSONValue
    /// Sublayers when the layer is itself a model (Functional / Sequential).
    public var sublayers: [KerasLayerConfig]

    /// The variable names Keras creates for this layer, in order, when the class is one this tool knows.
    public var variableNames: [String]? { KerasConfig.variableNames(className: className, config: config) }

    /// The dtype policy name (`float32`, `bfloat16`, `mixed_float16`, ...).
    public var dtypePolicy: String? {
        if let s = config["dtype"]?.stringValue { return s }
        return config["dtype"]?["config"]?["name"]?.stringValue
    }
}

/// Reading Keras model configs (Keras 2 and Keras 3 spellings).
public enum KerasConfig {
    /// The model's top-level layers, in config order, with their inbound layers.
    public static func layers(of model: JSONValue) -> [KerasLayerConfig] {
        let className = model["class_name"]?.stringValue ?? ""
        let config = model["config"] ?? .null
        // Keras 2.0 Sequential configs are a bare list of layers.
        let entries = config.arrayValue ?? config["layers"]?.arrayValue ?? []
        var result: [KerasLayerConfig] = []
        for entry in entries {
            let layerClass = entry["class_name"]?.stringValue ?? "?"
            let layerConfig = entry["config"] ?? .null
            let name = entryName(entry) ?? "?"
            var inbound = inboundNames(entry["inbound_nodes"])
            if className == "Sequential", inbound.isEmpty, let previous = result.last { inbound = [previous.name] }
            let nested = layerConfig["layers"] != nil ? layers(of: entry) : []
            result.append(KerasLayerConfig(name: name, className: layerClass, inbound: inbound, config: layerConfig, sublayers: nested))
        }
        return result
    }

    /// A layer entry's name (Keras 3 puts it beside `config`, Keras 2 inside it).
    public static func entryName(_ entry: JSONValue) -> String? {
        entry["name"]?.stringValue ?? entry["config"]?["name"]?.stringValue
    }

    /// Every layer, nested models expanded after the model that holds them, each with its top-level owner.
    public static func flattened(_ layers: [KerasLayerConfig], owner: String? = nil) -> [(layer: KerasLayerConfig, owner: String)] {
        layers.flatMap { layer -> [(layer: KerasLayerConfig, owner: String)] in
            [(layer, owner ?? layer.name)] + flattened(layer.sublayers, owner: owner ?? layer.name)
        }
    }

    /// Layer names referenced by `inbound_nodes`, in either the Keras 2 (`[[["conv1", 0, 0, {}]]]`) or the
    /// Keras 3 (`[{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": [...]}}]}]`) form.
    static func inboundNames(_ nodes: JSONValue?) -> [String] {
        var names: [String] = []
        func add(_ name: String) { if !names.contains(name) { names.append(name) } }
        func visit(_ value: JSONValue, keras2: Bool) {
            switch value {
            case .array(let items):
                if keras2, items.count >= 3, let name = items[0].stringValue, items[1].intValue != nil {
                    add(name)
                    return
                }
                for item in items { visit(item, keras2: keras2) }
            case .object(let pairs):
                if let history = value["config"]?["keras_history"]?.arrayValue, let name = history.first?.stringValue {
                    add(name)
                    return
                }
                for pair in pairs { visit(pair.1, keras2: false) }
            default: break
            }
        }
        if let nodes { visit(nodes, keras2: true) }
        return names
    }

    /// The Python class behind a config's `class_name`, where they differ: a config names a class by
    /// its `keras.layers` name (`GroupQueryAttention`), while saveables are named after the Python
    /// class (`GroupedQueryAttention` -> `layers/grouped_query_attention`).
    public static func pythonClassName(_ className: String) -> String {
        className == "GroupQueryAttention" ? "GroupedQueryAttention" : className
    }

    /// Keras's `to_snake_case`, which names saveables in `.weights.h5` (`Conv2D` -> `conv2d`).
    public static func snakeCase(_ className: String) -> String {
        let chars = Array(className.filter { $0.isLetter || $0.isNumber || $0 == "_" })
        var out = ""
        for (i, c) in chars.enumerated() {
            if i > 0, c.isUppercase {
                let previous = chars[i - 1]
                let nextIsLower = i + 1 < chars.count && chars[i + 1].isLowercase
                // "(.)([A-Z][a-z]+)" then "([a-z])([A-Z])".
                if nextIsLower || previous.isLowercase { if !out.hasSuffix("_") { out.append("_") } }
            }
            out.append(c)
        }
        return out.lowercased()
    }

    /// The variables Keras creates for a layer class, in creation order.
    static func variableNames(className: String, config: JSONValue) -> [String]? {
        let useBias = config["use_bias"]?.boolValue ?? true
        switch className {
        case "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "Dense":
            return useBias ? ["kernel", "bias"] : ["kernel"]
        case "DepthwiseConv1D", "DepthwiseConv2D":
            return useBias ? ["depthwise_kernel", "bias"] : ["depthwise_kernel"]
        case "SeparableConv1D", "SeparableConv2D":
            return useBias ? ["depthwise_kernel", "pointwise_kernel", "bias"] : ["depthwise_kernel", "pointwise_kernel"]
        case "BatchNormalization":
            return (config["scale"]?.boolValue ?? true ? ["gamma"] : []) + (config["center"]?.boolValue ?? true ? ["beta"] : []) + [
                "moving_mean", "moving_variance",
            ]
        case "LayerNormalization":
            return (config["scale"]?.boolValue ?? true ? ["gamma"] : []) + (config["center"]?.boolValue ?? true ? ["beta"] : [])
        case "Embedding":
            return ["embeddings"]
        case "Normalization":
            // Statistics are variables only when the config does not give them.
            return config["mean"].map { $0.isNull } ?? true ? ["mean", "variance", "count"] : []
        case "LayerScale":
            return ["variable"]
        default:
            return nil
        }
    }

    /// The class a Keras 3 auto name stands for (`conv2d_3` -> `Conv2D`), for files without a config.
    static func className(forAutoName name: String) -> String? {
        var base = name
        if let underscore = base.lastIndex(of: "_"), Int(base[base.index(after: underscore)...]) != nil {
            base = String(base[..<underscore])
        }
        let known = [
            "Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D", "Dense",
            "BatchNormalization", "LayerNormalization", "Embedding", "InputLayer", "Flatten", "Functional", "Sequential",
        ]
        // Keras's snake case of acronyms (`to_snake_case`): LSTM -> lstm, PReLU -> p_re_lu.
        let spelled = [
            "lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN", "lstm_cell": "LSTMCell", "gru_cell": "GRUCell",
            "simple_rnn_cell": "SimpleRNNCell", "bidirectional": "Bidirectional", "multi_head_attention": "MultiHeadAttention",
            "p_re_lu": "PReLU", "time_distributed": "TimeDistributed", "grouped_query_attention": "GroupQueryAttention",
            "conv_lstm1d": "ConvLSTM1D", "conv_lstm2d": "ConvLSTM2D", "conv_lstm3d": "ConvLSTM3D",
        ]
        return spelled[base] ?? known.first { snakeCase($0) == base }
    }
}

extension KerasConfig {
    /// The legacy HDF5 spelling of a Keras 3 (`.keras`) model config: the model and each layer entry lose
    /// `module`, `registered_name`, `build_config` and `compile_config`, which the legacy loader cannot
    /// resolve. A config without them is returned unchanged.
    public static func legacyModelConfig(_ model: JSONValue) -> JSONValue {
        guard case .object(var pairs) = model else { return model }
        let dropped: Set<String> = ["module", "registered_name", "build_config", "compile_config"]
        pairs.removeAll { dropped.contains($0.0) }
        var result = JSONValue.object(pairs)
        if var config = result["config"], let layers = config["layers"]?.arrayValue {
            config.set("layers", .array(layers.map(legacyModelConfig)))
            result.set("config", config)
        }
        return result
    }

    /// Arranges a state dict's tensors as the Keras config's layers: config order (layers without weights
    /// included), each layer's tensors in Keras's variable order (`kernel, bias`; `gamma, beta,
    /// moving_mean, moving_variance`). A tensor belongs to the last component of its name that is a layer
    /// name (`transfer/classifier/kernel` -> `classifier`). Tensors matching no layer stay, grouped, at the end.
    public static func arrange(_ tensors: [Tensor], by model: JSONValue) -> [Layer] {
        let flat = flattened(layers(of: model))
        let names = Set(flat.map(\.layer.name))
        var byLayer: [String: [Tensor]] = [:]
        var unmatched: [Tensor] = []
        for tensor in tensors {
            let components = tensor.name.split(separator: "/").map(String.init)
            if let owner = components.dropLast().last(where: { names.contains($0) }) {
                byLayer[owner, default: []].append(tensor)
            } else {
                unmatched.append(tensor)
            }
        }
        var result: [Layer] = flat.map { entry in
            let order = entry.layer.variableNames ?? []
            let own = (byLayer[entry.layer.name] ?? []).enumerated().sorted { a, b in
                func rank(_ t: Tensor) -> [Int] {
                    if let composite = KerasComposites.weightOrder(
                        ofTensor: t.name, inLayer: entry.layer.name, ownerClass: entry.layer.className, ownerConfig: entry.layer.config)
                    {
                        return composite
                    }
                    var bare = String(t.name.split(separator: "/").last ?? "")
                    if bare.hasSuffix(":0") { bare = String(bare.dropLast(2)) }
                    return [order.firstIndex(of: bare) ?? order.count]
                }
                let (ra, rb) = (rank(a.element), rank(b.element))
                return ra == rb ? a.offset < b.offset : ra.lexicographicallyPrecedes(rb)
            }.map(\.element)
            return Layer(
                name: entry.layer.name, kind: LayerKind(kerasClassName: entry.layer.className), className: entry.layer.className,
                tensors: own, inbound: entry.layer.inbound)
        }
        result += StateDictGrouping.layers(from: unmatched)
        return result
    }
}

extension KerasConfig {
    /// The Keras 3 (`.keras`) spelling of a legacy model config: the model and each layer entry get the
    /// `module` (and `registered_name`) Keras 3's loader resolves classes with. Entries that have one are kept.
    public static func keras3ModelConfig(_ model: JSONValue) -> JSONValue {
        guard case .object(let pairs) = model, model["module"] == nil, let className = model["class_name"]?.stringValue else { return model }
        let module: String
        var registered: JSONValue = .null
        switch className {
        case "Sequential": module = "keras"
        case "Functional", "Model":
            module = "keras.src.models.functional"
            registered = .string("Functional")
        default: module = "keras.layers"
        }
        var result = JSONValue.object([("module", .string(module))] + pairs)
        result.set("registered_name", registered)
        if var config = result["config"], let layers = config["layers"]?.arrayValue {
            config.set("layers", .array(layers.map(keras3ModelConfig)))
            result.set("config", config)
        }
        return result
    }
}

extension KerasConfig {
    /// The layer `name` at any depth of the model config.
    public static func layer(named name: String, in model: JSONValue) -> KerasLayerConfig? {
        flattened(layers(of: model)).first { $0.layer.name == name }?.layer
    }

    /// A model's output layers: `output_layers` of its config (`["name", 0, 0]` or a list of those),
    /// else its last layer (a Sequential).
    public static func outputs(config: JSONValue, layers: [KerasLayerConfig]) -> [String] {
        if let outputs = config["output_layers"]?.arrayValue {
            if let single = outputs.first?.stringValue { return [single] }
            return outputs.compactMap { $0.arrayValue?.first?.stringValue }
        }
        return layers.last.map { [$0.name] } ?? []
    }

    /// The output layers of the model config `model`, or of its nested model `nested`.
    public static func outputs(of model: JSONValue, nested: String? = nil) -> [String] {
        guard let nested else { return outputs(config: model["config"] ?? .null, layers: layers(of: model)) }
        guard let inner = layer(named: nested, in: model), !inner.sublayers.isEmpty else { return [] }
        return outputs(config: inner.config, layers: inner.sublayers)
    }

    /// For every layer of a nested model, the name of the model holding it directly.
    public static func parentModels(_ layers: [KerasLayerConfig]) -> [String: String] {
        var result: [String: String] = [:]
        for model in layers where !model.sublayers.isEmpty {
            for inner in model.sublayers { result[inner.name] = model.name }
            result.merge(parentModels(model.sublayers)) { first, _ in first }
        }
        return result
    }
}
