/// Removing layers from a Keras model config and reconnecting the graph: whatever read a removed layer's
/// output (its consumers, the model's outputs) reads what the removed layer read. Works at any nesting
/// depth, for Functional (Keras 2 and Keras 3 node spellings) and Sequential models.
enum KerasLayerRemoval {
    /// `model` without the layers `names`. Each must have exactly one input.
    static func removing(_ names: Set<String>, from model: JSONValue, path: String) throws -> JSONValue {
        var found = Set<String>()
        let result = try edit(model, names, &found, path: path)
        if let missing = names.subtracting(found).sorted().first {
            throw WSurgeryError.unknownLayer(
                path: path, layer: missing, candidates: KerasConfig.flattened(KerasConfig.layers(of: model)).map(\.layer.name), listing: "layers")
        }
        return result
    }

    static func edit(_ model: JSONValue, _ names: Set<String>, _ found: inout Set<String>, path: String) throws -> JSONValue {
        guard var config = model["config"] else { return model }
        let bare = config.arrayValue != nil  // Keras 2.0 Sequential: the config is the layer list
        guard let entries = bare ? config.arrayValue : config["layers"]?.arrayValue else { return model }
        let sequential = model["class_name"]?.stringValue == "Sequential"
        // What each removed layer read: the keras tensor (Keras 3) or `[name, node, tensor, kwargs]` (Keras 2).
        var replacement: [String: JSONValue] = [:]
        for entry in entries {
            guard let name = KerasConfig.entryName(entry), names.contains(name) else { continue }
            found.insert(name)
            if entry["class_name"]?.stringValue == "InputLayer" {
                throw WSurgeryError.unsupportedLayer(path: path, layer: name, reason: "is an input layer; it cannot be removed")
            }
            if sequential { continue }
            let nodes = ShapeInference.nodeRefs(entry["inbound_nodes"])
            guard nodes.count == 1, nodes[0].count == 1, let input = firstInput(entry["inbound_nodes"]) else {
                throw WSurgeryError.unsupportedLayer(
                    path: path, layer: name,
                    reason: "has \(nodes.first?.count ?? 0) inputs in \(nodes.count) call(s); only a layer called once on one input can be removed")
            }
            replacement[name] = input
        }
        // A chain of removed layers resolves to the first kept one.
        func resolve(_ value: JSONValue) -> JSONValue {
            var value = value
            var hops = 0
            while let source = source(of: value), let next = replacement[source], hops <= replacement.count {
                value = merged(next, into: value)
                hops += 1
            }
            return value
        }
        func rewrite(_ value: JSONValue) -> JSONValue {
            if let name = source(of: value), replacement[name] != nil { return resolve(value) }
            switch value {
            case .array(let items): return .array(items.map(rewrite))
            case .object(let pairs): return .object(pairs.map { ($0.0, rewrite($0.1)) })
            default: return value
            }
        }
        var kept: [JSONValue] = []
        for entry in entries where !names.contains(KerasConfig.entryName(entry) ?? "") {
            var entry = try edit(entry, names, &found, path: path)
            if let nodes = entry["inbound_nodes"] { entry.set("inbound_nodes", rewrite(nodes)) }
            kept.append(entry)
        }
        var result = model
        if bare {
            result.set("config", .array(kept))
            return result
        }
        config.set("layers", .array(kept))
        if let outputs = config["output_layers"] {
            config.set("output_layers", rewriteOutputs(outputs, replacement: replacement, resolve: resolve))
        }
        result.set("config", config)
        return result
    }

    /// The layer a keras tensor or a Keras 2 ref reads from.
    static func source(of value: JSONValue) -> String? {
        if let history = value["config"]?["keras_history"]?.arrayValue { return history.first?.stringValue }
        if let items = value.arrayValue, items.count == 4, items[3].objectValue != nil, items[1].intValue != nil { return items[0].stringValue }
        return nil
    }

    /// `replacement` standing where `original` stood: a Keras 2 ref keeps the consumer's own kwargs.
    static func merged(_ replacement: JSONValue, into original: JSONValue) -> JSONValue {
        guard var items = replacement.arrayValue, let old = original.arrayValue, items.count == 4, old.count == 4 else { return replacement }
        items[3] = old[3]
        return .array(items)
    }

    /// The first keras tensor (or Keras 2 ref) of a layer's first call.
    static func firstInput(_ nodes: JSONValue?) -> JSONValue? {
        guard let first = nodes?.arrayValue?.first else { return nil }
        func find(_ value: JSONValue) -> JSONValue? {
            if source(of: value) != nil { return value }
            switch value {
            case .array(let items): return items.lazy.compactMap(find).first
            case .object:
                return value["args"].flatMap(find)
            default: return nil
            }
        }
        return find(first)
    }

    /// `output_layers` with refs to removed layers pointing at what those layers read.
    static func rewriteOutputs(_ outputs: JSONValue, replacement: [String: JSONValue], resolve: (JSONValue) -> JSONValue) -> JSONValue {
        func fix(_ ref: [JSONValue]) -> JSONValue {
            guard let name = ref.first?.stringValue, let input = replacement[name] else { return .array(ref) }
            let resolved = resolve(input)
            if let history = resolved["config"]?["keras_history"]?.arrayValue { return .array(Array(history.prefix(3))) }
            return .array(Array((resolved.arrayValue ?? ref).prefix(3)))
        }
        guard let items = outputs.arrayValue else { return outputs }
        if ShapeInference.ref(items) != nil { return fix(items) }
        return .array(items.map { $0.arrayValue.map(fix) ?? $0 })
    }
}
