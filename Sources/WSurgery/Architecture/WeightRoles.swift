/// Which of a layer's tensors is the kernel and which the bias, and where their channel axes lie under
/// the tensor's layout convention.
public struct WeightRoles: Sendable {
    /// Index of the kernel (`kernel`, `weight`) in the layer's tensors.
    public var kernel: Int
    /// Index of the bias, when the layer has one.
    public var bias: Int?
    /// The kernel's layout, which places its channel axes.
    public var layout: Layout
    /// The kernel's input-channel axis: Keras (..., in, out) -> rank-2; PyTorch (out, in, ...) -> 1.
    public var inputAxis: Int
    /// The kernel's output axis: Keras -> last; PyTorch -> 0.
    public var outputAxis: Int

    /// The roles in `layer`, or nil when it has no kernel of rank >= 2 with a known layout.
    public init?(_ layer: Layer) {
        guard
            let k = layer.tensors.firstIndex(where: {
                ["kernel", "weight"].contains(StateDictGrouping.localName($0.name)) && $0.shape.count >= 2 && $0.layout != .unknown
            })
        else { return nil }
        let kernel = layer.tensors[k]
        self.kernel = k
        self.bias = layer.tensors.firstIndex(where: { StateDictGrouping.localName($0.name) == "bias" && $0.shape.count == 1 })
        self.layout = kernel.layout
        let rank = kernel.shape.count
        self.inputAxis = kernel.layout == .torch ? 1 : rank - 2
        self.outputAxis = kernel.layout == .torch ? 0 : rank - 1
    }

    /// The tensor of `layer` with one of `names` as its local name (`moving_mean` / `running_mean`).
    public static func tensorIndex(in layer: Layer, named names: [String]) -> Int? {
        layer.tensors.firstIndex(where: { names.contains(StateDictGrouping.localName($0.name)) })
    }
}
