/// Why a layer's output shape could not be computed.
enum LayerShapeError: Error {
    /// No rule for the layer class.
    case unknownClass
    /// The input shapes do not fit the layer (merge of different sizes, Reshape of the wrong size).
    case mismatch(String)
    /// A spatial size reached zero or less: the input is too small for the layer.
    case tooSmall(KerasShape)
}

/// Output-shape rules per Keras layer class, following Keras's `compute_output_shape` (`padding`
/// `same`/`valid`/`causal`, `strides`, `dilation_rate`, `data_format`).
enum LayerShapes {
    /// Classes whose output has the shape of their (first) input.
    static let shapePreserving: Set<String> = [
        "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "ThresholdedReLU", "Dropout", "SpatialDropout1D",
        "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "BatchNormalization",
        "SyncBatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization", "Normalization",
        "Rescaling", "Identity", "ActivityRegularization", "Masking", "RandomFlip", "RandomRotation", "RandomZoom",
        "RandomTranslation", "RandomContrast", "RandomBrightness", "RandomGrayscale", "RandomHue", "RandomSaturation",
        "RandomColorJitter", "RandomSharpness", "RandomPosterization", "AutoContrast", "Equalization", "Solarization",
        // keras.applications' own classes: ConvNeXt's LayerScale and StochasticDepth, InceptionResNetV2's
        // CustomScaleLayer (inputs[0] + inputs[1] * scale, the shape of its first input).
        "LayerScale", "StochasticDepth", "CustomScaleLayer",
    ]

    /// The largest size a shape axis or a window option may have (2^31): with every operand below it, no
    /// rule below can overflow, so a hostile config gets an error instead of a trap.
    static let maxDimension = 1 << 31

    /// The config options that take part in shape arithmetic, and the least value each may take.
    static let arithmeticOptions: [String: Int] = [
        "kernel_size": 1, "strides": 1, "dilation_rate": 1, "pool_size": 1, "size": 1, "depth_multiplier": 0, "filters": 0, "units": 0,
        "output_dim": 0, "padding": 0, "cropping": 0, "output_padding": 0, "target_shape": -1, "n": 0, "height": 0, "width": 0,
    ]

    /// The output shapes of a layer of `className` called on `inputs`. Sizes out of range (a batch shape of
    /// 2^62, strides of 0) are refused before any arithmetic.
    static func outputs(className: String, config: JSONValue, inputs: [KerasShape]) throws(LayerShapeError) -> [KerasShape] {
        for shape in inputs where shape.contains(where: { ($0 ?? 0) < 0 || ($0 ?? 0) > maxDimension }) {
            throw .mismatch("an input shape \(ShapeText.python(shape)) has a size below 0 or above 2^31")
        }
        if !shapePreserving.contains(className) {
            for (key, least) in arithmeticOptions {
                guard let value = config[key] else { continue }
                func integers(_ v: JSONValue) -> [Int] { v.intValue.map { [$0] } ?? (v.arrayValue ?? []).flatMap(integers) }
                if let bad = integers(value).first(where: { $0 < least || $0 > maxDimension / 2 }) {
                    throw .mismatch("its \(key) \(bad) is out of range (\(least) to 2^30)")
                }
            }
        }
        let result = try computeOutputs(className: className, config: config, inputs: inputs)
        for shape in result where shape.contains(where: { ($0 ?? 0) > maxDimension }) {
            throw .mismatch("it would output \(ShapeText.python(shape)), a size above 2^31")
        }
        return result
    }

    static func computeOutputs(className: String, config: JSONValue, inputs: [KerasShape]) throws(LayerShapeError) -> [KerasShape] {
        guard let x = inputs.first else { throw .mismatch("it is called without inputs") }
        if shapePreserving.contains(className) { return [x] }
        let channelsFirst = config["data_format"]?.stringValue == "channels_first"
        switch className {
        case "Conv1D", "Conv2D", "Conv3D", "Convolution1D", "Convolution2D", "Convolution3D",
            "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D", "SeparableConvolution2D":
            let rank = spatialRank(className)
            let (spatial, channels) = try split(x, rank: rank, channelsFirst: channelsFirst, className: className)
            let (kernel, strides, dilation, padding) = window(config, rank)
            let out = spatial.indices.map { i in convLength(spatial[i], kernel[i], strides[i], dilation[i], padding) }
            let filters =
                className.hasPrefix("Depthwise") ? channels.map { $0 * (config["depth_multiplier"]?.intValue ?? 1) } : config["filters"]?.intValue
            return [try join(x[0], out, filters, channelsFirst: channelsFirst)]
        case "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "Convolution2DTranspose":
            let rank = spatialRank(className)
            let (spatial, _) = try split(x, rank: rank, channelsFirst: channelsFirst, className: className)
            let (kernel, strides, dilation, padding) = window(config, rank)
            let outputPadding = config["output_padding"].flatMap { $0.isNull ? nil : ints($0, rank, 0) }
            let out = spatial.indices.map { i in
                transposedLength(spatial[i], kernel[i], strides[i], dilation[i], padding, outputPadding?[i])
            }
            return [try join(x[0], out, config["filters"]?.intValue, channelsFirst: channelsFirst)]
        case "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
            "MaxPool1D", "MaxPool2D", "MaxPool3D", "AvgPool1D", "AvgPool2D", "AvgPool3D":
            let rank = spatialRank(className)
            let (spatial, channels) = try split(x, rank: rank, channelsFirst: channelsFirst, className: className)
            let pool = ints(config["pool_size"], rank, 2)
            let strides = config["strides"].flatMap { $0.isNull ? nil : ints($0, rank, 1) } ?? pool
            let padding = config["padding"]?.stringValue ?? "valid"
            let out = spatial.indices.map { i in convLength(spatial[i], pool[i], strides[i], 1, padding) }
            return [try join(x[0], out, channels, channelsFirst: channelsFirst)]
        case "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
            "GlobalMaxPooling2D", "GlobalMaxPooling3D", "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D",
            "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D":
            let rank = spatialRank(className)
            let (_, channels) = try split(x, rank: rank, channelsFirst: channelsFirst, className: className)
            if config["keepdims"]?.boolValue == true {
                return [try join(x[0], Array(repeating: 1, count: rank), channels, channelsFirst: channelsFirst)]
            }
            return [[x[0], channels]]
        case "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D":
            let rank = spatialRank(className)
            let (spatial, channels) = try split(x, rank: rank, channelsFirst: channelsFirst, className: className)
            let pads = pairs(config[className.hasPrefix("Zero") ? "padding" : "cropping"], rank, className.hasPrefix("Zero") ? 1 : 0)
            let sign = className.hasPrefix("Zero") ? 1 : -1
            let out = spatial.indices.map { i in spatial[i].map { $0 + sign * (pads[i].0 + pads[i].1) } }
            return [try join(x[0], out, channels, channelsFirst: channelsFirst)]
        case "UpSampling1D", "UpSampling2D", "UpSampling3D":
            let rank = spatialRank(className)
            let (spatial, channels) = try split(x, rank: rank, channelsFirst: channelsFirst, className: className)
            let size = ints(config["size"], rank, 2)
            return [try join(x[0], spatial.indices.map { i in spatial[i].map { $0 * size[i] } }, channels, channelsFirst: channelsFirst)]
        case "Resizing", "CenterCrop", "RandomCrop":
            let (_, channels) = try split(x, rank: 2, channelsFirst: channelsFirst, className: className)
            guard let height = config["height"]?.intValue, let width = config["width"]?.intValue else {
                throw .mismatch("its config has no height and width")
            }
            return [try join(x[0], [height, width], channels, channelsFirst: channelsFirst)]
        case "Flatten":
            let rest = x.dropFirst()
            if rest.contains(where: { $0 == nil }) { return [[x.first ?? nil, nil]] }
            guard let count = Checked.product(rest.map { $0! }) else { throw .mismatch("it would flatten more than 2^60 values") }
            return [[x.first ?? nil, count]]
        case "Reshape":
            guard let target = config["target_shape"]?.arrayValue?.map(\.intValue), target.allSatisfy({ $0 != nil }) else {
                throw .mismatch("its target_shape is not a list of integers")
            }
            return [[x.first ?? nil] + (try reshaped(Array(x.dropFirst()), to: target.map { $0! }))]
        case "Permute":
            guard let dims = config["dims"]?.arrayValue?.compactMap(\.intValue), dims.count == x.count - 1,
                dims.allSatisfy({ (1..<x.count).contains($0) })
            else {
                throw .mismatch("its dims do not match the input rank \(x.count)")
            }
            return [[x[0]] + dims.map { x[$0] }]
        case "RepeatVector":
            guard x.count == 2, let n = config["n"]?.intValue else { throw .mismatch("it needs a (batch, features) input") }
            return [[x[0], n, x[1]]]
        case "Dense":
            guard x.count >= 2, let units = config["units"]?.intValue else {
                throw .mismatch("it needs an input of rank >= 2 and an integer 'units'")
            }
            return [Array(x.dropLast()) + [units]]
        case "Embedding":
            guard let dim = config["output_dim"]?.intValue else { throw .mismatch("its config has no output_dim") }
            return [x + [dim]]
        case "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum":
            return [try broadcast(inputs)]
        case "Concatenate":
            return [try concatenated(inputs, axis: config["axis"]?.intValue ?? -1)]
        default:
            throw .unknownClass
        }
    }

    /// A convolution's window: kernel size, strides and dilation per axis, and the padding mode.
    static func window(_ config: JSONValue, _ rank: Int) -> (kernel: [Int], strides: [Int], dilation: [Int], padding: String) {
        (
            ints(config["kernel_size"], rank, 1), ints(config["strides"], rank, 1), ints(config["dilation_rate"], rank, 1),
            config["padding"]?.stringValue ?? "valid"
        )
    }

    static func spatialRank(_ className: String) -> Int {
        if className.contains("1D") { return 1 }
        if className.contains("3D") { return 3 }
        return 2
    }

    /// The spatial sizes and the channel count of a feature map of `rank` spatial axes.
    static func split(_ x: KerasShape, rank: Int, channelsFirst: Bool, className: String) throws(LayerShapeError) -> ([Int?], Int?) {
        guard x.count == rank + 2 else {
            throw .mismatch("\(className) needs an input of rank \(rank + 2) (batch, \(rank) spatial, channels); got \(ShapeText.python(x))")
        }
        return channelsFirst ? (Array(x[2...]), x[1]) : (Array(x[1...rank]), x[rank + 1])
    }

    /// A feature map's shape from its parts; a spatial size below 1 means the input is too small.
    static func join(_ batch: Int?, _ spatial: [Int?], _ channels: Int?, channelsFirst: Bool) throws(LayerShapeError) -> KerasShape {
        let shape = channelsFirst ? [batch, channels] + spatial : [batch] + spatial + [channels]
        if spatial.contains(where: { ($0 ?? 1) < 1 }) { throw .tooSmall(shape) }
        return shape
    }

    /// Output length of a convolution or pooling window.
    static func convLength(_ n: Int?, _ kernel: Int, _ stride: Int, _ dilation: Int, _ padding: String) -> Int? {
        guard let n else { return nil }
        let effective = (kernel - 1) * dilation + 1
        switch padding {
        case "same", "causal": return (n + stride - 1) / stride
        case "full": return (n + effective - 1 + stride - 1) / stride
        default: return n - effective < 0 ? n - effective + 1 : (n - effective) / stride + 1
        }
    }

    /// Keras's `compute_conv_transpose_output_shape` for one axis.
    static func transposedLength(_ n: Int?, _ kernel: Int, _ stride: Int, _ dilation: Int, _ padding: String, _ outputPadding: Int?) -> Int? {
        guard let n else { return nil }
        let effective = kernel + (kernel - 1) * (dilation - 1)
        guard let outputPadding else {
            return padding == "same" ? n * stride : n * stride + max(effective - stride, 0)
        }
        let pad = padding == "same" ? effective / 2 : 0
        return (n - 1) * stride + effective - 2 * pad + outputPadding
    }

    /// An int-or-tuple option (`3` or `[3, 3]`) as `count` values.
    static func ints(_ value: JSONValue?, _ count: Int, _ fallback: Int) -> [Int] {
        if let single = value?.intValue { return Array(repeating: single, count: count) }
        if let items = value?.arrayValue?.compactMap(\.intValue), items.count == count { return items }
        return Array(repeating: fallback, count: count)
    }

    /// Padding/cropping per axis as (before, after): `1`, `[1, 2]` (symmetric per axis) or `[[1, 1], [2, 2]]`.
    static func pairs(_ value: JSONValue?, _ count: Int, _ fallback: Int) -> [(Int, Int)] {
        if let single = value?.intValue { return Array(repeating: (single, single), count: count) }
        guard let items = value?.arrayValue, items.count == count else {
            if count == 1, let items = value?.arrayValue?.compactMap(\.intValue), items.count == 2 { return [(items[0], items[1])] }
            return Array(repeating: (fallback, fallback), count: count)
        }
        return items.map { item in
            if let v = item.intValue { return (v, v) }
            let p = item.arrayValue?.compactMap(\.intValue) ?? []
            return p.count == 2 ? (p[0], p[1]) : (fallback, fallback)
        }
    }

    /// `target` with its -1 resolved against the element count of `dims`.
    static func reshaped(_ dims: [Int?], to target: [Int]) throws(LayerShapeError) -> [Int?] {
        guard let known = Checked.product(target.filter { $0 != -1 }) else { throw .mismatch("its target_shape \(target) is out of range") }
        guard !dims.contains(where: { $0 == nil }) else {
            return target.map { $0 == -1 ? nil : $0 }
        }
        guard let total = Checked.product(dims.map { $0! }) else { throw .mismatch("it reshapes more than 2^60 values") }
        if let free = target.firstIndex(of: -1) {
            guard known > 0, total % known == 0 else { throw .mismatch("cannot reshape \(total) values to \(target)") }
            var result: [Int?] = target
            result[free] = total / known
            return result
        }
        guard known == total else { throw .mismatch("cannot reshape \(ShapeText.python(dims)) (\(total) values) to \(target) (\(known) values)") }
        return target
    }

    /// The shape of an element-wise merge: equal ranks, sizes equal or 1 (or unknown) per axis.
    static func broadcast(_ inputs: [KerasShape]) throws(LayerShapeError) -> KerasShape {
        var result = inputs[0]
        for other in inputs.dropFirst() {
            guard other.count == result.count else {
                throw .mismatch("merges inputs of different ranks: \(inputs.map { ShapeText.python($0) }.joined(separator: " and "))")
            }
            for i in result.indices {
                switch (result[i], other[i]) {
                case let (a?, b?) where a != b && a != 1 && b != 1:
                    throw .mismatch(
                        "merges inputs of shapes \(inputs.map { ShapeText.python($0) }.joined(separator: " and ")), which differ on axis \(i)")
                case let (a?, b?): result[i] = max(a, b)
                case (nil, let b?) where b != 1: result[i] = b
                default: break
                }
            }
        }
        return result
    }

    static func concatenated(_ inputs: [KerasShape], axis: Int) throws(LayerShapeError) -> KerasShape {
        let rank = inputs[0].count
        let a = axis < 0 ? rank + axis : axis
        guard a >= 0, a < rank, inputs.allSatisfy({ $0.count == rank }) else {
            throw .mismatch("concatenates inputs of shapes \(inputs.map { ShapeText.python($0) }.joined(separator: " and ")) on axis \(axis)")
        }
        var result = inputs[0]
        for other in inputs.dropFirst() {
            for i in 0..<rank where i != a {
                if let x = result[i], let y = other[i], x != y {
                    throw .mismatch(
                        "concatenates inputs of shapes \(inputs.map { ShapeText.python($0) }.joined(separator: " and ")), which differ on axis \(i)")
                }
                result[i] = result[i] ?? other[i]
            }
            result[a] = result[a].flatMap { x in other[a].map { x + $0 } }
        }
        return result
    }
}
