/// Absolute position embeddings of vision transformers (timm `pos_embed`, transformers
/// `embeddings.position_embeddings`, CLIP `positional_embedding`): where they are, which patch grid they
/// were trained at and which they need at a new input size, as timm's `resample_abs_pos_embed` sees them.
enum PositionEmbeddings {
    /// Local names of absolute position embeddings.
    static let names = ["pos_embed", "position_embeddings", "positional_embedding"]

    /// The embeddings of `graph` and their grids at `height` x `width`. `config` (a Hugging Face or timm
    /// `config.json`) gives the patch and image size when present.
    static func changes(in graph: TensorGraph, height: Int, width: Int, config: ConfigDocument?) throws -> [PositionEmbeddingChange] {
        let path = graph.sourcePath
        let embeddings = graph.layers.flatMap { layer in
            layer.tensors.enumerated().filter {
                names.contains(StateDictGrouping.localName($0.element.name)) && [2, 3].contains($0.element.shape.count)
            }
            .map { (layer: layer.name, index: $0.offset) }
        }
        guard !embeddings.isEmpty || config != nil else {
            throw WSurgeryError.unsupportedCheckpoint(
                path: path,
                reason:
                    "the checkpoint records no architecture to infer shapes from (no Keras model config) and has no position embeddings; a PyTorch module's code decides whether it takes \(height)x\(width) (models with adaptive/global pooling do)"
            )
        }
        let patch = try patchSize(graph, config: config)
        guard height % patch.0 == 0, width % patch.1 == 0 else {
            throw WSurgeryError.invalidOption(option: "size", reason: "\(height)x\(width) is not a multiple of the patch size \(patch.0)x\(patch.1)")
        }
        let grid = (height: height / patch.0, width: width / patch.1)
        return try embeddings.map { layer, index in
            let tensor = graph.layer(named: layer)!.tensors[index]
            let tokens = tensor.shape[tensor.shape.count - 2]
            let old = try oldGrid(tokens: tokens, config: config, patch: patch, tensor: tensor.name, path: path)
            return PositionEmbeddingChange(layer: layer, index: index, oldGrid: old, newGrid: grid, prefixTokens: tokens - old.0 * old.1)
        }
    }

    /// The patch size: config.json's `patch_size`, else the kernel of the convolution a patch embedding is
    /// named (timm `patch_embed.proj`, CLIP `visual.conv1`), never a kernel guessed from its shape.
    static func patchSize(_ graph: TensorGraph, config: ConfigDocument?) throws -> (Int, Int) {
        if let value = config?.json["patch_size"] {
            if let p = value.intValue { return (p, p) }
            if let p = value.arrayValue?.compactMap(\.intValue), p.count == 2 { return (p[0], p[1]) }
        }
        for name in ["patch_embed.proj", "embeddings.patch_embeddings.projection", "visual.conv1"] {
            if let layer = graph.layers.first(where: { $0.name == name || $0.name.hasSuffix("." + name) }), let roles = WeightRoles(layer) {
                let shape = layer.tensors[roles.kernel].shape
                if shape.count == 4 { return roles.layout == .torch ? (shape[2], shape[3]) : (shape[0], shape[1]) }
            }
        }
        throw WSurgeryError.detectionFailed(
            path: graph.sourcePath, what: "patch size",
            reason: "no patch_size in config.json and no patch-embedding convolution (patch_embed.proj, embeddings.patch_embeddings.projection)",
            candidates: [])
    }

    /// The grid the embedding was trained at: config.json's `image_size` / patch, else the square left
    /// after the fewest prefix (class, distillation) tokens, as timm assumes.
    static func oldGrid(tokens: Int, config: ConfigDocument?, patch: (Int, Int), tensor: String, path: String) throws -> (Int, Int) {
        if let size = config?.json["image_size"]
            ?? config?.json["pretrained_cfg"]?["input_size"].map({ .array(Array(($0.arrayValue ?? []).suffix(2))) })
        {
            let hw = size.intValue.map { [$0, $0] } ?? size.arrayValue?.compactMap(\.intValue) ?? []
            if hw.count == 2, hw[0] / patch.0 * (hw[1] / patch.1) <= tokens { return (hw[0] / patch.0, hw[1] / patch.1) }
        }
        for prefix in 0...8 where tokens - prefix > 0 {
            let side = Int(Double(tokens - prefix).squareRoot().rounded())
            if side * side == tokens - prefix { return (side, side) }
        }
        throw WSurgeryError.unsupportedLayer(
            path: path, layer: tensor, reason: "\(tokens) positions are not a square grid plus up to 8 prefix tokens; give config.json an image_size")
    }

    /// What the report says once the embeddings were resampled.
    static let note = "convolution and linear weights do not depend on the input size; only position embeddings were changed"
}
