/// What transformers' image models call the layers surgery acts on, by `config.json`'s `model_type`
/// (checked against transformers 5.23 state dicts: fixtures/hf/make_hf_fixtures.py). Names are below
/// the base model's prefix (`resnet.`), which a bare `ResNetModel` state dict does not have.
struct HuggingFaceModelType: Sendable {
    /// `model_type`.
    let name: String
    /// The base model's attribute (`base_model_prefix`).
    let prefix: String
    /// The convolution reading the pixels, below the prefix.
    let firstConvolution: String
    /// Classifier layers (outside the base model); the first that exists is the head, `partners` come with it.
    let heads: [String]
    /// Heads that come together (DeiT with a teacher: class and distillation tokens).
    let partners: [String]
    /// The absolute position embeddings below the prefix, for transformers (nil for CNNs).
    let positionEmbeddings: String?
    /// Whether every weight transfers to another input size as it is (convolutions, then pooling).
    var sizeFree: Bool { positionEmbeddings == nil }

    /// The known types.
    static let all: [String: HuggingFaceModelType] = {
        func cnn(_ name: String, _ conv: String, head: String = "classifier") -> HuggingFaceModelType {
            HuggingFaceModelType(name: name, prefix: name, firstConvolution: conv, heads: [head], partners: [], positionEmbeddings: nil)
        }
        func transformer(_ name: String, partners: [String] = []) -> HuggingFaceModelType {
            HuggingFaceModelType(
                name: name, prefix: name, firstConvolution: "embeddings.patch_embeddings.projection", heads: ["classifier"] + partners.prefix(1),
                partners: Array(partners.dropFirst()), positionEmbeddings: "embeddings.position_embeddings")
        }
        let types = [
            cnn("resnet", "embedder.embedder.convolution", head: "classifier.1"),
            cnn("regnet", "embedder.embedder.convolution", head: "classifier.1"),
            cnn("convnext", "embeddings.patch_embeddings"),
            cnn("convnextv2", "embeddings.patch_embeddings"),
            cnn("efficientnet", "embeddings.convolution"),
            cnn("mobilenet_v1", "conv_stem.convolution"),
            cnn("mobilenet_v2", "conv_stem.first_conv.convolution"),
            transformer("vit"), transformer("deit", partners: ["cls_classifier", "distillation_classifier"]), transformer("beit"),
            transformer("dinov2"), transformer("swin"),
        ]
        return Dictionary(uniqueKeysWithValues: types.map { ($0.name, $0) })
    }()

    /// The type `config` names, when known.
    static func of(_ config: ConfigDocument) -> HuggingFaceModelType? { config.json["model_type"]?.stringValue.flatMap { all[$0] } }

    /// The graph's layer for a name below the base prefix (with it, or without it in a bare base model).
    func layer(_ local: String, in graph: TensorGraph) -> Layer? {
        graph.layer(named: prefix + "." + local) ?? graph.layer(named: local)
    }
}
