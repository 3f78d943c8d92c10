/// Finds the layers surgery acts on: the first convolution (which reads the image) and the classifier head.
/// This is the first cut the `inspect` command shows; the surgery passes refine it.
public enum LayerDetection {
    /// Names people's checkpoints use for the stem convolution (timm `first_conv`, torchvision, Hugging Face, Keras applications).
    public static let firstConvNames = [
        "conv1", "conv_stem", "stem.0", "stem.conv", "stem.conv1", "stem_conv", "patch_embed.proj", "features.0", "features.conv0",
        "features.0.0", "embeddings.patch_embeddings.projection", "conv1_conv", "block1_conv1", "Conv1", "stem_conv1", "conv2d",
    ]

    /// The convolution reading the model input: followed from the input layer when edges are known,
    /// else by name, else the first convolution in order.
    public static func firstConvolution(in graph: TensorGraph) -> String? {
        let convs = graph.layers.filter { $0.kind.isConvolution && !$0.tensors.isEmpty }
        if graph.layers.contains(where: { !$0.inbound.isEmpty }) {
            var consumers: [String: [String]] = [:]
            for layer in graph.layers { for source in layer.inbound { consumers[source, default: []].append(layer.name) } }
            var queue = graph.layers.filter { $0.kind == .input }.map(\.name)
            if queue.isEmpty, let first = graph.layers.first { queue = [first.name] }
            var seen = Set(queue)
            while !queue.isEmpty {
                let name = queue.removeFirst()
                if let layer = graph.layer(named: name), layer.kind.isConvolution, !layer.tensors.isEmpty { return name }
                for next in consumers[name, default: []] where seen.insert(next).inserted { queue.append(next) }
            }
        }
        for name in firstConvNames {
            if let layer = convs.first(where: { $0.name == name }) { return layer.name }
        }
        return convs.first?.name
    }

    /// The layer(s) producing the logits: the last dense layer, plus a distillation head beside it.
    public static func classifierHeads(in graph: TensorGraph) -> [String] {
        let dense = graph.layers.filter { $0.kind == .dense && !$0.tensors.isEmpty }
        guard let last = dense.last else { return [] }
        var heads = [last.name]
        if last.name == "head", graph.layer(named: "head_dist") != nil { heads.append("head_dist") }
        return heads
    }
}
