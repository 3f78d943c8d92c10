/// `LayoutFacts` read from a Keras model config: classes, nesting and the shapes feeding each Flatten.
struct KerasLayoutFacts: LayoutFacts {
    let document: ConfigDocument
    let path: String
    let configs: [String: KerasLayerConfig]
    let parents: [String: String]
    let shapes: ShapeInference.Result
    let byModule: [String: KerasLayerConfig]

    init(document: ConfigDocument, path: String) throws {
        self.document = document
        self.path = path
        let top = KerasConfig.layers(of: document.json)
        let flat = KerasConfig.flattened(top)
        configs = Dictionary(flat.map { ($0.layer.name, $0.layer) }, uniquingKeysWith: { a, _ in a })
        let parents = KerasConfig.parentModels(top)
        self.parents = parents
        shapes = try ShapeInference.infer(model: document.json, path: path)
        byModule = Dictionary(flat.map { (Self.modulePath($0.layer.name, parents: parents), $0.layer) }, uniquingKeysWith: { a, _ in a })
    }

    func kind(of layer: String) -> LayerKind? { configs[layer].map { Self.kind(className: $0.className) } }

    func modulePath(of layer: String) -> String { Self.modulePath(layer, parents: parents) }

    func flattenedInput(of layer: String, rows: Int) throws -> (height: Int, width: Int, channels: Int)? {
        guard let flatten = ShapeInference.flatten(before: layer, in: configs) else { return nil }
        let map = try shapes.input(of: flatten)
        guard map.count == 4, let h = map[1], let w = map[2], let c = map[3], h * w * c == rows else {
            throw WSurgeryError.unsupportedLayer(
                path: path, layer: layer, reason: "follows Flatten '\(flatten)' whose input is not a known (H, W, C) map of \(rows) values")
        }
        return (h, w, c)
    }

    func layer(atModulePath path: String) -> (name: String, kind: LayerKind, depthMultiplier: Int)? {
        guard let config = byModule[path] else { return nil }
        return (config.name, Self.kind(className: config.className), config.config["depth_multiplier"]?.intValue ?? 1)
    }

    func arrange(_ tensors: [Tensor]) -> [Layer] { KerasConfig.arrange(tensors, by: document.json) }

    /// The kind of a Keras class, separable and depthwise convolutions of any rank included.
    static func kind(className: String) -> LayerKind {
        if className.hasPrefix("Separable") { return .separableConv2d }
        if className.hasPrefix("Depthwise") { return .depthwiseConv2d }
        return LayerKind(kerasClassName: className)
    }

    /// The models holding `layer`, then its name, joined by dots.
    static func modulePath(_ layer: String, parents: [String: String]) -> String {
        var names = [layer]
        var next = parents[layer]
        while let parent = next {
            names.insert(parent, at: 0)
            next = parents[parent]
        }
        return names.joined(separator: ".")
    }
}
