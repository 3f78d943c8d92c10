import Foundation

/// How new weights are drawn. The names follow the frameworks users know; each computes its bound or
/// standard deviation from the tensor's fans, which `Fans` works out with the framework's own rules.
public enum Initializer: Equatable, Sendable, CustomStringConvertible {
    /// What `nn.Linear` / `nn.Conv2d` give: kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    case torchDefault
    /// PyTorch `kaiming_uniform_` (a = 0, fan_in): U(-sqrt(6/fan_in), sqrt(6/fan_in)).
    case kaimingUniform
    /// PyTorch `kaiming_normal_` (a = 0, fan_in): N(0, 2/fan_in).
    case kaimingNormal
    /// Keras `GlorotUniform` (the Dense/Conv default): U(-sqrt(6/(fan_in+fan_out)), +...).
    case glorotUniform
    /// Keras `HeNormal`: truncated at 2 std, std = sqrt(2/fan_in) / 0.87962566103423978.
    case heNormal
    /// U(-a, a).
    case uniform(Double)
    /// timm's `trunc_normal_(std=s)`: N(0, s^2) truncated to [-2, 2] (absolute bounds, as timm does).
    case truncNormal(Double)
    /// A constant (`zeros` is constant 0).
    case constant(Double)

    /// How an initializer left to its default is recorded in reports and provenance: the rule it follows.
    public static let automaticWeights = "auto (glorot-uniform for Keras kernels, torch-default for PyTorch weights)"
    /// The same for a bias left to its default.
    public static let automaticBias = "auto (torch-default after torch-default weights, else zeros)"

    /// The spellings `init(parsing:)` accepts (`uniform:`, `trunc-normal:` and `constant:` take a number).
    public static let spellings = [
        "torch-default", "kaiming-uniform", "kaiming-normal", "glorot-uniform", "he-normal", "uniform:", "trunc-normal:", "zeros", "constant:",
    ]

    /// Parses the command-line spelling (`torch-default`, `uniform:0.05`, `trunc-normal:0.02`, `zeros`,
    /// `constant:-1.5`); `option` names the flag in errors.
    public init(parsing text: String, option: String) throws {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        let argument = parts.count == 2 ? Double(parts[1]) : nil
        func needs(_ value: Double?) throws -> Double {
            guard let value, value.isFinite else {
                throw WSurgeryError.invalidOption(option: option, reason: "'\(text)' needs a number after ':' (e.g. \(parts[0]):0.02)")
            }
            return value
        }
        switch parts.first ?? "" {
        case "torch-default" where parts.count == 1: self = .torchDefault
        case "kaiming-uniform" where parts.count == 1: self = .kaimingUniform
        case "kaiming-normal" where parts.count == 1: self = .kaimingNormal
        case "glorot-uniform" where parts.count == 1: self = .glorotUniform
        case "he-normal" where parts.count == 1: self = .heNormal
        case "zeros" where parts.count == 1: self = .constant(0)
        case "uniform":
            let a = try needs(argument)
            guard a > 0 else { throw WSurgeryError.invalidOption(option: option, reason: "uniform:A needs A > 0") }
            self = .uniform(a)
        case "trunc-normal":
            let std = try needs(argument)
            guard std > 0 else { throw WSurgeryError.invalidOption(option: option, reason: "trunc-normal:STD needs STD > 0") }
            self = .truncNormal(std)
        case "constant": self = .constant(try needs(argument))
        default:
            throw WSurgeryError.invalidOption(
                option: option,
                reason:
                    "unknown initializer '\(text)'; expected torch-default, kaiming-uniform, kaiming-normal, glorot-uniform, he-normal, uniform:A, trunc-normal:STD, zeros or constant:V"
            )
        }
    }

    /// The spelling `init(parsing:)` reads (`uniform:0.05`).
    public var description: String {
        switch self {
        case .torchDefault: return "torch-default"
        case .kaimingUniform: return "kaiming-uniform"
        case .kaimingNormal: return "kaiming-normal"
        case .glorotUniform: return "glorot-uniform"
        case .heNormal: return "he-normal"
        case .uniform(let a): return "uniform:\(a)"
        case .truncNormal(let s): return "trunc-normal:\(s)"
        case .constant(0): return "zeros"
        case .constant(let v): return "constant:\(v)"
        }
    }

    /// Values for the elements `start ..< start + out.count` of a tensor with `fans`, drawn from `stream`.
    /// Element `i` depends only on the stream and `i`, never on the block it is drawn in.
    public func fill(_ out: UnsafeMutableBufferPointer<Double>, start: Int, fans: Fans, stream: Philox) {
        let fanIn = Double(max(fans.fanIn, 1))
        let fanOut = Double(max(fans.fanOut, 1))
        func uniform(_ bound: Double) { stream.uniform(into: out, start: start, low: -bound, high: bound) }
        func normal(std: Double, limit: Double?) {
            stream.normal(into: out, start: start, limit: limit)
            for i in 0..<out.count { out[i] *= std }
        }
        switch self {
        case .torchDefault: uniform(1 / fanIn.squareRoot())
        case .kaimingUniform: uniform((6 / fanIn).squareRoot())
        case .glorotUniform: uniform((6 / (fanIn + fanOut)).squareRoot())
        case .uniform(let a): uniform(a)
        case .kaimingNormal: normal(std: (2 / fanIn).squareRoot(), limit: nil)
        case .heNormal: normal(std: (2 / fanIn).squareRoot() / 0.87962566103423978, limit: 2)
        case .truncNormal(let std): normal(std: std, limit: 2 / std)
        case .constant(let value): out.update(repeating: value)
        }
    }

    /// The first `count` values for a tensor with `fans` from `stream`.
    public func sample(count: Int, fans: Fans, stream: Philox) -> [Double] {
        var values = [Double](repeating: 0, count: count)
        values.withUnsafeMutableBufferPointer { fill($0, start: 0, fans: fans, stream: stream) }
        return values
    }
}

/// The fan-in and fan-out of a weight tensor under its framework's rules.
public struct Fans: Equatable, Sendable {
    /// Inputs each output sees (PyTorch's and Keras's `fan_in`).
    public var fanIn: Int
    /// Outputs each input feeds (`fan_out`).
    public var fanOut: Int

    /// Fans given directly.
    public init(fanIn: Int, fanOut: Int) {
        self.fanIn = fanIn
        self.fanOut = fanOut
    }

    /// Keras kernels (..., in, out) have their receptive field first; PyTorch weights (out, in, ...) last.
    /// Both count fan_in = in x receptive field and fan_out = out x receptive field; a Dense/Linear
    /// weight has a receptive field of 1.
    public init(shape: [Int], layout: Layout) {
        guard shape.count >= 2 else {
            self.init(fanIn: shape.first ?? 1, fanOut: shape.first ?? 1)
            return
        }
        if layout == .torch {
            let receptive = shape.dropFirst(2).reduce(1, *)
            self.init(fanIn: shape[1] * receptive, fanOut: shape[0] * receptive)
        } else {
            let receptive = shape.dropLast(2).reduce(1, *)
            self.init(fanIn: shape[shape.count - 2] * receptive, fanOut: shape[shape.count - 1] * receptive)
        }
    }
}

extension Initializer {
    /// New values of `shape` for the tensor named `tensor`, from that tensor's own seeded stream, drawn
    /// block by block when a writer asks.
    public func stream(shape: [Int], fans: Fans, seed: UInt64, tensor: String) -> DrawnValues {
        DrawnValues(count: shape.reduce(1, *), initializer: self, fans: fans, stream: Philox(seed: seed, stream: tensor))
    }

    /// `tensor` rebuilt along `axis`: slice `j` of the result is the old slice `sources[j]`, or, where that
    /// is nil, values drawn for the new shape (the tensor's own seeded stream, `fans`). Keeping classes of
    /// a head, growing or shrinking a layer's units. Produced block by block when a writer asks.
    public func rebuilding(_ tensor: Tensor, axis: Int, sources: [Int?], fans: Fans, seed: UInt64, path: String) throws -> (
        shape: [Int], values: any ValueStream
    ) {
        guard TensorValues.canCompute(tensor.dtype) else {
            throw WSurgeryError.cannotComputeDType(path: path, tensor: tensor.name, dtype: tensor.dtype.numpyName)
        }
        var shape = tensor.shape
        shape[axis] = sources.count
        let drawn = stream(shape: shape, fans: fans, seed: seed, tensor: tensor.name)
        guard sources.contains(where: { $0 != nil }) else { return (shape, drawn) }
        let old = try RandomAccess.of(tensor.data)
        return (shape, PickedValues(old: old, dtype: tensor.dtype, shape: tensor.shape, axis: axis, sources: sources, drawn: drawn))
    }
}
