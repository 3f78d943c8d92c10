/// Moves a model to a new input size (`set-input-shape`). For a Keras model every layer's shapes are
/// inferred at the new size: convolution weights never depend on it, a Dense after global pooling does
/// not either, a Dense fed by Flatten does (its fan-in is H' * W' * C) and is re-initialised, resampled or
/// refused. For a state dict, absolute position embeddings (ViT) are resampled like timm's
/// `resample_abs_pos_embed`.
public struct InputShapeChange: GraphPass {
    /// What to do with a Dense layer whose fan-in no longer fits.
    public enum DensePolicy: String, Sendable, CaseIterable {
        /// A new kernel for the new fan-in, from the initializer.
        case reinit
        /// The kernel viewed as (H, W, C, units), resized bilinearly over H, W and scaled by HW / H'W'.
        case resample
        /// Stop and list the layers that would change.
        case error
    }

    /// The new input height.
    public var height: Int
    /// The new input width.
    public var width: Int
    /// Chains channel adaptation (Surgery I) when set.
    public var channels: Int?
    /// What to do with Dense kernels whose fan-in changes.
    public var densePolicy: DensePolicy
    /// nil: glorot-uniform for Keras kernels, torch-default for PyTorch layouts.
    public var initializer: Initializer?
    /// Seed of new weights.
    public var seed: UInt64
    /// What the flattened maps that Linear layers of a state dict read become at the new size.
    public var flattenedMaps: [FlattenedMapChoice]

    /// The pass.
    public init(
        height: Int, width: Int, channels: Int? = nil, densePolicy: DensePolicy = .reinit, initializer: Initializer? = nil, seed: UInt64 = 0,
        flattenedMaps: [FlattenedMapChoice] = []
    ) {
        self.height = height
        self.width = width
        self.channels = channels
        self.densePolicy = densePolicy
        self.initializer = initializer
        self.seed = seed
        self.flattenedMaps = flattenedMaps
    }

    /// `set-input-shape`.
    public var name: String { "set-input-shape" }

    /// The resolved options, for reports.
    public var options: [(String, String)] {
        var result: [(String, String)] = [("size", "\(height)x\(width)")]
        if let channels { result.append(("channels", String(channels))) }
        result.append(("dense-policy", densePolicy.rawValue))
        result.append(("init", initializer?.description ?? Initializer.automaticWeights))
        result.append(("seed", String(seed)))
        if !flattenedMaps.isEmpty { result.append(("flattened-map", flattenedMaps.map(\.description).joined(separator: ","))) }
        return result
    }

    /// Refuses sizes and channel counts below 1.
    public func validate() throws {
        guard height >= 1, width >= 1 else {
            throw WSurgeryError.invalidOption(option: "size", reason: "must be at least 1x1 (got \(height)x\(width))")
        }
        if let channels, channels < 1 { throw WSurgeryError.invalidOption(option: "channels", reason: "must be at least 1 (got \(channels))") }
    }

    /// The graph at the new size.
    public func apply(to input: TensorGraph) throws -> (TensorGraph, PassReport) {
        var graph = input
        var report = PassReport(pass: name, options: options)
        if let channels { try adaptChannels(channels, &graph, &report) }
        let path = graph.sourcePath
        let plan = try graph.editor.settingInputSize(height: height, width: width, in: graph)
        let fanIns = plan.fanInChanges + (try flattenedChanges(plan.flattenedMaps, in: graph, report: &report))
        if !fanIns.isEmpty, densePolicy == .error {
            throw WSurgeryError.weightsDoNotFit(
                path: path,
                layers: fanIns.map {
                    "\($0.misfit.layer) (kernel \(ShapeText.python($0.misfit.tensor.shape)) -> \(ShapeText.python($0.misfit.expected)))"
                },
                hint: "use \(option("dense-policy")) reinit or resample")
        }
        for change in fanIns {
            let m = change.misfit
            if densePolicy == .resample {
                let grid: FlattenedGrid
                switch change.grid {
                case .success(let found): grid = found
                case .failure(let problem):
                    throw WSurgeryError.unsupportedLayer(path: path, layer: m.layer, reason: "\(option("dense-policy")) resample: \(problem.reason)")
                }
                let (shape, values, action) = try resampled(m.tensor, grid: grid, path: path)
                graph.replaceTensor(layer: m.layer, index: m.index, shape: shape, with: values, action: action, in: &report)
            } else {
                try Refit.reinitialise(
                    m, in: &graph, initializer: initializer, seed: seed,
                    reason: " for fan-in \(m.tensor.shape[m.fanInAxis]) -> \(m.expected[m.fanInAxis].map(String.init) ?? "?")", report: &report)
            }
        }
        for embedding in plan.positionEmbeddings { try resample(embedding, in: &graph, report: &report) }
        graph.architecture = plan.edit.architecture
        report.notes += plan.edit.notes
        // With --channels the plan was made on the adapted graph: the shapes before are the input's own.
        var before: [String: [Int?]] = [:]
        if channels != nil, let original = try? input.editor.settingInputSize(height: height, width: width, in: input) {
            for shapes in original.layerShapes { before[shapes.layer] = shapes.old }
        }
        let adapted = Set(report.changes.map(\.layer))
        report.layerShapes = plan.layerShapes.map { shapes in
            let weighted = graph.layer(named: shapes.layer).map { !$0.tensors.isEmpty } ?? false
            let changed = fanIns.contains { $0.misfit.layer == shapes.layer }
            return LayerShapeChange(
                layer: shapes.layer, oldOutput: before[shapes.layer] ?? shapes.old, newOutput: shapes.new,
                weights: !weighted
                    ? "-"
                    : changed ? (densePolicy == .resample ? "resampled" : "re-initialised") : adapted.contains(shapes.layer) ? "adapted" : "unchanged"
            )
        }
        if !plan.layerShapes.isEmpty, fanIns.isEmpty {
            report.notes.append(
                "every weight transfers unchanged"
                    + (plan.globalPooling.isEmpty
                        ? "" : ": the model is fully convolutional up to \(plan.globalPooling.map { "'\($0)'" }.joined(separator: ", "))"))
        }
        if !report.changes.isEmpty { graph.dropOptimizerState(in: &report) }
        return (graph, report)
    }

    /// Surgery I's channel adaptation, when the first convolution does not already take `channels`.
    func adaptChannels(_ channels: Int, _ graph: inout TensorGraph, _ report: inout PassReport) throws {
        let conv = try graph.requireLayer(try LayerDetection.firstConvolution(in: graph))
        guard let roles = WeightRoles(conv), conv.tensors[roles.kernel].shape[roles.inputAxis] != channels else { return }
        let (adapted, channelReport) = try ChannelAdaptation(rule: .adapt(channels: channels, extra: nil, rescale: true)).apply(to: graph)
        graph = adapted
        report.changes += channelReport.changes
        report.notes += channelReport.notes
    }

    /// The Linear layers reading a flattened map (state dicts), as the user's `flattened-map` choices
    /// say: kernels whose fan-in changes, notes for those that keep theirs. A layer nothing decides is
    /// refused, naming the map it reads.
    func flattenedChanges(_ maps: [FlattenedMap], in graph: TensorGraph, report: inout PassReport) throws -> [FanInChange] {
        let path = graph.sourcePath
        for choice in flattenedMaps {
            guard let layer = choice.layer, !maps.contains(where: { $0.layer == layer }) else { continue }
            throw WSurgeryError.invalidOption(
                option: "flattened-map",
                reason: "'\(layer)' is not a Dense/Linear layer reading a flattened map"
                    + (maps.isEmpty ? " (none does in this checkpoint)" : " (those that do: \(maps.map { "'\($0.layer)'" }.joined(separator: ", ")))")
            )
        }
        var changes: [FanInChange] = []
        for map in maps {
            let reads = "'\(map.layer)' reads the flattened \(map.mapText) map of '\(map.convolution)'"
            guard let choice = flattenedMaps.last(where: { $0.layer == map.layer }) ?? flattenedMaps.last(where: { $0.layer == nil }) else {
                if let why = map.fixedBecause {
                    report.notes.append("\(reads): \(why); its weights transfer unchanged")
                    continue
                }
                let how = map.byOrder ? "" : " (found from the shapes: the file does not record the layer order)"
                let keras =
                    map.layout == .keras
                    ? "; Keras weights without their model config: give the .keras or full-model .h5 to have the shapes inferred" : ""
                throw WSurgeryError.unsupportedLayer(
                    path: path, layer: map.layer,
                    reason:
                        "its fan-in \(map.channels * map.positions) is the flattened \(map.mapText) map of '\(map.convolution)'\(how), not pooled features, so it changes with the input size and the file does not record how; give \(option("flattened-map")) \(map.layer)=HxW with the map it reads at \(height)x\(width) (its fan-in becomes \(map.layout == .keras ? "H x W x \(map.channels)" : "\(map.channels) x H x W"), new weights by \(option("dense-policy"))), or \(map.layer)=fixed when the model pools to a fixed size before it\(keras)"
                )
            }
            guard let size = choice.size else {
                report.notes.append("\(reads): its size is fixed (\(option("flattened-map")) \(choice.description)); its weights transfer unchanged")
                continue
            }
            let layer = graph.layer(named: map.layer)!
            let tensor = layer.tensors[map.index]
            let axis = WeightRoles(layer)!.inputAxis
            let channels = choice.channels ?? map.channels
            let fanIn = channels * size.height * size.width
            guard fanIn != tensor.shape[axis] else {
                report.notes.append("\(reads): \(choice.description) keeps its fan-in \(fanIn); its weights transfer unchanged")
                continue
            }
            var expected = tensor.shape.map(Optional.some)
            expected[axis] = fanIn
            let misfit = WeightMisfit(layer: map.layer, index: map.index, tensor: tensor, expected: expected, input: [nil, fanIn])
            let grid: Result<FlattenedGrid, ArchitectureProblem>
            if let side = map.side, channels == map.channels {
                grid = .success(FlattenedGrid(old: (side, side, channels), new: size))
            } else {
                grid = .failure(
                    ArchitectureProblem(
                        reason: map.side == nil
                            ? "the map it read (\(map.mapText)) is not square, so its grid is unknown" : "the map's channels change"))
            }
            changes.append(FanInChange(misfit: misfit, grid: grid))
        }
        return changes
    }

    /// A Dense kernel fed by Flatten of an (H, W, C) map (Keras; PyTorch flattens (C, H, W)), resized
    /// bilinearly to H' x W' positions and scaled by HW / H'W', so a feature map constant over space keeps
    /// its expected activation.
    func resampled(_ tensor: Tensor, grid: FlattenedGrid, path: String) throws -> (shape: [Int], values: any ValueStream, action: String) {
        guard TensorValues.canCompute(tensor.dtype) else {
            throw WSurgeryError.cannotComputeDType(path: path, tensor: tensor.name, dtype: tensor.dtype.numpyName)
        }
        let (h, w, c) = grid.old
        let (h2, w2) = grid.new
        let torch = tensor.layout == .torch
        // Keras: (H, W, C x units) rows; PyTorch: (units x C, H, W) with one value per position.
        let units = tensor.shape[torch ? 0 : 1]
        let values = ResampledValues(
            old: try RandomAccess.of(tensor.data), dtype: tensor.dtype, outer: torch ? units * c : 1, inner: torch ? 1 : c * units,
            rows: Resampling.matrix(from: h, to: h2, filter: .linear, antialias: false),
            columns: Resampling.matrix(from: w, to: w2, filter: .linear, antialias: false), scale: Double(h * w) / Double(h2 * w2))
        return (
            torch ? [units, c * h2 * w2] : [h2 * w2 * c, units], values,
            "resampled bilinearly (\(h)x\(w) -> \(h2)x\(w2) positions of \(c) channels) and scaled by \(h * w)/\(h2 * w2)"
        )
    }

    /// An absolute position embedding's grid resampled bicubically with antialiasing (timm's default),
    /// its prefix tokens kept.
    func resample(_ change: PositionEmbeddingChange, in graph: inout TensorGraph, report: inout PassReport) throws {
        let tensor = graph.layer(named: change.layer)!.tensors[change.index]
        let prefix = change.prefixTokens
        let dim = tensor.shape[tensor.shape.count - 1]
        let values = try TensorValues.decode(tensor, path: graph.sourcePath).values
        let gridValues = ValueArray(shape: [change.oldGrid.height, change.oldGrid.width, dim], values: Array(values[(prefix * dim)...]))
        let resized = Resampling.resize(
            gridValues, axes: [0, 1], to: [change.newGrid.height, change.newGrid.width], filter: .cubic, antialias: true)
        var shape = tensor.shape
        shape[shape.count - 2] = prefix + change.newGrid.height * change.newGrid.width
        let result = ValueArray(shape: shape, values: Array(values[..<(prefix * dim)]) + resized.values)
        graph.replaceTensor(
            layer: change.layer, index: change.index, with: result,
            action:
                "grid \(change.oldGrid.height)x\(change.oldGrid.width) -> \(change.newGrid.height)x\(change.newGrid.width) resampled bicubic (antialiased, timm's default), \(prefix) prefix token(s) kept",
            in: &report)
    }
}
