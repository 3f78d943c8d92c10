import Foundation

/// A comparison of two checkpoints, of any formats: tensors are matched by `layer/name` (a Keras 2 `:0`
/// suffix ignored), so `a.h5` and `a.safetensors` written from it compare tensor by tensor. Values are
/// compared bytes first; only tensors whose bytes differ are decoded (one tensor at a time, so memory
/// stays at two tensors).
public struct CheckpointDiff: Sendable {
    /// How one tensor present in both compares.
    public enum Verdict: String, Sendable {
        case identical
        /// Same shape and dtype, different bytes, max |a - b| <= atol.
        case withinTolerance = "within-atol"
        case differs
        case shapeChanged = "shape-changed"
        case dtypeChanged = "dtype-changed"
    }

    /// One tensor present in both checkpoints.
    public struct TensorComparison: Sendable {
        /// Its `layer/name`.
        public var name: String
        /// How it compares.
        public var verdict: Verdict
        /// Its shape in A.
        public var shapeA: [Int]
        /// Its shape in B.
        public var shapeB: [Int]
        /// Its dtype in A.
        public var dtypeA: String
        /// Its dtype in B.
        public var dtypeB: String
        /// The largest absolute difference, when the values could be compared element-wise.
        public var maxAbs: Double?
        /// The largest relative difference, when values were compared.
        public var maxRel: Double?
    }

    /// The first checkpoint.
    public var pathA: String
    /// The second checkpoint.
    public var pathB: String
    /// A's format.
    public var formatA: CheckpointFormat
    /// B's format.
    public var formatB: CheckpointFormat
    /// The absolute tolerance.
    public var atol: Double
    /// Tensors only A has.
    public var onlyInA: [String] = []
    /// Tensors only B has.
    public var onlyInB: [String] = []
    /// Tensors both have.
    public var compared: [TensorComparison] = []
    /// Remarks (a layout mismatch).
    public var notes: [String] = []

    /// Whether the two are equal within `atol`: same tensors, shapes and dtypes, values within atol.
    public var equal: Bool {
        onlyInA.isEmpty && onlyInB.isEmpty && compared.allSatisfy { $0.verdict == .identical || $0.verdict == .withinTolerance }
    }

    /// The matching key of a tensor.
    static func key(_ name: String) -> String { name.hasSuffix(":0") ? String(name.dropLast(2)) : name }

    /// Compares the checkpoints at `a` and `b`.
    public static func compare(_ a: String, _ b: String, atol: Double = 0) throws -> CheckpointDiff {
        let graphA = try Checkpoint.read(a)
        let graphB = try Checkpoint.read(b)
        return try compare(graphA, graphB, atol: atol)
    }

    /// Compares two graphs already read.
    public static func compare(_ a: TensorGraph, _ b: TensorGraph, atol: Double) throws -> CheckpointDiff {
        var diff = CheckpointDiff(pathA: a.sourcePath, pathB: b.sourcePath, formatA: a.sourceFormat, formatB: b.sourceFormat, atol: atol)
        let tensorsB = Dictionary(b.tensors.map { (key($0.name), $0) }, uniquingKeysWith: { first, _ in first })
        let keysA = Set(a.tensors.map { key($0.name) })
        diff.onlyInB = b.tensors.map { key($0.name) }.filter { !keysA.contains($0) }
        for tensor in a.tensors {
            let name = key(tensor.name)
            guard let other = tensorsB[name] else {
                diff.onlyInA.append(name)
                continue
            }
            diff.compared.append(try compareTensor(tensor, a.sourcePath, other, b.sourcePath, name: name, atol: atol))
        }
        let layoutA = Set(a.tensors.map(\.layout))
        let layoutB = Set(b.tensors.map(\.layout))
        if !diff.onlyInA.isEmpty, !diff.onlyInB.isEmpty, layoutA.contains(.torch) != layoutB.contains(.torch) {
            diff.notes.append("one file is in PyTorch layout and the other is not; convert one to the other's layout before comparing")
        }
        return diff
    }

    static func compareTensor(_ a: Tensor, _ pathA: String, _ b: Tensor, _ pathB: String, name: String, atol: Double) throws -> TensorComparison {
        var result = TensorComparison(
            name: name, verdict: .identical, shapeA: a.shape, shapeB: b.shape,
            dtypeA: a.dtype.safetensorsName, dtypeB: b.dtype.safetensorsName)
        if a.shape != b.shape {
            result.verdict = .shapeChanged
            return result
        }
        if a.dtype != b.dtype {
            result.verdict = .dtypeChanged
            if TensorValues.canCompute(a.dtype), TensorValues.canCompute(b.dtype) {
                (result.maxAbs, result.maxRel) = differences(
                    try TensorValues.decode(a, path: pathA).values, try TensorValues.decode(b, path: pathB).values)
            }
            return result
        }
        let bytesA = try a.data.readAll()
        let bytesB = try b.data.readAll()
        if bytesA == bytesB { return result }
        guard TensorValues.canCompute(a.dtype) else {
            result.verdict = .differs
            return result
        }
        let (maxAbs, maxRel) = differences(
            try TensorValues.decode(a, bytes: bytesA, path: pathA).values,
            try TensorValues.decode(b, bytes: bytesB, path: pathB).values)
        result.maxAbs = maxAbs
        result.maxRel = maxRel
        result.verdict = maxAbs <= atol ? .withinTolerance : .differs
        return result
    }

    /// Max |a - b| and max |a - b| / max(|a|, |b|). A NaN on one side only, or infinities that differ,
    /// count as an infinite difference; NaN against NaN as none.
    static func differences(_ a: [Double], _ b: [Double]) -> (Double, Double) {
        var maxAbs = 0.0
        var maxRel = 0.0
        for i in 0..<min(a.count, b.count) {
            let x = a[i]
            let y = b[i]
            if x == y || (x.isNaN && y.isNaN) { continue }
            let d = abs(x - y)
            if d.isNaN || d.isInfinite { return (.infinity, .infinity) }
            maxAbs = max(maxAbs, d)
            maxRel = max(maxRel, d / max(abs(x), abs(y)))
        }
        return (maxAbs, maxRel)
    }

    static func number(_ value: Double?) -> String {
        guard let value else { return "-" }
        if value.isInfinite { return "inf" }
        return value == 0 ? "0" : String(format: "%.3g", value)
    }

    /// How many tensors have `verdict`.
    public func count(_ verdict: Verdict) -> Int { compared.filter { $0.verdict == verdict }.count }

    /// The tensors that are not identical, then counts and the verdict.
    public var table: String {
        var lines = ["A: \(pathA) (\(formatA.rawValue))", "B: \(pathB) (\(formatB.rawValue))"]
        var rows: [[String]] = [["tensor", "status", "detail"]]
        for name in onlyInA { rows.append([name, "only in A", ""]) }
        for name in onlyInB { rows.append([name, "only in B", ""]) }
        for c in compared where c.verdict != .identical {
            let detail: String
            switch c.verdict {
            case .shapeChanged: detail = "\(ShapeText.python(c.shapeA)) -> \(ShapeText.python(c.shapeB))"
            case .dtypeChanged:
                detail =
                    "\(c.dtypeA) -> \(c.dtypeB)"
                    + (c.maxAbs.map { _ in ", max abs \(CheckpointDiff.number(c.maxAbs)), max rel \(CheckpointDiff.number(c.maxRel))" } ?? "")
            default:
                detail =
                    c.maxAbs == nil
                    ? "values differ (\(c.dtypeA))" : "max abs \(CheckpointDiff.number(c.maxAbs)), max rel \(CheckpointDiff.number(c.maxRel))"
            }
            rows.append([c.name, c.verdict.rawValue, detail])
        }
        if rows.count > 1 { lines += TextTable.render(rows) }
        lines.append(
            "\(compared.count) tensor(s) in both: \(count(.identical)) identical, \(count(.withinTolerance)) within atol \(CheckpointDiff.number(atol)), \(count(.differs)) differ, \(count(.shapeChanged)) shape change(s), \(count(.dtypeChanged)) dtype change(s); \(onlyInA.count) only in A, \(onlyInB.count) only in B"
        )
        lines += notes.map { "note: \($0)" }
        lines.append(equal ? "equal" : "different")
        return lines.joined(separator: "\n")
    }

    /// The comparison as JSON.
    public var json: JSONValue {
        func num(_ v: Double?) -> JSONValue {
            guard let v else { return .null }
            return v.isFinite ? .number(String(v)) : .string("inf")
        }
        return .object([
            ("a", .object([("path", .string(pathA)), ("format", .string(formatA.rawValue))])),
            ("b", .object([("path", .string(pathB)), ("format", .string(formatB.rawValue))])),
            ("atol", .number(String(atol))),
            ("equal", .bool(equal)),
            ("only_in_a", .array(onlyInA.map { .string($0) })),
            ("only_in_b", .array(onlyInB.map { .string($0) })),
            (
                "tensors",
                .array(
                    compared.map { c in
                        .object([
                            ("name", .string(c.name)),
                            ("status", .string(c.verdict.rawValue)),
                            ("shape_a", .array(c.shapeA.map { .int($0) })),
                            ("shape_b", .array(c.shapeB.map { .int($0) })),
                            ("dtype_a", .string(c.dtypeA)),
                            ("dtype_b", .string(c.dtypeB)),
                            ("max_abs", num(c.maxAbs)),
                            ("max_rel", num(c.maxRel)),
                        ])
                    })
            ),
            ("notes", .array(notes.map { .string($0) })),
        ])
    }
}
