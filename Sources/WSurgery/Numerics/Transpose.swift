/// Axis permutations on a tensor's raw bytes: elements are moved, never decoded, so any dtype goes through
/// bit for bit (what layout conversion needs to be exactly reversible).
public enum Transpose {
    /// The shape after permuting `shape` by `axes` (`result[i] = shape[axes[i]]`, as numpy's `transpose`).
    public static func shape(_ shape: [Int], _ axes: [Int]) -> [Int] { axes.map { shape[$0] } }

    /// `bytes` (C order, `shape`, elements of `elementSize` bytes) permuted by `axes`.
    public static func bytes(_ bytes: [UInt8], shape: [Int], elementSize: Int, axes: [Int]) -> [UInt8] {
        precondition(axes.count == shape.count && Set(axes) == Set(shape.indices), "axes must permute the shape's axes")
        guard shape.reduce(1, *) > 1, axes != Array(shape.indices) else { return bytes }
        var out = [UInt8](repeating: 0, count: bytes.count)
        bytes.withUnsafeBytes { source in
            out.withUnsafeMutableBytes { permute(source, into: $0, shape: shape, elementSize: elementSize, axes: axes) }
        }
        return out
    }

    /// Writes the elements of `source` (C order, `shape`) permuted by `axes` into `target`.
    static func permute(_ source: UnsafeRawBufferPointer, into target: UnsafeMutableRawBufferPointer, shape: [Int], elementSize: Int, axes: [Int]) {
        switch elementSize {
        case 1: permute(source, into: target, shape: shape, axes: axes, as: UInt8.self)
        case 2: permute(source, into: target, shape: shape, axes: axes, as: UInt16.self)
        case 4: permute(source, into: target, shape: shape, axes: axes, as: UInt32.self)
        case 8: permute(source, into: target, shape: shape, axes: axes, as: UInt64.self)
        default:
            // Any other size: the same walk over element indices, each element's bytes moved.
            let count = shape.reduce(1, *)
            let indices = (0..<count).map { UInt64($0) }
            var order = [UInt64](repeating: 0, count: count)
            indices.withUnsafeBytes { raw in
                order.withUnsafeMutableBytes { permute(raw, into: $0, shape: shape, axes: axes, as: UInt64.self) }
            }
            for (i, from) in order.enumerated() {
                (target.baseAddress! + i * elementSize).copyMemory(from: source.baseAddress! + Int(from) * elementSize, byteCount: elementSize)
            }
        }
    }

    /// The permutation for elements of type `T`. The output is walked like an odometer over every axis
    /// but two: its last axis and the one that is the input's last (contiguous in the source). Those two
    /// are copied in square tiles, so both reads and writes stay within a few cache lines (a plain
    /// strided walk of a (25088, 4096) transpose misses the cache on every element).
    private static func permute<T>(
        _ source: UnsafeRawBufferPointer, into target: UnsafeMutableRawBufferPointer, shape: [Int], axes: [Int], as: T.Type
    ) {
        let count = shape.reduce(1, *)
        guard count > 0 else { return }
        let rank = shape.count
        var sourceStrides = [Int](repeating: 1, count: rank)
        for i in stride(from: rank - 2, through: 0, by: -1) { sourceStrides[i] = sourceStrides[i + 1] * shape[i + 1] }
        let outShape = Transpose.shape(shape, axes)
        var targetStrides = [Int](repeating: 1, count: rank)
        for i in stride(from: rank - 2, through: 0, by: -1) { targetStrides[i] = targetStrides[i + 1] * outShape[i + 1] }
        let outSourceStrides = axes.map { sourceStrides[$0] }
        let from = source.bindMemory(to: T.self)
        let to = target.bindMemory(to: T.self)
        let last = rank - 1
        let inner = axes.firstIndex(of: rank - 1)!  // the output axis that walks the source contiguously
        // The two tiled axes: the output's last (a) and the source-contiguous one (b; the same when the
        // last output axis is already contiguous in the source).
        let lengthA = outShape[last]
        let sourceStepA = outSourceStrides[last]
        let lengthB = inner == last ? 1 : outShape[inner]
        let targetStepB = inner == last ? 0 : targetStrides[inner]
        let rest = (0..<rank).filter { $0 != last && $0 != inner }
        var index = [Int](repeating: 0, count: rank)
        var sourceBase = 0
        var targetBase = 0
        let tile = 32
        while true {
            for b0 in stride(from: 0, to: lengthB, by: tile) {
                let b1 = min(b0 + tile, lengthB)
                for a0 in stride(from: 0, to: lengthA, by: tile) {
                    let a1 = min(a0 + tile, lengthA)
                    for b in b0..<b1 {
                        var s = sourceBase + b + a0 * sourceStepA
                        var t = targetBase + b * targetStepB + a0
                        for _ in a0..<a1 {
                            to[t] = from[s]
                            s += sourceStepA
                            t += 1
                        }
                    }
                }
            }
            // Advance the remaining output axes like an odometer.
            var k = rest.count - 1
            while k >= 0 {
                let axis = rest[k]
                index[axis] += 1
                sourceBase += outSourceStrides[axis]
                targetBase += targetStrides[axis]
                if index[axis] < outShape[axis] { break }
                sourceBase -= outSourceStrides[axis] * outShape[axis]
                targetBase -= targetStrides[axis] * outShape[axis]
                index[axis] = 0
                k -= 1
            }
            if k < 0 { return }
        }
    }
}

/// A tensor's bytes permuted when a writer asks for them, not before: converting a whole checkpoint's
/// layout holds one tensor (twice) in memory at a time, never the checkpoint.
public struct TransposedSource: TensorSource {
    /// The bytes in their original order.
    public let base: any TensorSource
    /// The shape the base bytes are read as.
    public let shape: [Int]
    /// Bytes per element.
    public let elementSize: Int
    /// Output axis i is input axis `axes[i]`.
    public let axes: [Int]

    /// Bytes gathered and permuted per block.
    public let blockBytes: Int

    /// `base` viewed as `shape`, its elements permuted by `axes` when read, about `blockBytes` at a time.
    public init(base: any TensorSource, shape: [Int], elementSize: Int, axes: [Int], blockBytes: Int = 32 << 20) {
        self.base = base
        self.blockBytes = blockBytes
        self.shape = shape
        self.elementSize = elementSize
        self.axes = axes
    }

    /// As many bytes as the base.
    public var byteCount: UInt64 { base.byteCount }
    /// Permuted bytes lie in no file region.
    public var fileRegion: FileRegion? { nil }

    /// The permuted bytes, produced a block of output rows at a time: a block of indices of the first
    /// output axis is gathered from the base (one read per index of the input axes before it), permuted in
    /// memory and handed on, so memory stays near `blockBytes` whatever the tensor's size.
    public func forEachChunk(maxChunk: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let count = shape.reduce(1, *)
        guard count > 1, axes != Array(shape.indices) else { return try base.forEachChunk(maxChunk: maxChunk, body) }
        let source = try RandomAccess.of(base)
        let axis = axes[0]
        let length = shape[axis]
        let before = shape[..<axis].reduce(1, *)
        let after = shape[(axis + 1)...].reduce(1, *)
        let sliceBytes = count / length * elementSize
        let perBlock = max(1, blockBytes / max(sliceBytes, 1))
        let capacity = min(perBlock, length) * sliceBytes
        let gathered = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
        let permuted = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
        defer {
            gathered.deallocate()
            permuted.deallocate()
        }
        var first = 0
        while first < length {
            let n = min(perBlock, length - first)
            let run = n * after * elementSize
            for o in 0..<before {
                let target = UnsafeMutableRawBufferPointer(rebasing: gathered[(o * run)..<(o * run + run)])
                try source.read(into: target, at: UInt64((o * length + first) * after * elementSize))
            }
            var part = shape
            part[axis] = n
            let total = n * sliceBytes
            Transpose.permute(
                UnsafeRawBufferPointer(rebasing: gathered[0..<total]), into: UnsafeMutableRawBufferPointer(rebasing: permuted[0..<total]),
                shape: part, elementSize: elementSize, axes: axes)
            var start = 0
            while start < total {
                let end = min(start + max(maxChunk, 1), total)
                try body(UnsafeRawBufferPointer(rebasing: permuted[start..<end]))
                start = end
            }
            first += n
        }
    }
}
