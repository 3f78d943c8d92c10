/// The shapes a Keras layer's variables must have for a given input shape: what decides whether a layer's
/// weights still fit after the input size changes or a layer before it is removed or resized.
public enum WeightFit {
    /// Expected shape per variable name (`kernel`, `bias`, `gamma`, ...), nil dimensions unknown; nil when
    /// the class has no rule. An empty dictionary means the weights do not depend on the input shape.
    public static func expectedShapes(className: String, config: JSONValue, input: KerasShape) -> [String: [Int?]]? {
        let channelsFirst = config["data_format"]?.stringValue == "channels_first"
        let channels: Int? = input.count > 2 && channelsFirst ? input[1] : input.last ?? nil
        let rank = LayerShapes.spatialRank(className)
        func kernelSize() -> [Int?] { LayerShapes.ints(config["kernel_size"], rank, 1).map(Optional.some) }
        let filters = config["filters"]?.intValue
        switch className {
        case "Dense":
            let units = config["units"]?.intValue
            return ["kernel": [input.last ?? nil, units], "bias": [units]]
        case "Conv1D", "Conv2D", "Conv3D", "Convolution1D", "Convolution2D", "Convolution3D":
            let groups = config["groups"]?.intValue ?? 1
            return ["kernel": kernelSize() + [channels.map { $0 / groups }, filters], "bias": [filters]]
        case "DepthwiseConv1D", "DepthwiseConv2D":
            let multiplier = config["depth_multiplier"]?.intValue ?? 1
            return ["depthwise_kernel": kernelSize() + [channels, multiplier], "bias": [channels.map { $0 * multiplier }]]
        case "SeparableConv1D", "SeparableConv2D", "SeparableConvolution2D":
            let multiplier = config["depth_multiplier"]?.intValue ?? 1
            return [
                "depthwise_kernel": kernelSize() + [channels, multiplier],
                "pointwise_kernel": Array(repeating: 1, count: rank) + [channels.map { $0 * multiplier }, filters], "bias": [filters],
            ]
        case "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "Convolution2DTranspose":
            return ["kernel": kernelSize() + [filters, channels], "bias": [filters]]
        case "BatchNormalization", "SyncBatchNormalization", "LayerNormalization":
            let axes = config["axis"]?.arrayValue?.compactMap(\.intValue) ?? [config["axis"]?.intValue ?? -1]
            let dims = axes.map { a -> Int? in
                let i = a < 0 ? input.count + a : a
                return i >= 0 && i < input.count ? input[i] : nil
            }
            let shape: [Int?] =
                className == "LayerNormalization" && dims.count > 1 ? dims : [dims.contains(where: { $0 == nil }) ? nil : dims.reduce(1) { $0 * $1! }]
            return ["gamma": shape, "beta": shape, "moving_mean": shape, "moving_variance": shape]
        case "Embedding":
            return [:]
        case "Normalization":
            let axes = config["axis"]?.arrayValue?.compactMap(\.intValue) ?? [config["axis"]?.intValue ?? -1]
            let dims = axes.map { a -> Int? in
                let i = a < 0 ? input.count + a : a
                return i >= 0 && i < input.count ? input[i] : nil
            }
            return ["mean": dims, "variance": dims, "count": []]
        case "LayerScale":
            return ["variable": [input.last ?? nil]]
        default:
            return nil
        }
    }

    /// The tensors of `layer` whose shape differs from the expected one, with the expected shape.
    public static func misfits(_ layer: Layer, expected: [String: [Int?]]) -> [(index: Int, expected: [Int?])] {
        layer.tensors.enumerated().compactMap { i, tensor in
            guard let want = expected[StateDictGrouping.localName(tensor.name)] else { return nil }
            let fits = want.count == tensor.shape.count && zip(want, tensor.shape).allSatisfy { $0 == nil || $0 == $1 }
            return fits ? nil : (i, want)
        }
    }
}
