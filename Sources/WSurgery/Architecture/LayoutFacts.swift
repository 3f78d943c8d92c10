/// What moving a model between Keras's and PyTorch's tensor conventions needs to know beyond the tensors:
/// each layer's kind, where it sits (its PyTorch module path), and which Dense layer reads a flattened
/// feature map (its rows are ordered (H, W, C) in Keras and (C, H, W) in PyTorch).
public protocol LayoutFacts: Sendable {
    /// The layer's kind as the architecture records it; nil when it does not know the layer.
    func kind(of layer: String) -> LayerKind?
    /// The PyTorch module path of a layer: the models holding it, then its name (`base.base_conv`).
    func modulePath(of layer: String) -> String
    /// The (height, width, channels) map a Dense layer with `rows` input rows reads through a Flatten right
    /// before it; nil when it reads no Flatten. Throws when the map is not known to have `rows` values.
    func flattenedInput(of layer: String, rows: Int) throws -> (height: Int, width: Int, channels: Int)?
    /// The layer at a PyTorch module path, with its depthwise multiplier (1 when it has none).
    func layer(atModulePath path: String) -> (name: String, kind: LayerKind, depthMultiplier: Int)?
    /// `tensors` grouped into the architecture's layers, in its order.
    func arrange(_ tensors: [Tensor]) -> [Layer]
}

extension Architecture {
    /// The layout facts of this architecture, when it records them (a Keras config does).
    public func layoutFacts(path: String) throws -> (any LayoutFacts)? {
        guard case .keras(let document) = self else { return nil }
        return try KerasLayoutFacts(document: document, path: path)
    }
}
