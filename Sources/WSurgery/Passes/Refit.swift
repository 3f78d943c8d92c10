/// After an architecture edit: which tensors no longer fit the inferred shapes, and giving them new values.
enum Refit {
    struct Misfit {
        var layer: String
        var index: Int
        var tensor: Tensor
        var expected: [Int?]
        var input: KerasShape

        var description: String {
            "'\(tensor.name)' is \(ShapeText.python(tensor.shape)) but its input \(ShapeText.python(input)) needs \(ShapeText.python(expected))"
        }
    }

    /// Every tensor whose shape differs from what its layer's inferred input needs. A layer with weights
    /// whose class has no rule is refused when its input differs from `before` (the shapes before the
    /// edit): whether its weights still fit cannot be told.
    static func misfits(_ graph: TensorGraph, model: JSONValue, shapes: ShapeInference.Result, before: ShapeInference.Result) throws -> [Misfit] {
        let configs = Dictionary(KerasConfig.flattened(KerasConfig.layers(of: model)).map { ($0.layer.name, $0.layer) }, uniquingKeysWith: { a, _ in a })
        var result: [Misfit] = []
        for layer in graph.layers where !layer.tensors.isEmpty {
            guard let config = configs[layer.name], config.sublayers.isEmpty else { continue }
            let input = try shapes.input(of: layer.name)
            guard let expected = WeightFit.expectedShapes(className: config.className, config: config.config, input: input) else {
                let old = before.inputs[layer.name]?.first
                if old != input {
                    throw WSurgeryError.unsupportedLayer(path: graph.sourcePath, layer: layer.name, reason: "its input changes from \(old.map(ShapeText.python) ?? "?") to \(ShapeText.python(input)) and wsurgery cannot tell whether its \(config.className) weights depend on that")
                }
                continue
            }
            for (index, want) in WeightFit.misfits(layer, expected: expected) {
                result.append(Misfit(layer: layer.name, index: index, tensor: layer.tensors[index], expected: want, input: input))
            }
        }
        return result
    }

    /// New values for a misfit: kernels from `initializer` (default glorot-uniform for Keras, torch-default
    /// for PyTorch layouts), biases and BatchNorm/LayerNorm shifts and means zeros, scales and variances ones.
    /// `reason` ends the report's action (default: the new input shape).
    static func reinitialise(_ misfit: Misfit, in graph: inout TensorGraph, initializer: Initializer?, seed: UInt64, reason: String? = nil, report: inout PassReport) throws {
        guard misfit.expected.allSatisfy({ $0 != nil }) else {
            throw WSurgeryError.shapeMismatch(path: graph.sourcePath, layer: misfit.layer, reason: misfit.description + ", with sizes left open")
        }
        guard TensorValues.canCompute(misfit.tensor.dtype) else {
            throw WSurgeryError.cannotComputeDType(path: graph.sourcePath, tensor: misfit.tensor.name, dtype: misfit.tensor.dtype.numpyName)
        }
        let shape = misfit.expected.map { $0! }
        let kind: Initializer
        switch StateDictGrouping.localName(misfit.tensor.name) {
        case "gamma", "moving_variance": kind = .constant(1)
        case "bias", "beta", "moving_mean": kind = .constant(0)
        default: kind = initializer ?? (misfit.tensor.layout == .torch ? .torchDefault : .glorotUniform)
        }
        let layout = misfit.tensor.layout == .unknown ? Layout.keras : misfit.tensor.layout
        let values = kind.values(shape: shape, fans: Fans(shape: shape, layout: layout), seed: seed, tensor: misfit.tensor.name)
        graph.replaceTensor(layer: misfit.layer, index: misfit.index, with: values, action: "new \(kind) (seed \(seed))" + (reason ?? ": its input changed to \(ShapeText.python(misfit.input))"), in: &report)
    }
}
