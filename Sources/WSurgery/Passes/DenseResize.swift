/// Gives a Dense/Linear layer another number of units (`resize-dense`): the first min(old, new) units keep
/// their weights, the rest are initialised; the layers reading it follow: normalisation layers in between
/// get entries for the new units (scale 1, shift 0, mean 0, variance 1) and the next Dense/Linear layers'
/// fan-in rows are resized the same way (existing rows kept).
public struct DenseResize: GraphPass {
    /// The Dense/Linear layer.
    public var layer: String
    /// Its new number of units.
    public var units: Int
    /// nil: glorot-uniform for Keras kernels, torch-default for PyTorch layouts.
    public var initializer: Initializer?
    /// The layers reading it, for a state dict (which records no edges).
    public var next: [String]
    /// Seed of new weights.
    public var seed: UInt64

    /// The pass.
    public init(layer: String, units: Int, initializer: Initializer? = nil, next: [String] = [], seed: UInt64 = 0) {
        self.layer = layer
        self.units = units
        self.initializer = initializer
        self.next = next
        self.seed = seed
    }

    /// `resize-dense`.
    public var name: String { "resize-dense" }

    /// The resolved options, for reports.
    public var options: [(String, String)] {
        var result: [(String, String)] = [("layer", layer), ("units", String(units))]
        result.append(("init", initializer?.description ?? Initializer.automaticWeights))
        if !next.isEmpty { result.append(("next", next.joined(separator: ","))) }
        result.append(("seed", String(seed)))
        return result
    }

    /// Refuses fewer than one unit.
    public func validate() throws {
        guard units >= 1 else { throw WSurgeryError.invalidOption(option: "units", reason: "must be at least 1 (got \(units))") }
    }

    /// The graph with the layer and its readers resized.
    public func apply(to input: TensorGraph) throws -> (TensorGraph, PassReport) {
        var graph = input
        var report = PassReport(pass: name, options: options)
        let path = graph.sourcePath
        let dense = try graph.requireLayer(layer)
        guard dense.kind == .dense, let roles = WeightRoles(dense), dense.tensors[roles.kernel].shape.count == 2 else {
            throw WSurgeryError.unsupportedLayer(
                path: path, layer: layer, reason: "is not a Dense/Linear layer (\(dense.className ?? dense.kind.rawValue))")
        }
        let old = dense.tensors[roles.kernel].shape[roles.outputAxis]
        guard old != units else { throw WSurgeryError.invalidOption(option: "units", reason: "'\(layer)' already has \(units) units") }
        try resize(dense, axis: roles.outputAxis, in: &graph, report: &report)

        let plan = try graph.editor.resizingUnits(of: layer, to: units, in: graph)
        if let readers = plan.readers {
            for name in readers { try resizeReader(try graph.requireLayer(name), in: &graph, report: &report) }
        } else {
            if next.isEmpty, (try? LayerDetection.classifierHeads(in: graph))?.contains(layer) != true {
                throw WSurgeryError.unsupportedLayer(
                    path: path, layer: layer,
                    reason:
                        "the checkpoint records no edges, so the layers reading it are unknown; name them with \(option("next")) (or resize the classifier head)"
                )
            }
            for name in next { try resizeReader(try graph.requireLayer(name), in: &graph, report: &report) }
            if next.isEmpty { report.notes.append("'\(layer)' is the classifier head: no layer reads it") }
        }
        graph.architecture = plan.edit.architecture
        try graph.editor.checkWeights(of: graph, before: input)
        report.notes += plan.edit.notes
        graph.dropOptimizerState(in: &report)
        return (graph, report)
    }

    /// Resizes every tensor of `layer` along its unit axis (the kernel's `axis`, the vectors' only axis).
    func resize(_ layer: Layer, axis: Int, in graph: inout TensorGraph, report: inout PassReport) throws {
        guard let roles = WeightRoles(layer) else { return }
        try resizeTensor(
            layer, index: roles.kernel, axis: axis, fill: initializer ?? (roles.layout == .torch ? .torchDefault : .glorotUniform), in: &graph,
            report: &report)
        if let b = roles.bias {
            let fill: Initializer = initializer == nil && roles.layout == .torch ? .torchDefault : .constant(0)
            var kernelShape = layer.tensors[roles.kernel].shape
            kernelShape[axis] = units
            try resizeTensor(layer, index: b, axis: 0, fill: fill, in: &graph, report: &report, fanShape: kernelShape)
        }
    }

    /// A normalisation layer's per-unit vectors, or a reading layer's kernel rows.
    func resizeReader(_ reader: Layer, in graph: inout TensorGraph, report: inout PassReport) throws {
        if let roles = WeightRoles(reader), reader.kind == .dense || reader.kind == .unknown {
            try resizeTensor(
                reader, index: roles.kernel, axis: roles.inputAxis, fill: initializer ?? (roles.layout == .torch ? .torchDefault : .glorotUniform),
                in: &graph, report: &report)
            return
        }
        guard [.batchNorm, .layerNorm].contains(reader.kind) else {
            throw WSurgeryError.unsupportedLayer(
                path: graph.sourcePath, layer: reader.name,
                reason:
                    "reads '\(layer)' but is a \(reader.className ?? reader.kind.rawValue); only Dense/Linear and normalisation layers can follow a resized Dense"
            )
        }
        for (index, tensor) in reader.tensors.enumerated() where tensor.shape.count == 1 {
            let local = StateDictGrouping.localName(tensor.name)
            let fill: Initializer = ["gamma", "weight", "moving_variance", "running_var"].contains(local) ? .constant(1) : .constant(0)
            try resizeTensor(reader, index: index, axis: 0, fill: fill, in: &graph, report: &report)
        }
    }

    /// The tensor with `axis` resized to `units`: the first min(old, units) slices kept, the rest drawn.
    /// `fanShape` gives the fans when they are not the tensor's own (a bias takes its kernel's).
    func resizeTensor(
        _ layer: Layer, index: Int, axis: Int, fill: Initializer, in graph: inout TensorGraph, report: inout PassReport, fanShape: [Int]? = nil
    ) throws {
        let tensor = layer.tensors[index]
        let old = tensor.shape[axis]
        var shape = tensor.shape
        shape[axis] = units
        let layout = tensor.layout == .unknown ? (WeightRoles(layer)?.layout ?? .keras) : tensor.layout
        let sources = (0..<units).map { $0 < old ? $0 : nil }
        let rebuilt = try fill.rebuilding(
            tensor, axis: axis, sources: sources, fans: Fans(shape: fanShape ?? shape, layout: layout), seed: seed, path: graph.sourcePath)
        let action = units < old ? "first \(units) of \(old) kept" : "\(old) kept, \(units - old) new (\(fill), seed \(seed))"
        graph.replaceTensor(layer: layer.name, index: index, shape: rebuilt.shape, with: rebuilt.values, action: action, in: &report)
    }
}
