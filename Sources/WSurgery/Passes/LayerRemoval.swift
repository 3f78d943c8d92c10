/// Removes layers (`drop-layer`): the Keras graph is reconnected around them and its shapes re-inferred;
/// a layer whose weights no longer fit is an error unless `reinitNext` gives it new ones. `top` removes
/// the classifier stack after the last layer with a spatial output, like `include_top=False`.
public struct LayerRemoval: GraphPass {
    public var layers: [String]
    public var top: Bool
    public var reinitNext: Bool
    public var initializer: Initializer?
    public var seed: UInt64

    public init(layers: [String] = [], top: Bool = false, reinitNext: Bool = false, initializer: Initializer? = nil, seed: UInt64 = 0) {
        self.layers = layers
        self.top = top
        self.reinitNext = reinitNext
        self.initializer = initializer
        self.seed = seed
    }

    public var name: String { "drop-layer" }

    public var options: [(String, String)] {
        var result: [(String, String)] = top ? [("top", "true")] : [("layer", layers.joined(separator: ","))]
        if reinitNext {
            result.append(("reinit-next", "true"))
            if let initializer { result.append(("init", initializer.description)) }
            result.append(("seed", String(seed)))
        }
        return result
    }

    public func validate() throws {
        guard layers.isEmpty == top else {
            throw WSurgeryError.invalidOption(option: "--layer/--top", reason: top ? "give --top or --layer, not both" : "name the layers to remove with --layer, or give --top")
        }
    }

    public func apply(to input: TensorGraph) throws -> (TensorGraph, PassReport) {
        var graph = input
        var report = PassReport(pass: name, options: options)
        guard case .keras(let document)? = graph.architecture else {
            return try removeFromStateDict(graph, report)
        }
        let path = graph.sourcePath
        let names = top ? try topStack(document.json, graph: graph) : layers
        let model = try KerasLayerRemoval.removing(Set(names), from: document.json, path: path)
        let shapes = try ShapeInference.infer(model: model, path: path)
        try shapes.requireAll()
        remove(Set(names), from: &graph, report: &report)
        let misfits = try Refit.misfits(graph, model: model, shapes: shapes, before: try ShapeInference.infer(model: document.json, path: path))
        if let first = misfits.first, !reinitNext {
            throw WSurgeryError.shapeMismatch(path: path, layer: first.layer, reason: "after removing \(names.map { "'\($0)'" }.joined(separator: ", ")): " + misfits.map(\.description).joined(separator: "; ") + "; --reinit-next gives it new weights")
        }
        for misfit in misfits { try Refit.reinitialise(misfit, in: &graph, initializer: initializer, seed: seed, report: &report) }
        let (edited, _) = KerasArchitectureEdit.refreshingShapes(ConfigDocument(json: model, originalText: document.originalText), with: shapes)
        graph.architecture = .keras(edited)
        // Where a format places layers by position (Keras 3 saveables), the places change.
        graph.recordChange(.layerList)
        report.notes.append("model output now " + shapes.modelOutputs.map(ShapeText.python).joined(separator: ", "))
        graph.dropOptimizerState(in: &report)
        return (graph, report)
    }

    /// The layers after the last one with a spatial output on the way back from the (single) model output.
    func topStack(_ model: JSONValue, graph: TensorGraph) throws -> [String] {
        let path = graph.sourcePath
        let shapes = try ShapeInference.infer(model: model, path: path)
        let outputs = KerasConfig.outputs(of: model)
        guard outputs.count == 1, var current = outputs.first else {
            throw WSurgeryError.unsupportedLayer(path: path, layer: KerasConfig.entryName(model) ?? "model", reason: "--top needs a model with one output (it has \(outputs.count))")
        }
        let configs = Dictionary(KerasConfig.flattened(KerasConfig.layers(of: model)).map { ($0.layer.name, $0.layer) }, uniquingKeysWith: { a, _ in a })
        var stack: [String] = []
        while let config = configs[current], try shapes.output(of: current).count <= 2 {
            if !config.sublayers.isEmpty {
                throw WSurgeryError.unsupportedLayer(path: path, layer: current, reason: "the classifier stack reaches into nested model '\(current)'; name the layers to remove with --layer")
            }
            guard config.inbound.count == 1 else {
                throw WSurgeryError.unsupportedLayer(path: path, layer: current, reason: "the classifier stack reaches '\(current)', which has \(config.inbound.count) inputs")
            }
            stack.append(current)
            current = config.inbound[0]
        }
        guard !stack.isEmpty else {
            throw WSurgeryError.unsupportedLayer(path: path, layer: outputs[0], reason: "the model output is already a spatial feature map; there is no classifier stack to remove")
        }
        return stack
    }

    func remove(_ names: Set<String>, from graph: inout TensorGraph, report: inout PassReport) {
        for layer in graph.layers where names.contains(layer.name) {
            for tensor in layer.tensors {
                report.changes.append(TensorChange(layer: layer.name, tensor: tensor.name, oldShape: tensor.shape, newShape: [], action: "removed"))
            }
            if layer.tensors.isEmpty { report.notes.append("removed '\(layer.name)' (\(layer.className ?? layer.kind.rawValue), no weights)") }
        }
        graph.layers.removeAll { names.contains($0.name) }
    }

    /// Without an architecture the layers' tensors are removed (`--top`: the detected classifier head,
    /// like timm's `reset_classifier(0)`); nothing records the edges, so no shapes are checked.
    func removeFromStateDict(_ input: TensorGraph, _ report: PassReport) throws -> (TensorGraph, PassReport) {
        var graph = input
        var report = report
        let names = top ? try LayerDetection.classifierHeads(in: graph) : layers
        for name in names { _ = try graph.requireLayer(name) }
        remove(Set(names), from: &graph, report: &report)
        report.notes.append("no architecture recorded: tensors removed, nothing reconnected or checked (the model code decides what reads them)")
        graph.dropOptimizerState(in: &report)
        return (graph, report)
    }
}
