/// Which weights of an edgeless checkpoint (a state dict, with or without config.json) depend on the
/// input size: absolute position embeddings are resampled; tables this tool cannot resample are refused
/// by name; a CNN transfers every weight, on the stated assumption.
enum SizeDependence {
    /// Tensors whose shape follows the patch grid and that are not resampled: BEiT relative position
    /// tables ((2h-1)(2w-1)+3 rows, unlike Swin's window tables), LeViT attention biases, SAM/ViTDet
    /// relative position tables.
    static func sizeBound(in graph: TensorGraph) -> [String] {
        graph.tensors.compactMap { t in
            let local = StateDictGrouping.localName(t.name)
            if local == "relative_position_bias_table", let rows = t.shape.first {
                let side = Int(Double(max(rows - 3, 0)).squareRoot().rounded())
                return side * side == rows - 3 && side > 0 ? t.name : nil
            }
            return ["attention_biases", "rel_pos_h", "rel_pos_w"].contains(local) ? t.name : nil
        }
    }

    /// The position embeddings to resample at `height` x `width`, the Linear layers reading flattened
    /// maps, and the notes saying on what the rest transfers. `type` is the transformers model type when
    /// config.json names a known one.
    static func changes(in graph: TensorGraph, height: Int, width: Int, config: ConfigDocument?, type: HuggingFaceModelType?) throws -> InputSizeEdit
    {
        var edit = InputSizeEdit(edit: ArchitectureEdit(architecture: graph.architecture))
        let (embeddings, notes) = try transfers(in: graph, height: height, width: width, config: config, type: type)
        edit.positionEmbeddings = embeddings
        edit.edit.notes = notes
        if type == nil, embeddings.isEmpty { edit.flattenedMaps = FlattenedMaps.find(in: graph) }
        return edit
    }

    static func transfers(in graph: TensorGraph, height: Int, width: Int, config: ConfigDocument?, type: HuggingFaceModelType?) throws -> (
        [PositionEmbeddingChange], [String]
    ) {
        if let bound = sizeBound(in: graph).first {
            throw WSurgeryError.unsupportedLayer(
                path: graph.sourcePath, layer: bound,
                reason:
                    "its shape follows the patch grid (a relative position table) and wsurgery does not resample it; the model cannot take another input size from these weights"
            )
        }
        let hasEmbeddings = graph.tensors.contains { PositionEmbeddings.names.contains(StateDictGrouping.localName($0.name)) }
        if let type, type.sizeFree {
            return ([], ["model_type \(type.name): every weight transfers (convolutions, then global pooling)"])
        }
        if hasEmbeddings {
            let embeddings = try PositionEmbeddings.changes(in: graph, height: height, width: width, config: config)
            return (embeddings, [PositionEmbeddings.note])
        }
        if let type {
            // A transformer whose absolute embeddings are off (Swin, BEiT with relative bias only).
            return ([], ["model_type \(type.name): no absolute position embeddings; every weight transfers"])
        }
        let what = config == nil ? "no architecture recorded" : "config.json names no model_type wsurgery knows"
        // Without an image-reading layer an input size means nothing: writing the weights unchanged would
        // claim a model that takes HxW images.
        let spatial: [LayerKind] = [.conv2d, .conv3d, .depthwiseConv2d, .separableConv2d]
        guard graph.layers.contains(where: { spatial.contains($0.kind) }) else {
            let kinds = Set(graph.layers.map(\.kind.rawValue)).sorted().joined(separator: ", ")
            throw WSurgeryError.unsupportedCheckpoint(
                path: graph.sourcePath,
                reason:
                    "\(what), and no 2-D convolution or position embedding in the weights (layers: \(kinds)): nothing in them reads an image, so an input size has no meaning for this model; nothing was written"
            )
        }
        // Keras weights without their config (a .weights.h5 alone) are not a PyTorch state dict: say so.
        if graph.tensors.contains(where: { $0.layout == .keras }) {
            return (
                [],
                [
                    "\(what) (Keras weights without their model config): every convolution and every Dense that reads pooled features transferred unchanged; a Keras model built at the new size takes them only if no Dense reads a Flatten of a fixed-size map (global pooling is fine). Give the .keras or full-model .h5 to have that checked"
                ]
            )
        }
        return (
            [],
            [
                "\(what): every convolution and every Linear that reads pooled features transferred, assuming global or adaptive pooling before the head (as in every torchvision and timm classifier)"
            ]
        )
    }
}
