/// Axis permutations on a tensor's raw bytes: elements are moved, never decoded, so any dtype goes through
/// bit for bit (what layout conversion needs to be exactly reversible).
public enum Transpose {
    /// The shape after permuting `shape` by `axes` (`result[i] = shape[axes[i]]`, as numpy's `transpose`).
    public static func shape(_ shape: [Int], _ axes: [Int]) -> [Int] { axes.map { shape[$0] } }

    /// `bytes` (C order, `shape`, elements of `elementSize` bytes) permuted by `axes`.
    public static func bytes(_ bytes: [UInt8], shape: [Int], elementSize: Int, axes: [Int]) -> [UInt8] {
        precondition(axes.count == shape.count && Set(axes) == Set(shape.indices), "axes must permute the shape's axes")
        let count = shape.reduce(1, *)
        guard count > 1, axes != Array(shape.indices) else { return bytes }
        // Source strides (in elements), read in output-axis order.
        var strides = [Int](repeating: 1, count: shape.count)
        for i in stride(from: shape.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * shape[i + 1] }
        let outShape = Transpose.shape(shape, axes)
        let outStrides = axes.map { strides[$0] }
        var out = [UInt8](repeating: 0, count: bytes.count)
        var index = [Int](repeating: 0, count: shape.count)
        let last = shape.count - 1
        bytes.withUnsafeBytes { source in
            out.withUnsafeMutableBytes { target in
                var sourceElement = 0
                var targetOffset = 0
                for _ in 0..<count {
                    let from = sourceElement * elementSize
                    for b in 0..<elementSize { target[targetOffset + b] = source[from + b] }
                    targetOffset += elementSize
                    // Advance the output index like an odometer, keeping the source position in step.
                    var axis = last
                    while axis >= 0 {
                        index[axis] += 1
                        sourceElement += outStrides[axis]
                        if index[axis] < outShape[axis] { break }
                        sourceElement -= outStrides[axis] * outShape[axis]
                        index[axis] = 0
                        axis -= 1
                    }
                }
            }
        }
        return out
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

    /// `base` viewed as `shape`, its elements permuted by `axes` when read.
    public init(base: any TensorSource, shape: [Int], elementSize: Int, axes: [Int]) {
        self.base = base
        self.shape = shape
        self.elementSize = elementSize
        self.axes = axes
    }

    /// As many bytes as the base.
    public var byteCount: UInt64 { base.byteCount }
    /// Permuted bytes lie in no file region.
    public var fileRegion: FileRegion? { nil }

    /// The permuted bytes, produced a block of output rows at a time.
    public func forEachChunk(maxChunk: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let permuted = Transpose.bytes(try base.readAll(), shape: shape, elementSize: elementSize, axes: axes)
        try MemorySource(bytes: permuted).forEachChunk(maxChunk: maxChunk, body)
    }
}
