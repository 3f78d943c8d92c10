/// A layer as a Keras model config describes it.
public struct KerasLayerConfig: Sendable {
    public var name: String
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
            let name = entry["name"]?.stringValue ?? layerConfig["name"]?.stringValue ?? "?"
            var inbound = inboundNames(entry["inbound_nodes"])
            if className == "Sequential", inbound.isEmpty, let previous = result.last { inbound = [previous.name] }
            let nested = layerConfig["layers"] != nil ? layers(of: entry) : []
            result.append(KerasLayerConfig(name: name, className: layerClass, inbound: inbound, config: layerConfig, sublayers: nested))
        }
        return result
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
                if keras2, items.count >= 3, let name = items[0].stringValue, items[1].intValue != nil { add(name); return }
                items.forEach { visit($0, keras2: keras2) }
            case .object(let pairs):
                if let history = value["config"]?["keras_history"]?.arrayValue, let name = history.first?.stringValue { add(name); return }
                pairs.forEach { visit($0.1, keras2: false) }
            default: break
            }
        }
        if let nodes { visit(nodes, keras2: true) }
        return names
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
            return (config["scale"]?.boolValue ?? true ? ["gamma"] : []) + (config["center"]?.boolValue ?? true ? ["beta"] : []) + ["moving_mean", "moving_variance"]
        case "LayerNormalization":
            return (config["scale"]?.boolValue ?? true ? ["gamma"] : []) + (config["center"]?.boolValue ?? true ? ["beta"] : [])
        case "Embedding":
            return ["embeddings"]
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
        let known = ["Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D", "Dense",
                     "BatchNormalization", "LayerNormalization", "Embedding", "InputLayer", "Flatten", "Functional", "Sequential"]
        return known.first { snakeCase($0) == base }
    }
}
