import Foundation

/// `convert` to another layout: moves every tensor between Keras's and PyTorch's axis conventions and
/// names. Keras kernels (kh, kw, in, out) become PyTorch weights (out, in, kh, kw); depthwise kernels
/// (kh, kw, in, m) become (in*m, 1, kh, kw); transposed-conv kernels (kh, kw, out, in) become
/// (in, out, kh, kw); Dense kernels are transposed, and the first Dense after a Flatten also has its rows
/// reordered (Keras flattens H, W, C; PyTorch C, H, W). BatchNormalization's gamma/beta/moving_mean/
/// moving_variance become weight/bias/running_mean/running_var plus `num_batches_tracked`. Elements are
/// moved, never decoded, so converting back gives the original bytes. The Keras model config travels in
/// the PyTorch file's metadata, so the way back restores a loadable Keras model.
public struct LayoutConversion: GraphPass {
    /// The layout to move to.
    public var target: Layout

    /// The pass.
    public init(target: Layout) { self.target = target }

    /// `convert`.
    public var name: String { "convert" }
    /// The target layout.
    public var options: [(String, String)] { [("layout", target.rawValue)] }

    /// Refuses the unknown layout.
    public func validate() throws {
        guard target != .unknown else { throw WSurgeryError.invalidOption(option: "layout", reason: "expected torch or keras") }
    }

    /// The graph in the target layout.
    public func apply(to input: TensorGraph) throws -> (TensorGraph, PassReport) {
        var report = PassReport(pass: name, options: options)
        let present = Set(input.tensors.map(\.layout)).subtracting([.unknown])
        if present == [target] || present.isEmpty {
            throw WSurgeryError.unsupportedCheckpoint(
                path: input.sourcePath, reason: "the checkpoint's tensors are already in \(target.rawValue) layout")
        }
        var graph = target == .torch ? try toTorch(input, &report) : try toKeras(input, &report)
        graph.dropOptimizerState(in: &report)
        return (graph, report)
    }

    /// One tensor's move: its new name, the axis permutation and the shape to read the result as.
    struct Move {
        var name: String
        var axes: [Int]? = nil
        /// Shape to view the source as before permuting (the Flatten rows split into (H, W, C)).
        var viewAs: [Int]? = nil
        /// Shape of the result after permuting.
        var shape: [Int]? = nil
        var note: String
    }

    // MARK: Keras -> PyTorch

    func toTorch(_ input: TensorGraph, _ report: inout PassReport) throws -> TensorGraph {
        let path = input.sourcePath
        let facts = try input.architecture?.layoutFacts(path: path)
        if facts == nil, input.layers.contains(where: { $0.kind == .dense }) {
            report.notes.append(
                "no Keras config: Dense kernels are transposed, but whether one follows a Flatten is unknown, so its rows keep Keras's (H, W, C) order"
            )
        }
        var graph = input
        graph.layers = []
        for layer in input.layers {
            let kind = facts?.kind(of: layer.name) ?? layer.kind
            let prefix = facts?.modulePath(of: layer.name) ?? layer.name
            var tensors: [Tensor] = []
            for tensor in layer.tensors {
                let local = StateDictGrouping.localName(tensor.name)
                let rank = tensor.shape.count
                var move: Move
                switch local {
                case "kernel" where kind == .dense:
                    move = Move(name: "\(prefix).weight", axes: [1, 0], note: "transposed")
                    if let (h, w, c) = try facts?.flattenedInput(of: layer.name, rows: tensor.shape[0]) {
                        move = Move(
                            name: "\(prefix).weight", axes: [3, 2, 0, 1], viewAs: [h, w, c, tensor.shape[1]], shape: [tensor.shape[1], c * h * w],
                            note: "transposed, rows reordered from Flatten's (H, W, C) = (\(h), \(w), \(c)) to PyTorch's (C, H, W)")
                    }
                case "kernel" where rank >= 3:
                    move = Move(
                        name: "\(prefix).weight", axes: [rank - 1, rank - 2] + Array(0..<(rank - 2)),
                        note: "permuted \(Self.axesText([rank - 1, rank - 2] + Array(0..<(rank - 2))))")
                case "kernel" where rank == 2:
                    move = Move(name: "\(prefix).weight", axes: [1, 0], note: "transposed")
                case "depthwise_kernel" where rank >= 3:
                    let spatial = Array(0..<(rank - 2))
                    let permuted = Transpose.shape(tensor.shape, [rank - 2, rank - 1] + spatial)
                    let name = kind == .separableConv2d ? "\(prefix).depthwise.weight" : "\(prefix).weight"
                    move = Move(
                        name: name, axes: [rank - 2, rank - 1] + spatial, shape: [permuted[0] * permuted[1], 1] + Array(permuted[2...]),
                        note: "permuted \(Self.axesText([rank - 2, rank - 1] + spatial)), reshaped to (in*multiplier, 1, ...)")
                case "pointwise_kernel" where rank >= 3:
                    move = Move(
                        name: "\(prefix).pointwise.weight", axes: [rank - 1, rank - 2] + Array(0..<(rank - 2)),
                        note: "permuted \(Self.axesText([rank - 1, rank - 2] + Array(0..<(rank - 2))))")
                case "bias":
                    move = Move(name: kind == .separableConv2d ? "\(prefix).pointwise.bias" : "\(prefix).bias", note: "renamed")
                case "gamma": move = Move(name: "\(prefix).weight", note: "renamed")
                case "beta": move = Move(name: "\(prefix).bias", note: "renamed")
                case "moving_mean": move = Move(name: "\(prefix).running_mean", note: "renamed")
                case "moving_variance": move = Move(name: "\(prefix).running_var", note: "renamed")
                case "embeddings": move = Move(name: "\(prefix).weight", note: "renamed")
                default:
                    throw WSurgeryError.unsupportedLayer(
                        path: path, layer: layer.name,
                        reason:
                            "no PyTorch equivalent known for variable '\(local)' of \(layer.className ?? kind.rawValue) (shape \(ShapeText.python(tensor.shape)))"
                    )
                }
                tensors.append(try apply(move, to: tensor, layer: prefix, layout: rank >= 2 ? .torch : .unknown, path: path, report: &report))
            }
            if kind == .batchNorm {
                let counter = Tensor(
                    name: "\(prefix).num_batches_tracked", dtype: .i64, shape: [], layout: .unknown,
                    data: MemorySource(bytes: [UInt8](repeating: 0, count: 8)))
                tensors.append(counter)
                report.changes.append(
                    TensorChange(
                        layer: prefix, tensor: counter.name, oldShape: nil, newShape: [], action: "added (int64 0, as a fresh PyTorch BatchNorm)"))
            }
            graph.layers.append(Layer(name: prefix, kind: layer.kind, className: layer.className, tensors: tensors))
        }
        if facts != nil {
            // The writer that keeps it says where (safetensors: __metadata__['source_keras_model_config']).
            graph.originalArchitecture = input.architecture
        }
        graph.architecture = nil
        graph.declaredLayout = .torch
        graph.recordChange(.layout)
        return graph
    }

    // MARK: PyTorch -> Keras

    func toKeras(_ input: TensorGraph, _ report: inout PassReport) throws -> TensorGraph {
        let path = input.sourcePath
        // Keras layers by PyTorch module path, when the tensors came from a Keras model.
        let facts = try input.originalArchitecture?.layoutFacts(path: path)
        if facts == nil {
            report.notes.append(
                "no Keras config in the file: names and axes follow each tensor's own shape; a Linear after a flatten keeps PyTorch's (C, H, W) row order, and a depthwise convolution cannot be told from one with a single input channel"
            )
        }
        var converted: [Tensor] = []
        for layer in input.layers {
            for tensor in layer.tensors {
                let (moduleName, local) = StateDictGrouping.split(tensor.name)
                var prefix = moduleName
                var keras = facts?.layer(atModulePath: moduleName)
                var part = ""
                if keras == nil, let dot = moduleName.lastIndex(of: "."), let owner = facts?.layer(atModulePath: String(moduleName[..<dot])) {
                    keras = owner
                    prefix = String(moduleName[..<dot])
                    part = String(moduleName[moduleName.index(after: dot)...])
                }
                if facts != nil, keras == nil {
                    throw WSurgeryError.unsupportedLayer(
                        path: path, layer: moduleName, reason: "the Keras config in the file has no layer for PyTorch module '\(moduleName)'")
                }
                let kerasName = keras?.name ?? prefix
                let kind = keras?.kind ?? layer.kind
                let rank = tensor.shape.count
                if local == "num_batches_tracked" {
                    report.changes.append(
                        TensorChange(
                            layer: kerasName, tensor: tensor.name, oldShape: tensor.shape, newShape: nil,
                            action: "dropped (Keras keeps no batch counter)"))
                    continue
                }
                let isNorm = [.batchNorm, .layerNorm, .groupNorm].contains(kind) || (rank == 1 && local == "weight")
                var move: Move
                switch local {
                case "weight" where kind == .dense || (keras == nil && rank == 2 && ![.embedding, .layerNorm].contains(layer.kind)):
                    move = Move(name: "\(kerasName)/kernel", axes: [1, 0], note: "transposed")
                    if let (h, w, c) = try facts?.flattenedInput(of: kerasName, rows: tensor.shape[1]) {
                        move = Move(
                            name: "\(kerasName)/kernel", axes: [2, 3, 1, 0], viewAs: [tensor.shape[0], c, h, w], shape: [h * w * c, tensor.shape[0]],
                            note: "transposed, rows reordered from PyTorch's (C, H, W) to Flatten's (H, W, C) = (\(h), \(w), \(c))")
                    }
                case "weight" where kind == .depthwiseConv2d || part == "depthwise":
                    let multiplier = keras?.depthMultiplier ?? 1
                    guard multiplier > 0, tensor.shape[0] % multiplier == 0 else {
                        throw WSurgeryError.unsupportedLayer(
                            path: path, layer: kerasName,
                            reason: "depthwise weight \(ShapeText.python(tensor.shape)) does not split into channels x multiplier")
                    }
                    let view = [tensor.shape[0] / multiplier, multiplier] + Array(tensor.shape[2...])
                    let axes = Array(2..<rank) + [0, 1]
                    move = Move(
                        name: "\(kerasName)/depthwise_kernel", axes: axes, viewAs: view,
                        note: "reshaped to (in, multiplier, ...), permuted \(Self.axesText(axes))")
                case "weight" where part == "pointwise" && rank >= 3:
                    move = Move(
                        name: "\(kerasName)/pointwise_kernel", axes: Array(2..<rank) + [1, 0],
                        note: "permuted \(Self.axesText(Array(2..<rank) + [1, 0]))")
                case "weight" where rank >= 3:
                    move = Move(
                        name: "\(kerasName)/kernel", axes: Array(2..<rank) + [1, 0], note: "permuted \(Self.axesText(Array(2..<rank) + [1, 0]))")
                case "weight" where kind == .embedding:
                    move = Move(name: "\(kerasName)/embeddings", note: "renamed")
                case "weight" where isNorm: move = Move(name: "\(kerasName)/gamma", note: "renamed")
                case "bias" where isNorm: move = Move(name: "\(kerasName)/beta", note: "renamed")
                case "bias": move = Move(name: "\(kerasName)/bias", note: "renamed")
                case "running_mean": move = Move(name: "\(kerasName)/moving_mean", note: "renamed")
                case "running_var": move = Move(name: "\(kerasName)/moving_variance", note: "renamed")
                default:
                    throw WSurgeryError.unsupportedLayer(
                        path: path, layer: moduleName,
                        reason: "no Keras equivalent known for '\(tensor.name)' (shape \(ShapeText.python(tensor.shape)))")
                }
                converted.append(
                    try apply(
                        move, to: tensor, layer: kerasName,
                        layout: move.name.hasSuffix("kernel") || move.name.hasSuffix("embeddings") ? .keras : .unknown, path: path, report: &report))
            }
        }
        var graph = input
        graph.architecture = input.originalArchitecture
        graph.originalArchitecture = nil
        graph.declaredLayout = .keras
        graph.layers = facts?.arrange(converted) ?? StateDictGrouping.layers(from: converted)
        graph.layersInModelOrder = facts != nil
        graph.recordChange(.layout)
        return graph
    }

    // MARK: Helpers

    /// The tensor moved: renamed, its elements permuted (bytes moved as they are, when written), reshaped.
    func apply(_ move: Move, to tensor: Tensor, layer: String, layout: Layout, path: String, report: inout PassReport) throws -> Tensor {
        var result = tensor
        result.name = move.name
        result.layout = layout
        result.origin = nil
        if let axes = move.axes {
            guard let bits = tensor.dtype.bitsPerElement, bits % 8 == 0 else {
                throw WSurgeryError.cannotComputeDType(path: path, tensor: tensor.name, dtype: tensor.dtype.numpyName)
            }
            let view = move.viewAs ?? tensor.shape
            result.data = TransposedSource(base: tensor.data, shape: view, elementSize: bits / 8, axes: axes)
            result.shape = move.shape ?? Transpose.shape(view, axes)
        }
        report.changes.append(
            TensorChange(layer: layer, tensor: "\(tensor.name) -> \(move.name)", oldShape: tensor.shape, newShape: result.shape, action: move.note))
        return result
    }

    static func axesText(_ axes: [Int]) -> String { "(" + axes.map(String.init).joined(separator: ", ") + ")" }
}
