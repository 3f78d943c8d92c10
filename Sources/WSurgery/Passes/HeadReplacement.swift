/// Gives the classifier head(s) a new number of classes (`replace-head`): new kernel and bias drawn from
/// a seeded initializer, optionally keeping some of the old classes' rows.
public struct HeadReplacement: GraphPass {
    /// The new number of classes.
    public var classes: Int
    /// The layers named to act on; empty means detect them.
    public var layers: [String]
    /// nil: the checkpoint framework's default (torch-default for PyTorch layouts, glorot-uniform for Keras).
    public var initializer: Initializer?
    /// nil: torch-default with torch-default weights, else zeros (what Keras and timm use).
    public var bias: Initializer?
    /// Old class indices whose rows become new classes 0, 1, ... in this order.
    public var keepClasses: [Int]
    /// Seed of the new weights.
    public var seed: UInt64

    /// The pass.
    public init(
        classes: Int, layers: [String] = [], initializer: Initializer? = nil, bias: Initializer? = nil, keepClasses: [Int] = [], seed: UInt64 = 0
    ) {
        self.classes = classes
        self.layers = layers
        self.initializer = initializer
        self.bias = bias
        self.keepClasses = keepClasses
        self.seed = seed
    }

    /// `replace-head`.
    public var name: String { "replace-head" }

    /// The resolved options, for reports.
    public var options: [(String, String)] {
        var result: [(String, String)] = [("classes", String(classes))]
        result.append(("init", initializer?.description ?? Initializer.automaticWeights))
        result.append(("bias", bias?.description ?? Initializer.automaticBias))
        if !keepClasses.isEmpty { result.append(("keep-classes", keepClasses.map(String.init).joined(separator: ","))) }
        result.append(("seed", String(seed)))
        if !layers.isEmpty { result.append(("layer", layers.joined(separator: ","))) }
        return result
    }

    /// Refuses fewer than one class and kept classes that cannot be kept.
    public func validate() throws {
        guard classes >= 1 else { throw WSurgeryError.invalidOption(option: "classes", reason: "must be at least 1 (got \(classes))") }
        if keepClasses.count > classes {
            throw WSurgeryError.invalidOption(
                option: "keep-classes", reason: "keeps \(keepClasses.count) classes but \(option("classes")) is \(classes)")
        }
        if let negative = keepClasses.first(where: { $0 < 0 }) {
            throw WSurgeryError.invalidOption(option: "keep-classes", reason: "class \(negative) is negative")
        }
        if Set(keepClasses).count != keepClasses.count {
            throw WSurgeryError.invalidOption(option: "keep-classes", reason: "lists a class twice")
        }
    }

    /// The graph with new heads and the architecture in step.
    public func apply(to input: TensorGraph) throws -> (TensorGraph, PassReport) {
        var graph = input
        var report = PassReport(pass: name, options: options)
        let heads = layers.isEmpty ? try LayerDetection.classifierHeads(in: graph) : layers
        var oldClasses: [String: Int] = [:]
        for head in heads {
            let layer = try graph.requireLayer(head)
            // Depthwise, separable and transposed kernels put their channel axes elsewhere.
            guard [.dense, .conv1d, .conv2d, .conv3d, .unknown].contains(layer.kind), let roles = WeightRoles(layer) else {
                throw WSurgeryError.unsupportedLayer(
                    path: graph.sourcePath, layer: head,
                    reason: "not a Dense/Linear layer or a convolution with a kernel of known layout (\(layer.kind.rawValue))")
            }
            let kernelTensor = layer.tensors[roles.kernel]
            let old = kernelTensor.shape[roles.outputAxis]
            oldClasses[head] = old
            if let beyond = keepClasses.first(where: { $0 >= old }) {
                throw WSurgeryError.invalidOption(
                    option: "keep-classes", reason: "class \(beyond) does not exist: '\(head)' has \(old) classes (0...\(old - 1))")
            }
            let weightInit = initializer ?? (roles.layout == .torch ? .torchDefault : .glorotUniform)
            let biasInit = bias ?? (weightInit == .torchDefault ? .torchDefault : .constant(0))
            var newShape = kernelTensor.shape
            newShape[roles.outputAxis] = classes
            let fans = Fans(shape: newShape, layout: roles.layout)
            let kept = keepClasses.isEmpty ? "" : ", rows \(keepClasses.map(String.init).joined(separator: ",")) kept"
            let kernel = try newValues(
                kernelTensor, shape: newShape, axis: roles.outputAxis, initializer: weightInit, fans: fans, path: graph.sourcePath)
            graph.replaceTensor(
                layer: head, index: roles.kernel, shape: kernel.shape, with: kernel.values, action: "new \(weightInit) (seed \(seed))\(kept)",
                in: &report)
            if let b = roles.bias {
                let values = try newValues(layer.tensors[b], shape: [classes], axis: 0, initializer: biasInit, fans: fans, path: graph.sourcePath)
                graph.replaceTensor(
                    layer: head, index: b, shape: values.shape, with: values.values, action: "new \(biasInit) (seed \(seed))\(kept)", in: &report)
            }
        }
        let edit = try graph.editor.settingClasses(classes, heads: heads.map { ($0, oldClasses[$0] ?? 0) }, keep: keepClasses, in: graph)
        graph.architecture = edit.architecture
        report.notes += edit.notes
        graph.dropOptimizerState(in: &report)
        return (graph, report)
    }

    /// Values of `shape`: kept classes' slices copied from the old tensor, the rest drawn from the
    /// initializer with this tensor's own seeded stream.
    func newValues(_ tensor: Tensor, shape: [Int], axis: Int, initializer: Initializer, fans: Fans, path: String) throws -> (
        shape: [Int], values: any ValueStream
    ) {
        let sources = (0..<shape[axis]).map { $0 < keepClasses.count ? keepClasses[$0] : nil }
        return try initializer.rebuilding(tensor, axis: axis, sources: sources, fans: fans, seed: seed, path: path)
    }
}
