/// New values for tensors that no longer fit their layer after an architecture edit.
enum Refit {
    /// New values for a misfit: kernels from `initializer` (default glorot-uniform for Keras, torch-default
    /// for PyTorch layouts), biases and BatchNorm/LayerNorm shifts and means zeros, scales and variances ones.
    /// `reason` ends the report's action (default: the new input shape).
    static func reinitialise(
        _ misfit: WeightMisfit, in graph: inout TensorGraph, initializer: Initializer?, seed: UInt64, reason: String? = nil, report: inout PassReport
    ) throws {
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
        let values = kind.stream(shape: shape, fans: Fans(shape: shape, layout: layout), seed: seed, tensor: misfit.tensor.name)
        graph.replaceTensor(
            layer: misfit.layer, index: misfit.index, shape: shape, with: values,
            action: "new \(kind) (seed \(seed))" + (reason ?? ": its input changed to \(ShapeText.python(misfit.input))"), in: &report)
    }
}
