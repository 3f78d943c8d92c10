import Foundation

/// Changes the number of input channels of the first convolution (`collapse-channels`, `adapt-channels`).
///
/// Every rule is a linear map along the kernel's input-channel axis (`ValueArray.mapped`): new channel j
/// is a weighted sum of the old channels. timm's `adapt_input_conv` is the reference for the defaults.
public struct ChannelAdaptation: GraphPass {
    /// How RGB becomes one channel.
    public enum CollapseMode: String, Sendable, CaseIterable {
        /// Sum over channels (timm): model(gray) == original(gray copied to every channel).
        case sum
        /// Average over channels.
        case mean
        /// 3 x (0.299 R + 0.587 G + 0.114 B): luminance weights at the scale of `sum`.
        case luma
    }

    /// How channels beyond the source ones are filled when growing.
    public enum ExtraFill: Equatable, Sendable, CustomStringConvertible {
        case `repeat`, zeros, mean
        case copy(Int)

        /// Parses `repeat`, `zeros`, `mean` or `copy:K`.
        public init(parsing text: String) throws {
            switch text {
            case "repeat": self = .repeat
            case "zeros": self = .zeros
            case "mean": self = .mean
            default:
                guard text.hasPrefix("copy:"), let k = Int(text.dropFirst(5)), k >= 0 else {
                    throw WSurgeryError.invalidOption(option: "extra", reason: "'\(text)': expected repeat, zeros, mean or copy:K")
                }
                self = .copy(k)
            }
        }

        /// The spelling `init(parsing:)` reads.
        public var description: String {
            switch self {
            case .repeat: return "repeat"
            case .zeros: return "zeros"
            case .mean: return "mean"
            case .copy(let k): return "copy:\(k)"
            }
        }
    }

    /// A per-channel input normalisation `(x - mean_c) / std_c` to fold into the collapsed kernel.
    public struct Normalization: Equatable, Sendable {
        /// Per-channel means.
        public var mean: [Double]
        /// Per-channel standard deviations (all > 0).
        public var std: [Double]

        /// torchvision's ImageNet normalisation.
        public static let imagenet = Normalization(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])

        /// A normalisation.
        public init(mean: [Double], std: [Double]) {
            self.mean = mean
            self.std = std
        }

        /// `imagenet` or `M,M,M/S,S,S`.
        public init(parsing text: String) throws {
            if text == "imagenet" {
                self = .imagenet
                return
            }
            let parts = text.split(separator: "/", omittingEmptySubsequences: false)
            let numbers = parts.map { $0.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) } }
            guard parts.count == 2, numbers.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0 != nil } }), numbers[0].count == numbers[1].count else {
                throw WSurgeryError.invalidOption(option: "fold-normalization", reason: "'\(text)': expected imagenet or MEAN,MEAN,MEAN/STD,STD,STD")
            }
            let std = numbers[1].map { $0! }
            guard std.allSatisfy({ $0 > 0 }) else {
                throw WSurgeryError.invalidOption(option: "fold-normalization", reason: "every std must be > 0")
            }
            self.init(mean: numbers[0].map { $0! }, std: std)
        }
    }

    /// What the channels become.
    public enum Rule: Equatable, Sendable {
        /// To one channel (`collapse-channels`).
        case collapse(CollapseMode)
        /// To `channels` channels (`adapt-channels`); `extra` nil follows timm.
        case adapt(channels: Int, extra: ExtraFill?, rescale: Bool)
    }

    /// The rule applied.
    public var rule: Rule
    /// The layers named to act on; empty means detect them.
    public var layers: [String]
    /// A normalisation folded into the collapsed kernel, when given.
    public var foldNormalization: Normalization?

    /// The pass.
    public init(rule: Rule, layers: [String] = [], foldNormalization: Normalization? = nil) {
        self.rule = rule
        self.layers = layers
        self.foldNormalization = foldNormalization
    }

    /// `collapse-channels` or `adapt-channels`.
    public var name: String {
        if case .collapse = rule { return "collapse-channels" }
        return "adapt-channels"
    }

    /// The resolved options, for reports.
    public var options: [(String, String)] {
        var result: [(String, String)] = []
        switch rule {
        case .collapse(let mode): result.append(("mode", mode.rawValue))
        case let .adapt(channels, extra, rescale):
            result.append(("channels", String(channels)))
            result.append(("extra", extra?.description ?? "timm"))
            if !rescale { result.append(("rescale", "false")) }
        }
        if let f = foldNormalization {
            result.append(("fold-normalization", f.mean.map { "\($0)" }.joined(separator: ",") + "/" + f.std.map { "\($0)" }.joined(separator: ",")))
        }
        if !layers.isEmpty { result.append(("layer", layers.joined(separator: ","))) }
        return result
    }

    /// The matrix mapping `source` channels to the new ones (one row per new channel).
    public func matrix(source: Int) throws -> [[Double]] {
        func unit(_ i: Int) -> [Double] { (0..<source).map { $0 == i ? 1 : 0 } }
        switch rule {
        case .collapse(.sum): return [[Double](repeating: 1, count: source)]
        case .collapse(.mean): return [[Double](repeating: 1 / Double(source), count: source)]
        case .collapse(.luma): return [[0.299, 0.587, 0.114].map { 3 * $0 }]
        case let .adapt(target, extra, rescale):
            guard let extra else {
                // timm: sum for one channel; else repeat cyclically, keep `target`, scale by source/target.
                if target == 1 { return [[Double](repeating: 1, count: source)] }
                let scale = rescale ? Double(source) / Double(target) : 1
                return (0..<target).map { unit($0 % source).map { $0 * scale } }
            }
            let rows: [[Double]] = (0..<target).map { j in
                if j < source { return unit(j) }
                switch extra {
                case .repeat: return unit(j % source)
                case .zeros: return [Double](repeating: 0, count: source)
                case .mean: return [Double](repeating: 1 / Double(source), count: source)
                case .copy(let k): return unit(k)
                }
            }
            // Zero-filled extra channels leave the response to the source channels exactly as it was.
            let scale = rescale && extra != .zeros ? Double(source) / Double(target) : 1
            return rows.map { $0.map { $0 * scale } }
        }
    }

    /// Refuses a channel count below 1 and a fold outside collapse-channels.
    public func validate() throws {
        if case .adapt(let channels, _, _) = rule, channels < 1 {
            throw WSurgeryError.invalidOption(option: "channels", reason: "must be at least 1 (got \(channels))")
        }
        if foldNormalization != nil, case .adapt = rule {
            throw WSurgeryError.invalidOption(option: "fold-normalization", reason: "only applies to collapse-channels")
        }
    }

    /// The graph with the convolutions' kernels mapped and the architecture in step.
    public func apply(to input: TensorGraph) throws -> (TensorGraph, PassReport) {
        var graph = input
        var report = PassReport(pass: name, options: options)
        let targets = layers.isEmpty ? [try firstConvolution(in: graph)] : layers
        var newChannels = 0
        var configPreprocessing: [InputPreprocessing] = []
        for target in targets {
            let layer = try graph.requireLayer(target)
            // Depthwise, separable and transposed kernels put their channel axes elsewhere.
            guard [.conv1d, .conv2d, .conv3d, .unknown].contains(layer.kind), let roles = WeightRoles(layer) else {
                throw WSurgeryError.unsupportedLayer(
                    path: graph.sourcePath, layer: target, reason: "not a convolution with a kernel of known layout (\(layer.kind.rawValue))")
            }
            let kernelTensor = layer.tensors[roles.kernel]
            let source = kernelTensor.shape[roles.inputAxis]
            try check(source: source, layer: target, path: graph.sourcePath)
            let kernel = try TensorValues.decode(kernelTensor, path: graph.sourcePath)
            var weights = try matrix(source: source)
            var action = describeAction(source: source, channels: weights.count)
            // The model's own per-channel preprocessing before the convolution, and a normalisation the
            // user applies before the model (folded in, never kept).
            let preprocessing = try graph.editor.inputPreprocessing(before: target, in: graph).map { try decoded($0, graph) }
            for step in preprocessing where step.channels != 1 && step.channels != source {
                throw WSurgeryError.unsupportedLayer(
                    path: graph.sourcePath, layer: step.layer, reason: "has \(step.channels) channel values but '\(target)' reads \(source) channels")
            }
            let external = foldNormalization.map {
                InputPreprocessing(layer: "", statistics: .normalization(mean: $0.mean, variance: $0.std.map { $0 * $0 }), storage: .config)
            }
            if external != nil, let held = preprocessing.first(where: { $0.storage == .processor }) {
                throw WSurgeryError.invalidOption(
                    option: "fold-normalization",
                    reason: "\(held.layer) already gives the normalisation applied before the model; it is folded in by itself")
            }
            // An image processor's normalisation, once folded, keeps its channel mean (the processor still
            // applies it): the new input is undone to pixels first.
            let processorMean = preprocessing.first { $0.storage == .processor }.map(\.channelMean)
            var chain = (external.map { [$0] } ?? []) + preprocessing
            var adapted: [InputPreprocessing]
            var offset: [Double]?
            // A normalisation the user gives is always folded; the model's own only from its first layer that
            // treats channels differently (a uniform one works on one channel as it is).
            let foldFrom = external != nil ? 0 : isCollapse ? chain.firstIndex { !$0.isUniform(channels: source) } : nil
            if let foldFrom {
                if let processorMean, foldFrom == 0 { chain.insert(processorMean.inverse, at: 0) }
                // y_c = A_c x + B_c over the folded span: the kernel on x is sum_c w_c A_c W_c, and the constant
                // sum_c w_c B_c W_c (summed over the window) moves into the bias.
                var a = [Double](repeating: 1, count: source)
                var b = [Double](repeating: 0, count: source)
                for step in chain[foldFrom...] {
                    for c in 0..<source {
                        let (scale, shift) = step.affine(c)
                        a[c] *= scale
                        b[c] = b[c] * scale + shift
                    }
                }
                let row = weights[0]
                weights = [(0..<source).map { row[$0] * a[$0] }]
                // `foldOffset` takes what the new convolution adds over the old: minus the folded constant.
                offset = kernel.mapped(along: roles.inputAxis, by: [(0..<source).map { -row[$0] * b[$0] }]).sums(keeping: roles.outputAxis)
                var folded: [String] = []
                for step in chain[foldFrom...] {
                    let name = step.layer.isEmpty ? "the given normalisation" : "'\(step.layer)'"
                    if !folded.contains(name) { folded.append(name) }
                }
                action += ", " + folded.joined(separator: ", ") + " folded in"
                let firstModelFolded = max(foldFrom - (external == nil ? 0 : 1), 0)
                adapted = preprocessing.enumerated().map { i, step in
                    i < firstModelFolded ? step.mapping { [$0[0]] } : step.storage == .processor ? step.channelMean : step.identity
                }
            } else {
                // Each new channel takes the values of the source channels its kernel row draws on.
                adapted = preprocessing.map { step in
                    step.isUniform(channels: source) ? step.mapping { [$0[0]] } : step.mapping { Self.remap($0, by: weights) }
                }
            }
            // Tensors must hold one value per channel; a config may give one value for all.
            for (old, new) in zip(preprocessing, adapted) where old != new || (new.storage != .config && weights.count != source) {
                try store(new, channels: weights.count, in: &graph, report: &report)
                if new.storage == .config || new.storage == .processor { configPreprocessing.append(new) }
            }
            let newKernel = kernel.mapped(along: roles.inputAxis, by: weights)
            newChannels = newKernel.shape[roles.inputAxis]
            graph.replaceTensor(layer: target, index: roles.kernel, with: newKernel, action: action, in: &report)
            if let offset {
                try foldOffset(offset, conv: layer, roles: roles, into: &graph, report: &report)
            }
            if foldFrom != nil, let padding = graph.editor.padding(ofConvolution: target), padding != "valid" {
                report.notes.append(
                    "'\(target)' pads with zeros (\(padding)): with the normalisation folded in, outputs near the border differ from the original's (the padded zeros were normalised values there)"
                )
            } else if foldFrom != nil, graph.editor.padding(ofConvolution: target) == nil, kernel.shape.count > 2,
                kernel.shape.enumerated().contains(where: { ![roles.inputAxis, roles.outputAxis].contains($0.offset) && $0.element > 1 })
            {
                report.notes.append(
                    "'\(target)' may pad with zeros (the checkpoint does not record it; most do): if it does, with the normalisation folded in, outputs near the border differ from the original's"
                )
            }
        }
        let edit = try graph.editor.settingInputChannels(newChannels, convolutions: targets, preprocessing: configPreprocessing, in: graph)
        graph.architecture = edit.architecture
        report.notes += edit.notes
        graph.dropOptimizerState(in: &report)
        return (graph, report)
    }

    var isCollapse: Bool {
        if case .collapse = rule { return true }
        return false
    }

    /// Per-channel values for the new channels: row j's weights (in absolute value) average the source
    /// values; a row of zeros takes the mean of all.
    static func remap(_ values: [Double], by rows: [[Double]]) -> [Double] {
        guard values.count > 1 else { return values }
        return rows.map { row in
            let weights = row.map(abs)
            let total = weights.reduce(0, +)
            guard total > 0 else { return values.reduce(0, +) / Double(values.count) }
            return zip(weights, values).map { $0 * $1 }.reduce(0, +) / total
        }
    }

    /// The detected first convolution. When detection cannot pick one but every convolution that could
    /// read an image reads one channel, collapsing has nothing to do whichever it is, and says so.
    func firstConvolution(in graph: TensorGraph) throws -> String {
        do {
            return try LayerDetection.firstConvolution(in: graph)
        } catch let error as WSurgeryError {
            guard case .collapse = rule else { throw error }
            let readers = LayerDetection.imageReadingConvolutions(in: graph)
            guard readers.count > 1, readers.allSatisfy({ $0.channels == 1 }) else { throw error }
            throw WSurgeryError.unsupportedCheckpoint(
                path: graph.sourcePath,
                reason:
                    "the model already takes 1 channel, there is nothing to collapse: every convolution that could read an image (1 to 4 input channels) has 1 (\(readers.map(\.name).joined(separator: ", "))); if the input goes elsewhere, name its layer with \(option("layer"))"
            )
        }
    }

    /// `step` with the values its layer's tensors hold, when it keeps them in tensors.
    func decoded(_ step: InputPreprocessing, _ graph: TensorGraph) throws -> InputPreprocessing {
        guard case .weights(let m, let v) = step.storage, let layer = graph.layer(named: step.layer) else { return step }
        var copy = step
        copy.statistics = .normalization(
            mean: try TensorValues.decode(layer.tensors[m], path: graph.sourcePath).values,
            variance: try TensorValues.decode(layer.tensors[v], path: graph.sourcePath).values)
        return copy
    }

    /// Writes a preprocessing layer's new values into its tensors (config-held values go to the
    /// architecture editor).
    func store(_ new: InputPreprocessing, channels: Int, in graph: inout TensorGraph, report: inout PassReport) throws {
        guard case .weights(let m, let v) = new.storage, case .normalization(let mean, let variance) = new.statistics else { return }
        let widen = { (list: [Double]) in list.count == channels ? list : [Double](repeating: list[0], count: channels) }
        graph.replaceTensor(
            layer: new.layer, index: m, with: ValueArray(shape: [channels], values: widen(mean)),
            action: "input preprocessing for \(channels) channel(s)", in: &report)
        graph.replaceTensor(
            layer: new.layer, index: v, with: ValueArray(shape: [channels], values: widen(variance)),
            action: "input preprocessing for \(channels) channel(s)", in: &report)
    }

    func check(source: Int, layer: String, path: String) throws {
        switch rule {
        case .collapse(let mode):
            if mode == .luma, source != 3 {
                throw WSurgeryError.unsupportedLayer(
                    path: path, layer: layer, reason: "has \(source) input channels; \(option("mode")) luma needs 3 (RGB)")
            }
            if source < 2 {
                throw WSurgeryError.unsupportedLayer(
                    path: path, layer: layer,
                    reason: "reads the model input and has \(source) input channel: the model already takes 1 channel, there is nothing to collapse")
            }
        case let .adapt(channels, extra, _):
            if case .copy(let k)? = extra, k >= source {
                throw WSurgeryError.invalidOption(
                    option: "extra", reason: "copy:\(k) names a channel that '\(layer)' does not have (it has \(source))")
            }
            if channels == source {
                throw WSurgeryError.invalidOption(option: "channels", reason: "'\(layer)' already has \(source) input channels")
            }
        }
        if let fold = foldNormalization, fold.mean.count != source {
            throw WSurgeryError.invalidOption(option: "fold-normalization", reason: "gives \(fold.mean.count) channels but '\(layer)' has \(source)")
        }
    }

    func describeAction(source: Int, channels: Int) -> String {
        switch rule {
        case .collapse(let mode): return "\(mode.rawValue) of \(source) input channels -> 1"
        case let .adapt(_, extra, rescale):
            let how = extra.map { "extra channels: \($0)" } ?? (channels == 1 ? "summed" : "repeated cyclically")
            let scaled = rescale && extra != .zeros && channels != 1 ? ", scaled by \(source)/\(channels)" : ""
            return "\(source) -> \(channels) input channels (\(how)\(scaled))"
        }
    }

    /// Moves the normalisation offset into the conv's bias, or into the moving mean of the BatchNorm the
    /// conv feeds when it has no bias (so the architecture stays the same).
    func foldOffset(_ offset: [Double], conv: Layer, roles: WeightRoles, into graph: inout TensorGraph, report: inout PassReport) throws {
        if let b = roles.bias {
            let bias = try TensorValues.decode(conv.tensors[b], path: graph.sourcePath)
            let values = zip(bias.values, offset).map { $0 - $1 }
            graph.replaceTensor(
                layer: conv.name, index: b, with: ValueArray(shape: bias.shape, values: values), action: "normalisation offset folded into the bias",
                in: &report)
            return
        }
        guard let bn = LayerDetection.batchNorm(after: conv, in: graph, channels: offset.count),
            let m = WeightRoles.tensorIndex(in: bn, named: ["moving_mean", "running_mean"])
        else {
            throw WSurgeryError.unsupportedLayer(
                path: graph.sourcePath, layer: conv.name,
                reason:
                    "has no bias and feeds no BatchNorm, so the normalisation offset has nowhere to go; drop \(option("fold-normalization")) or normalise the input"
            )
        }
        // BN(z) uses z - mean; the collapsed conv on raw input gives z + offset, so mean += offset.
        let mean = try TensorValues.decode(bn.tensors[m], path: graph.sourcePath)
        let values = zip(mean.values, offset).map { $0 + $1 }
        graph.replaceTensor(
            layer: bn.name, index: m, with: ValueArray(shape: mean.shape, values: values),
            action: "normalisation offset of '\(conv.name)' folded into the moving mean", in: &report)
    }
}
