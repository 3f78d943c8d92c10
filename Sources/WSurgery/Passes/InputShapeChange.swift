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

    public var height: Int
    public var width: Int
    /// Chains channel adaptation (Surgery I) when set.
    public var channels: Int?
    public var densePolicy: DensePolicy
    /// nil: glorot-uniform for Keras kernels, torch-default for PyTorch layouts.
    public var initializer: Initializer?
    public var seed: UInt64

    public init(height: Int, width: Int, channels: Int? = nil, densePolicy: DensePolicy = .reinit, initializer: Initializer? = nil, seed: UInt64 = 0) {
        self.height = height
        self.width = width
        self.channels = channels
        self.densePolicy = densePolicy
        self.initializer = initializer
        self.seed = seed
    }

    public var name: String { "set-input-shape" }

    public var options: [(String, String)] {
        var result: [(String, String)] = [("size", "\(height)x\(width)")]
        if let channels { result.append(("channels", String(channels))) }
        result.append(("dense-policy", densePolicy.rawValue))
        if let initializer { result.append(("init", initializer.description)) }
        result.append(("seed", String(seed)))
        return result
    }

    /// `224x224` (or `224` for a square) as (height, width).
    public static func parseSize(_ text: String) throws -> (Int, Int) {
        let parts = text.lowercased().split(separator: "x", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard (parts.count == 1 || parts.count == 2), let h = parts.first ?? nil, let w = parts.last ?? nil else {
            throw WSurgeryError.invalidOption(option: "--size", reason: "'\(text)': expected HxW (e.g. 256x256) or one number for a square")
        }
        return (h, w)
    }

    public func validate() throws {
        guard height >= 1, width >= 1 else { throw WSurgeryError.invalidOption(option: "--size", reason: "must be at least 1x1 (got \(height)x\(width))") }
        if let channels, channels < 1 { throw WSurgeryError.invalidOption(option: "--channels", reason: "must be at least 1 (got \(channels))") }
    }

    public func apply(to input: TensorGraph) throws -> (TensorGraph, PassReport) {
        var graph = input
        var report = PassReport(pass: name, options: options)
        if let channels { try adaptChannels(channels, &graph, &report) }
        if case .keras(let document)? = graph.architecture {
            try resizeKeras(document, &graph, &report)
        } else {
            try resizeStateDict(&graph, &report)
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

    // MARK: Keras

    func resizeKeras(_ document: ConfigDocument, _ graph: inout TensorGraph, _ report: inout PassReport) throws {
        let model = document.json
        let path = graph.sourcePath
        let old = try ShapeInference.infer(model: model, path: path)
        guard let recorded = ShapeInference.recordedInputShapes(of: model), recorded.count == 1, recorded[0].count == 4 else {
            throw WSurgeryError.unsupportedLayer(path: path, layer: KerasConfig.entryName(model) ?? "model", reason: "set-input-shape changes models with one image input (batch, height, width, channels)")
        }
        let layers = Dictionary(KerasConfig.flattened(KerasConfig.layers(of: model)).map { ($0.layer.name, $0.layer) }, uniquingKeysWith: { a, _ in a })
        let channelsFirst = layers.values.contains { $0.config["data_format"]?.stringValue == "channels_first" }
        var newInput = recorded[0]
        newInput[channelsFirst ? 2 : 1] = height
        newInput[channelsFirst ? 3 : 2] = width
        let new = try ShapeInference.infer(model: model, inputShapes: [newInput], path: path)
        try new.requireAll()

        // Only a Dense kernel's fan-in (its rows) may change with the input size.
        let misfits = try Refit.misfits(graph, model: model, shapes: new, before: old)
        for m in misfits where !(layers[m.layer]?.className == "Dense" && StateDictGrouping.localName(m.tensor.name) == "kernel" && m.expected.count == 2 && m.expected[1] == m.tensor.shape[1]) {
            throw WSurgeryError.shapeMismatch(path: path, layer: m.layer, reason: m.description)
        }
        if !misfits.isEmpty, densePolicy == .error {
            throw WSurgeryError.weightsDoNotFit(path: path, layers: misfits.map { "\($0.layer) (kernel \(ShapeText.python($0.tensor.shape)) -> \(ShapeText.python($0.expected)))" },
                                                hint: "use --dense-policy reinit or resample")
        }
        for m in misfits {
            if densePolicy == .resample {
                let (values, action) = try resampled(m.tensor, layer: m.layer, old: old, new: new, layers: layers, channelsFirst: channelsFirst, path: path)
                graph.replaceTensor(layer: m.layer, index: m.index, with: values, action: action, in: &report)
            } else {
                try Refit.reinitialise(m, in: &graph, initializer: initializer, seed: seed, reason: " for fan-in \(m.tensor.shape[0]) -> \(m.expected[0].map(String.init) ?? "?")", report: &report)
            }
        }
        let (edited, fields) = KerasArchitectureEdit.refreshingShapes(document, with: new)
        graph.architecture = .keras(edited)
        if !fields.isEmpty { report.notes.append("Keras config: shapes updated in \(fields.count) field(s), input now \(ShapeText.python(newInput))") }
        report.layerShapes = new.order.filter { layers[$0] != nil }.map { name in
            let weighted = graph.layer(named: name).map { !$0.tensors.isEmpty } ?? false
            let changed = misfits.contains { $0.layer == name }
            return LayerShapeChange(layer: name, oldOutput: old.outputs[name]?.first, newOutput: new.outputs[name]?.first,
                                    weights: !weighted ? "-" : changed ? (densePolicy == .resample ? "resampled" : "re-initialised") : "unchanged")
        }
        if misfits.isEmpty {
            let pooling = new.order.filter { layers[$0]?.className.hasPrefix("Global") ?? false }
            report.notes.append("every weight transfers unchanged" + (pooling.isEmpty ? "" : ": the model is fully convolutional up to \(pooling.map { "'\($0)'" }.joined(separator: ", "))"))
        }
    }

    /// A Dense kernel fed by Flatten of an (H, W, C) map, resized bilinearly to (H', W', C) and scaled by
    /// HW / H'W', so a feature map constant over space keeps its expected activation.
    func resampled(_ tensor: Tensor, layer: String, old: ShapeInference.Result, new: ShapeInference.Result, layers: [String: KerasLayerConfig], channelsFirst: Bool, path: String) throws -> (ValueArray, String) {
        let flatten = ShapeInference.flatten(before: layer, in: layers)
        guard let flatten, let before = old.inputs[flatten]?.first, let after = new.inputs[flatten]?.first, before.count == 4,
              let h = before[1], let w = before[2], let c = before[3], let h2 = after[1], let w2 = after[2], after[3] == c else {
            throw WSurgeryError.unsupportedLayer(path: path, layer: layer, reason: "--dense-policy resample needs a Flatten of a (height, width, channels) feature map right before the layer")
        }
        if channelsFirst {
            throw WSurgeryError.unsupportedLayer(path: path, layer: layer, reason: "--dense-policy resample supports channels_last feature maps only")
        }
        let units = tensor.shape[1]
        let kernel = try TensorValues.decode(tensor, path: path)
        let grid = ValueArray(shape: [h, w, c, units], values: kernel.values)
        let resized = Resampling.resize(grid, axes: [0, 1], to: [h2, w2], filter: .linear, antialias: false)
        let scale = Double(h * w) / Double(h2 * w2)
        let values = ValueArray(shape: [h2 * w2 * c, units], values: resized.values.map { $0 * scale })
        return (values, "resampled bilinearly (\(h)x\(w) -> \(h2)x\(w2) positions of \(c) channels) and scaled by \(h * w)/\(h2 * w2)")
    }

    // MARK: State dicts

    /// Local names of absolute position embeddings: timm `pos_embed`, transformers
    /// `embeddings.position_embeddings`, CLIP `positional_embedding`.
    static let positionEmbeddingNames = ["pos_embed", "position_embeddings", "positional_embedding"]

    func resizeStateDict(_ graph: inout TensorGraph, _ report: inout PassReport) throws {
        let path = graph.sourcePath
        var hfConfig: ConfigDocument?
        if case .huggingFace(let document)? = graph.architecture { hfConfig = document }
        let embeddings = graph.layers.flatMap { layer in
            layer.tensors.enumerated().filter { Self.positionEmbeddingNames.contains(StateDictGrouping.localName($0.element.name)) && [2, 3].contains($0.element.shape.count) }
                .map { (layer: layer.name, index: $0.offset) }
        }
        guard !embeddings.isEmpty || hfConfig != nil else {
            throw WSurgeryError.unsupportedLayer(path: path, layer: graph.layers.first?.name ?? "?", reason: "the checkpoint records no architecture to infer shapes from (no Keras model config) and has no position embeddings; a PyTorch module's code decides whether it takes \(height)x\(width) (models with adaptive/global pooling do)")
        }
        let patch = try patchSize(graph, hfConfig: hfConfig)
        guard height % patch.0 == 0, width % patch.1 == 0 else {
            throw WSurgeryError.invalidOption(option: "--size", reason: "\(height)x\(width) is not a multiple of the patch size \(patch.0)x\(patch.1)")
        }
        let grid = (height / patch.0, width / patch.1)
        for (layerName, index) in embeddings {
            let tensor = graph.layer(named: layerName)!.tensors[index]
            let tokens = tensor.shape[tensor.shape.count - 2]
            let oldGrid = try oldGridSize(tokens: tokens, hfConfig: hfConfig, patch: patch, tensor: tensor.name, path: path)
            let prefix = tokens - oldGrid.0 * oldGrid.1
            let dim = tensor.shape[tensor.shape.count - 1]
            let values = try TensorValues.decode(tensor, path: path).values
            let gridValues = ValueArray(shape: [oldGrid.0, oldGrid.1, dim], values: Array(values[(prefix * dim)...]))
            let resized = Resampling.resize(gridValues, axes: [0, 1], to: [grid.0, grid.1], filter: .cubic, antialias: true)
            var shape = tensor.shape
            shape[shape.count - 2] = prefix + grid.0 * grid.1
            let result = ValueArray(shape: shape, values: Array(values[..<(prefix * dim)]) + resized.values)
            graph.replaceTensor(layer: layerName, index: index, with: result,
                                action: "grid \(oldGrid.0)x\(oldGrid.1) -> \(grid.0)x\(grid.1) resampled bicubic (antialiased, timm's default), \(prefix) prefix token(s) kept", in: &report)
        }
        if let hfConfig {
            let (edited, fields) = HuggingFaceConfigEdit.settingImageSize(hfConfig, height: height, width: width)
            graph.architecture = .huggingFace(edited)
            if !fields.isEmpty { report.notes.append("config.json: " + fields.joined(separator: ", ") + " set to \(height)x\(width)") }
        }
        report.notes.append("convolution and linear weights do not depend on the input size; only position embeddings were changed")
    }

    /// The patch size: config.json's `patch_size`, else the kernel of the patch-embedding convolution.
    func patchSize(_ graph: TensorGraph, hfConfig: ConfigDocument?) throws -> (Int, Int) {
        if let value = hfConfig?.json["patch_size"] {
            if let p = value.intValue { return (p, p) }
            if let p = value.arrayValue?.compactMap(\.intValue), p.count == 2 { return (p[0], p[1]) }
        }
        for name in ["patch_embed.proj", "embeddings.patch_embeddings.projection", "conv1", "visual.conv1"] {
            if let layer = graph.layers.first(where: { $0.name == name || $0.name.hasSuffix("." + name) }), let roles = WeightRoles(layer) {
                let shape = layer.tensors[roles.kernel].shape
                if shape.count == 4 { return roles.layout == .torch ? (shape[2], shape[3]) : (shape[0], shape[1]) }
            }
        }
        throw WSurgeryError.detectionFailed(path: graph.sourcePath, what: "patch size", reason: "no patch_size in config.json and no patch-embedding convolution (patch_embed.proj, embeddings.patch_embeddings.projection)", candidates: [])
    }

    /// The grid the embedding was trained at: config.json's `image_size` / patch, else the square left
    /// after the fewest prefix (class, distillation) tokens, as timm assumes.
    func oldGridSize(tokens: Int, hfConfig: ConfigDocument?, patch: (Int, Int), tensor: String, path: String) throws -> (Int, Int) {
        if let size = hfConfig?.json["image_size"] ?? hfConfig?.json["pretrained_cfg"]?["input_size"].map({ .array(Array(($0.arrayValue ?? []).suffix(2))) }) {
            let hw = size.intValue.map { [$0, $0] } ?? size.arrayValue?.compactMap(\.intValue) ?? []
            if hw.count == 2, hw[0] / patch.0 * (hw[1] / patch.1) <= tokens { return (hw[0] / patch.0, hw[1] / patch.1) }
        }
        for prefix in 0...8 where tokens - prefix > 0 {
            let side = Int(Double(tokens - prefix).squareRoot().rounded())
            if side * side == tokens - prefix { return (side, side) }
        }
        throw WSurgeryError.unsupportedLayer(path: path, layer: tensor, reason: "\(tokens) positions are not a square grid plus up to 8 prefix tokens; give config.json an image_size")
    }
}
