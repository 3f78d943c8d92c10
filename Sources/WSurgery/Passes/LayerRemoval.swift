/// Removes layers (`drop-layer`): the Keras graph is reconnected around them and its shapes re-inferred;
/// a layer whose weights no longer fit is an error unless `reinitNext` gives it new ones. `top` removes
/// the classifier stack after the last layer with a spatial output, like `include_top=False`.
public struct LayerRemoval: GraphPass {
    /// The layers to remove (empty with `top`).
    public var layers: [String]
    /// Remove the classifier stack instead.
    public var top: Bool
    /// With `top`: keep the input's height and width instead of freeing them.
    public var keepInputShape: Bool
    /// Give later layers whose weights no longer fit new weights instead of refusing.
    public var reinitNext: Bool
    /// nil: glorot-uniform for Keras kernels, torch-default for PyTorch layouts.
    public var initializer: Initializer?
    /// Seed of new weights.
    public var seed: UInt64

    /// The pass.
    public init(
        layers: [String] = [], top: Bool = false, keepInputShape: Bool = false, reinitNext: Bool = false, initializer: Initializer? = nil,
        seed: UInt64 = 0
    ) {
        self.layers = layers
        self.top = top
        self.keepInputShape = keepInputShape
        self.reinitNext = reinitNext
        self.initializer = initializer
        self.seed = seed
    }

    /// `drop-layer`.
    public var name: String { "drop-layer" }

    /// The resolved options, for reports.
    public var options: [(String, String)] {
        var result: [(String, String)] = top ? [("top", "true")] : [("layer", layers.joined(separator: ","))]
        if keepInputShape { result.append(("keep-input-shape", "true")) }
        if reinitNext {
            result.append(("reinit-next", "true"))
            result.append(("init", initializer?.description ?? Initializer.automaticWeights))
            result.append(("seed", String(seed)))
        }
        return result
    }

    /// Refuses both or neither of layers and top.
    public func validate() throws {
        if keepInputShape, !top {
            throw WSurgeryError.invalidOption(option: "keep-input-shape", reason: "only applies with \(option("top"))")
        }
        guard layers.isEmpty == top else {
            throw WSurgeryError.invalidOption(
                option: top ? "top" : "layer",
                reason: top
                    ? "give \(option("top")) or \(option("layer")), not both"
                    : "name the layers to remove with \(option("layer")), or give \(option("top"))")
        }
    }

    /// The graph without the layers, its architecture reconnected.
    public func apply(to input: TensorGraph) throws -> (TensorGraph, PassReport) {
        var graph = input
        var report = PassReport(pass: name, options: options)
        let plan = try graph.editor.removingLayers(top ? .top(keepInputShape: keepInputShape) : .named(layers), in: graph)
        let names = plan.removed
        if let first = plan.misfits.first, !reinitNext {
            throw WSurgeryError.shapeMismatch(
                path: graph.sourcePath, layer: first.layer,
                reason: "after removing \(names.map { "'\($0)'" }.joined(separator: ", ")): "
                    + plan.misfits.map(\.description).joined(separator: "; ") + "; \(option("reinit-next")) gives it new weights")
        }
        remove(Set(names), from: &graph, report: &report)
        for misfit in plan.misfits { try Refit.reinitialise(misfit, in: &graph, initializer: initializer, seed: seed, report: &report) }
        graph.architecture = plan.edit.architecture
        // Where a format places layers by their position, the places change.
        graph.recordChange(.layerList)
        report.notes += plan.edit.notes
        graph.dropOptimizerState(in: &report)
        return (graph, report)
    }

    func remove(_ names: Set<String>, from graph: inout TensorGraph, report: inout PassReport) {
        for layer in graph.layers where names.contains(layer.name) {
            for tensor in layer.tensors {
                report.changes.append(TensorChange(layer: layer.name, tensor: tensor.name, oldShape: tensor.shape, newShape: nil, action: "removed"))
            }
            if layer.tensors.isEmpty { report.notes.append("removed '\(layer.name)' (\(layer.className ?? layer.kind.rawValue), no weights)") }
        }
        graph.layers.removeAll { names.contains($0.name) }
    }
}
