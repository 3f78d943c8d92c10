/// A Keras feature shape, batch axis first; nil marks a size the model leaves open (the batch, or an
/// input built as `(None, None, 3)`).
public typealias KerasShape = FeatureShape

/// Computes every layer's input and output shapes from a Keras model config and an input shape, the way
/// Keras's own `compute_output_shape` does, without running anything. Nested Functional and Sequential
/// models are followed. A layer class it has no rule for does not stop the walk: its output is marked
/// unknown, and a command asking for a shape past it gets an error naming that layer instead of a guess.
public enum ShapeInference {
    /// The shapes of one model.
    public struct Result: Sendable {
        /// Per layer (any depth), the shapes of its inputs and outputs at its first call.
        public var inputs: [String: [KerasShape]] = [:]
        /// Per layer (any depth), the shapes of its outputs at its first call.
        public var outputs: [String: [KerasShape]] = [:]
        /// Per layer, its class name.
        public var classNames: [String: String] = [:]
        /// Layers whose shapes are unknown, each with the layer of unknown class it comes after.
        public var blockedBy: [String: String] = [:]
        /// Layers in the order they were evaluated (inputs first).
        public var order: [String] = []
        /// The model's output shapes.
        public var modelOutputs: [KerasShape] = []
        /// The file the config came from, for errors.
        public var path: String
        /// The shapes the config itself records between layers (Keras 3 keras tensors): per layer its
        /// first call's input shapes, and per producing layer the shape of each output it was read at.
        var recordedInputs: [String: [KerasShape]] = [:]
        var recordedOutputs: [String: [Int: KerasShape]] = [:]

        /// The output shape of `layer` (its first output), or the error naming the layer whose class
        /// blocks inference.
        public func output(of layer: String) throws(WSurgeryError) -> KerasShape {
            try check(layer)
            guard let shape = outputs[layer]?.first else {
                throw WSurgeryError.invalidConfig(path: path, reason: "layer '\(layer)' is not connected to the model's inputs")
            }
            return shape
        }

        /// The first input shape of `layer`.
        public func input(of layer: String) throws(WSurgeryError) -> KerasShape {
            try check(layer)
            guard let shape = inputs[layer]?.first else {
                throw WSurgeryError.invalidConfig(path: path, reason: "layer '\(layer)' is not connected to the model's inputs")
            }
            return shape
        }

        /// Throws when some layer's shapes could not be inferred.
        public func requireAll() throws(WSurgeryError) {
            for layer in order { try check(layer) }
        }

        func check(_ layer: String) throws(WSurgeryError) {
            if let blocker = blockedBy[layer] {
                throw WSurgeryError.unknownLayerClass(path: path, layer: blocker, className: classNames[blocker] ?? "?", needed: layer)
            }
        }
    }

    /// One input of a layer call: `(layer, node index, tensor index)` as Keras records it.
    struct NodeRef: Equatable {
        var layer: String
        var node: Int
        var tensor: Int
    }

    /// Infers the shapes of the model config `model`. `inputShapes` replaces the shapes its input layers
    /// record (one per model input, batch axis included).
    public static func infer(model: JSONValue, inputShapes: [KerasShape]? = nil, path: String) throws(WSurgeryError) -> Result {
        var result = Result(path: path)
        recordShapes(in: model, into: &result)
        let name = KerasConfig.entryName(model) ?? "model"
        result.modelOutputs = try inferModel(model, name: name, inputs: inputShapes, into: &result)
        return result
    }

    /// The input shapes a model config records: its input layers' `batch_shape` (Keras 3) or
    /// `batch_input_shape` (Keras 2), else a Sequential's `build_input_shape` or `build_config`.
    public static func recordedInputShapes(of model: JSONValue) -> [KerasShape]? {
        let config = model["config"] ?? .null
        let entries = config.arrayValue ?? config["layers"]?.arrayValue ?? []
        if model["class_name"]?.stringValue == "Sequential" {
            if let first = entries.first, let shape = declaredShape(first) { return [shape] }
            for candidate in [config["build_input_shape"], model["build_config"]?["input_shape"]] {
                if let shape = candidate.flatMap(shapeValue) { return [shape] }
            }
            return nil
        }
        let inputs = inputLayerNames(config)
        let shapes = inputs.map { name in entries.first { KerasConfig.entryName($0) == name }.flatMap(declaredShape) }
        guard !shapes.isEmpty, shapes.allSatisfy({ $0 != nil }) else { return nil }
        return shapes.map { $0! }
    }

    /// The Flatten whose output reaches `layer` directly or through weightless layers that keep the
    /// shape (Dropout, Activation): the case where `layer`'s fan-in is a flattened (H, W, C) map.
    public static func flatten(before layer: String, in layers: [String: KerasLayerConfig]) -> String? {
        var current = layer
        var seen = Set<String>()
        while let config = layers[current], config.inbound.count == 1, seen.insert(current).inserted {
            let source = config.inbound[0]
            guard let sourceConfig = layers[source] else { return nil }
            if sourceConfig.className == "Flatten" { return source }
            let weightless = (KerasConfig.variableNames(className: sourceConfig.className, config: sourceConfig.config) ?? []).isEmpty
            guard weightless, LayerShapes.shapePreserving.contains(sourceConfig.className) else { return nil }
            current = source
        }
        return nil
    }

    // MARK: Models

    static func inferModel(_ model: JSONValue, name: String, inputs: [KerasShape]?, into result: inout Result) throws(WSurgeryError) -> [KerasShape] {
        let config = model["config"] ?? .null
        let entries = config.arrayValue ?? config["layers"]?.arrayValue ?? []
        if model["class_name"]?.stringValue == "Sequential" {
            return try inferSequential(entries, model: model, name: name, inputs: inputs, into: &result)
        }
        let inputNames = inputLayerNames(config)
        // Outputs per layer and call (node).
        var produced: [String: [[KerasShape]]] = [:]
        for (i, inputName) in inputNames.enumerated() {
            guard let entry = entries.first(where: { KerasConfig.entryName($0) == inputName }) else {
                throw WSurgeryError.invalidConfig(
                    path: result.path, reason: "model '\(name)' names input layer '\(inputName)', which it does not define")
            }
            guard let shape = inputs.flatMap({ i < $0.count ? $0[i] : nil }) ?? declaredShape(entry) else {
                throw WSurgeryError.invalidConfig(path: result.path, reason: "input layer '\(inputName)' records no shape")
            }
            produced[inputName] = [[shape]]
            result.inputs[inputName] = [shape]
            result.outputs[inputName] = [shape]
            result.classNames[inputName] = "InputLayer"
            result.order.append(inputName)
        }
        var pending = entries.filter { entry in
            !inputNames.contains(KerasConfig.entryName(entry) ?? "") && entry["class_name"]?.stringValue != "InputLayer"
        }
        while !pending.isEmpty {
            var next: [JSONValue] = []
            for entry in pending {
                let layerName = KerasConfig.entryName(entry) ?? "?"
                let nodes = nodeRefs(entry["inbound_nodes"])
                guard nodes.allSatisfy({ $0.allSatisfy { produced[$0.layer] != nil || result.blockedBy[$0.layer] != nil } }) else {
                    next.append(entry)
                    continue
                }
                let className = entry["class_name"]?.stringValue ?? "?"
                result.classNames[layerName] = className
                result.order.append(layerName)
                let blocked = result.blockedBy
                if let blocker = nodes.joined().lazy.compactMap({ blocked[$0.layer] }).first {
                    result.blockedBy[layerName] = blocker
                    continue
                }
                var calls: [[KerasShape]] = []
                for node in nodes {
                    let inputs = try node.map { ref throws(WSurgeryError) -> KerasShape in
                        guard let calls = produced[ref.layer], !calls.isEmpty else {
                            throw WSurgeryError.invalidConfig(
                                path: result.path, reason: "layer '\(layerName)' reads layer '\(ref.layer)', which produced nothing")
                        }
                        let call = calls[ref.node < calls.count ? ref.node : calls.count - 1]
                        guard ref.tensor < call.count else {
                            throw WSurgeryError.invalidConfig(
                                path: result.path,
                                reason: "layer '\(layerName)' reads output \(ref.tensor) of layer '\(ref.layer)', which has \(call.count)")
                        }
                        return call[ref.tensor]
                    }
                    if calls.isEmpty { result.inputs[layerName] = inputs }
                    guard let outputs = try layerOutputs(entry, name: layerName, className: className, inputs: inputs, into: &result) else {
                        result.blockedBy[layerName] = result.blockedBy[layerName] ?? layerName
                        break
                    }
                    if calls.isEmpty { result.outputs[layerName] = outputs }
                    calls.append(outputs)
                }
                if result.blockedBy[layerName] == nil { produced[layerName] = calls }
            }
            if next.count == pending.count {
                let names = next.compactMap { KerasConfig.entryName($0) }
                throw WSurgeryError.invalidConfig(
                    path: result.path,
                    reason: "model '\(name)': layers \(names.prefix(5).joined(separator: ", ")) read from layers that never produce an output")
            }
            pending = next
        }
        var outputs: [KerasShape] = []
        for ref in outputRefs(config) {
            if let blocker = result.blockedBy[ref.layer] {
                result.blockedBy[name] = blocker
                return []
            }
            guard let calls = produced[ref.layer], let call = calls.first, ref.tensor < call.count else {
                throw WSurgeryError.invalidConfig(
                    path: result.path, reason: "model '\(name)' names output layer '\(ref.layer)', which produces nothing")
            }
            outputs.append(call[ref.tensor])
        }
        return outputs
    }

    static func inferSequential(_ entries: [JSONValue], model: JSONValue, name: String, inputs: [KerasShape]?, into result: inout Result)
        throws(WSurgeryError) -> [KerasShape]
    {
        guard var shape = inputs?.first ?? recordedInputShapes(of: model)?.first else {
            throw WSurgeryError.invalidConfig(path: result.path, reason: "Sequential model '\(name)' records no input shape")
        }
        var blocker: String?
        for entry in entries {
            let layerName = KerasConfig.entryName(entry) ?? "?"
            let className = entry["class_name"]?.stringValue ?? "?"
            result.classNames[layerName] = className
            result.order.append(layerName)
            if let blocker {
                result.blockedBy[layerName] = blocker
                continue
            }
            result.inputs[layerName] = [shape]
            if className == "InputLayer" {
                result.outputs[layerName] = [shape]
                continue
            }
            guard let outputs = try layerOutputs(entry, name: layerName, className: className, inputs: [shape], into: &result) else {
                blocker = result.blockedBy[layerName] ?? layerName
                result.blockedBy[layerName] = blocker
                continue
            }
            result.outputs[layerName] = outputs
            guard outputs.count == 1 else {
                throw WSurgeryError.invalidConfig(
                    path: result.path, reason: "layer '\(layerName)' of Sequential model '\(name)' has \(outputs.count) outputs")
            }
            shape = outputs[0]
        }
        if let blocker {
            result.blockedBy[name] = blocker
            return []
        }
        return [shape]
    }

    /// A layer's output shapes, nil when its class has no rule. Nested models are inferred in place.
    static func layerOutputs(_ entry: JSONValue, name: String, className: String, inputs: [KerasShape], into result: inout Result)
        throws(WSurgeryError) -> [KerasShape]?
    {
        let config = entry["config"] ?? .null
        if config["layers"] != nil {
            // A nested model: its own layers' shapes from the shapes it is called with. When one of them
            // blocks, the model's `blockedBy` entry names it and the model's outputs are unknown.
            let outputs = try inferModel(entry, name: name, inputs: inputs, into: &result)
            return result.blockedBy[name] == nil ? outputs : nil
        }
        do throws(LayerShapeError) {
            return try LayerShapes.outputs(className: className, config: config, inputs: inputs)
        } catch {
            switch error {
            case .unknownClass:
                // A class without a rule, called on the very shapes the config records for it, outputs what
                // the config records: only where its input changes is its output unknown.
                guard let recorded = result.recordedInputs[name], recorded == inputs, let produced = result.recordedOutputs[name],
                    let last = produced.keys.max(), (0...last).allSatisfy({ produced[$0] != nil })
                else { return nil }
                return (0...last).map { produced[$0]! }
            case .mismatch(let reason): throw WSurgeryError.shapeMismatch(path: result.path, layer: name, reason: reason)
            case .tooSmall(let shape): throw WSurgeryError.inputTooSmall(path: result.path, layer: name, shape: shape)
            }
        }
    }

    // MARK: Reading the config

    /// The shape an input layer (or a Keras 2 first layer) declares.
    static func declaredShape(_ entry: JSONValue) -> KerasShape? {
        let config = entry["config"] ?? .null
        for key in ["batch_shape", "batch_input_shape"] {
            if let shape = config[key].flatMap(shapeValue) { return shape }
        }
        if let shape = config["input_shape"].flatMap(shapeValue) { return [nil] + shape }
        return nil
    }

    /// `[null, 32, 32, 3]` as a shape.
    static func shapeValue(_ value: JSONValue) -> KerasShape? {
        guard let items = value.arrayValue, items.allSatisfy({ $0.isNull || $0.intValue != nil }) else { return nil }
        return items.map(\.intValue)
    }

    /// A Functional config's input layer names (`[["image", 0, 0]]` or `["image", 0, 0]`).
    static func inputLayerNames(_ config: JSONValue) -> [String] {
        refs(config["input_layers"]).map(\.layer)
    }

    static func outputRefs(_ config: JSONValue) -> [NodeRef] {
        refs(config["output_layers"])
    }

    static func refs(_ value: JSONValue?) -> [NodeRef] {
        guard let items = value?.arrayValue else { return [] }
        if let single = ref(items) { return [single] }
        return items.compactMap { $0.arrayValue.flatMap(ref) }
    }

    static func ref(_ items: [JSONValue]) -> NodeRef? {
        guard items.count >= 3, let layer = items[0].stringValue, let node = items[1].intValue, let tensor = items[2].intValue else { return nil }
        return NodeRef(layer: layer, node: node, tensor: tensor)
    }

    /// The calls of a layer and the inputs of each: Keras 2 `[[["conv1", 0, 0, {}], ...], ...]`, Keras 3
    /// `[{"args": [...keras tensors...], "kwargs": {...}}, ...]`.
    static func nodeRefs(_ nodes: JSONValue?) -> [[NodeRef]] {
        guard let nodes = nodes?.arrayValue else { return [] }
        return nodes.map { node in
            var found: [NodeRef] = []
            func visit(_ value: JSONValue) {
                switch value {
                case .array(let items):
                    if let r = ref(items), items.count == 3 || items[3].objectValue != nil {
                        found.append(r)
                        return
                    }
                    items.forEach(visit)
                case .object:
                    if let history = value["config"]?["keras_history"]?.arrayValue, let r = ref(history) {
                        found.append(r)
                        return
                    }
                    if let args = value["args"] {
                        visit(args)
                        return
                    }
                default: break
                }
            }
            visit(node)
            return found
        }
    }

    /// Collects the keras tensors the config records in its layers' first calls (any depth).
    static func recordShapes(in model: JSONValue, into result: inout Result) {
        let config = model["config"] ?? .null
        for entry in config.arrayValue ?? config["layers"]?.arrayValue ?? [] {
            if entry["config"]?["layers"] != nil { recordShapes(in: entry, into: &result) }
            guard let name = KerasConfig.entryName(entry), let first = entry["inbound_nodes"]?.arrayValue?.first else { continue }
            var inputs: [KerasShape] = []
            func visit(_ value: JSONValue) {
                switch value {
                case .array(let items):
                    for item in items { visit(item) }
                case .object(let pairs):
                    if let history = value["config"]?["keras_history"]?.arrayValue, let source = history.first?.stringValue,
                        let shape = value["config"]?["shape"].flatMap(shapeValue)
                    {
                        inputs.append(shape)
                        if history.count > 2, history[1].intValue == 0, let index = history[2].intValue {
                            result.recordedOutputs[source, default: [:]][index] = shape
                        }
                        return
                    }
                    if let args = value["args"] {
                        visit(args)
                        return
                    }
                    for pair in pairs where pair.0 != "kwargs" { visit(pair.1) }
                default: break
                }
            }
            visit(first)
            if !inputs.isEmpty { result.recordedInputs[name] = inputs }
        }
    }
}
