/// New tensors produced in blocks: the values a pass computes (drawn, resampled, kept from an old tensor)
/// are generated in order while the writer consumes them, so a 500 MB new kernel never sits in memory whole.
public protocol ValueStream: Sendable {
    /// The number of values.
    var count: Int { get }
    /// Calls `body` with successive blocks of the values in C order, each at most `ValueBlocks.size`.
    func forEachBlock(_ body: (UnsafeBufferPointer<Double>) throws -> Void) throws
}

/// Block sizes shared by the value streams.
public enum ValueBlocks {
    /// Values per block (8 MiB of doubles).
    public static let size = 1 << 20
}

/// A tensor's bytes computed from a value stream and encoded in `dtype` when a writer asks: memory stays
/// at one block whatever the tensor's size.
public struct ComputedSource: TensorSource {
    /// The element type written.
    public let dtype: DType
    /// The values.
    public let values: any ValueStream

    /// `values` encoded as `dtype` (one of the computable floating-point kinds).
    public init(dtype: DType, values: any ValueStream) {
        precondition(TensorValues.canCompute(dtype), "values are encoded only in floating-point kinds")
        self.dtype = dtype
        self.values = values
    }

    /// Elements times their size.
    public var byteCount: UInt64 { UInt64(values.count) * UInt64(dtype.bitsPerElement! / 8) }
    /// Computed bytes lie in no file.
    public var fileRegion: FileRegion? { nil }

    /// Encodes block after block, handing them on in pieces of at most `maxChunk` bytes.
    public func forEachChunk(maxChunk: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let size = dtype.bitsPerElement! / 8
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(values.count, ValueBlocks.size) * size + 1, alignment: 16)
        defer { buffer.deallocate() }
        let piece = max(maxChunk / size, 1) * size
        try values.forEachBlock { block in
            TensorValues.encode(block, as: dtype, into: buffer)
            var start = 0
            let total = block.count * size
            while start < total {
                let end = min(start + piece, total)
                try body(UnsafeRawBufferPointer(rebasing: buffer[start..<end]))
                start = end
            }
        }
    }
}

/// Values drawn by an initializer from a tensor's own counter-based stream.
public struct DrawnValues: ValueStream {
    /// The number of values.
    public let count: Int
    /// How they are drawn.
    public let initializer: Initializer
    /// The fans the initializer scales by.
    public let fans: Fans
    /// The tensor's stream.
    public let stream: Philox

    /// `count` values of `initializer` for a tensor with `fans`, from `stream`.
    public init(count: Int, initializer: Initializer, fans: Fans, stream: Philox) {
        self.count = count
        self.initializer = initializer
        self.fans = fans
        self.stream = stream
    }

    /// Draws block after block; element `i` does not depend on the block it falls in.
    public func forEachBlock(_ body: (UnsafeBufferPointer<Double>) throws -> Void) throws {
        let buffer = UnsafeMutableBufferPointer<Double>.allocate(capacity: max(min(count, ValueBlocks.size), 1))
        defer { buffer.deallocate() }
        var start = 0
        while start < count {
            let n = min(buffer.count, count - start)
            let block = UnsafeMutableBufferPointer(rebasing: buffer[0..<n])
            initializer.fill(block, start: start, fans: fans, stream: stream)
            try body(UnsafeBufferPointer(block))
            start += n
        }
    }
}

/// Reads the values of a stored tensor at any element, decoding through a window so that requests that
/// move forward read each byte about once.
struct ElementReader {
    let source: any RandomAccessSource
    let dtype: DType
    let count: Int
    private let elementSize: Int
    private var window: [Double] = []
    private var windowStart = 0

    /// Values of `source`, `count` elements of `dtype`.
    init(source: any RandomAccessSource, dtype: DType, count: Int) {
        self.source = source
        self.dtype = dtype
        self.count = count
        self.elementSize = dtype.bitsPerElement! / 8
    }

    /// Decodes `out.count` elements starting at `element` straight from the source.
    func readDirect(_ out: UnsafeMutableBufferPointer<Double>, from element: Int) throws {
        let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: out.count * elementSize, alignment: 16)
        defer { raw.deallocate() }
        try source.read(into: raw, at: UInt64(element) * UInt64(elementSize))
        TensorValues.decode(UnsafeRawBufferPointer(raw), as: dtype, into: out)
    }

    /// Elements `element ..< element + out.count`, through the window when they are few.
    mutating func read(_ out: UnsafeMutableBufferPointer<Double>, from element: Int) throws {
        precondition(element >= 0 && element + out.count <= count, "element range outside the tensor")
        if out.count > ValueBlocks.size / 4 { return try readDirect(out, from: element) }
        if element < windowStart || element + out.count > windowStart + window.count {
            windowStart = element
            let n = min(ValueBlocks.size, count - element)
            var fresh = [Double](repeating: 0, count: n)
            try fresh.withUnsafeMutableBufferPointer { try readDirect($0, from: element) }
            window = fresh
        }
        let offset = element - windowStart
        window.withUnsafeBufferPointer { w in
            for i in 0..<out.count { out[i] = w[offset + i] }
        }
    }
}

/// A tensor rebuilt along one axis: slice `j` of the result is the old slice `sources[j]`, or drawn values
/// where that is nil (keeping classes of a head, growing or shrinking a layer's units).
public struct PickedValues: ValueStream {
    let old: any RandomAccessSource
    let oldDType: DType
    let oldShape: [Int]
    let axis: Int
    let sources: [Int?]
    let drawn: DrawnValues

    /// The number of values.
    public var count: Int { drawn.count }

    /// Slices of `old` (its bytes `source`, its `dtype` and `shape`) picked along `axis` by `sources`, the
    /// rest from `drawn` (which covers the new shape).
    public init(old source: any RandomAccessSource, dtype: DType, shape: [Int], axis: Int, sources: [Int?], drawn: DrawnValues) {
        self.old = source
        self.oldDType = dtype
        self.oldShape = shape
        self.axis = axis
        self.sources = sources
        self.drawn = drawn
    }

    /// Walks the result's slices in order; each run of `inner` elements is either copied or drawn.
    public func forEachBlock(_ body: (UnsafeBufferPointer<Double>) throws -> Void) throws {
        let outer = oldShape[..<axis].reduce(1, *)
        let oldCount = oldShape[axis]
        let inner = oldShape[(axis + 1)...].reduce(1, *)
        var reader = ElementReader(source: old, dtype: oldDType, count: oldShape.reduce(1, *))
        let buffer = UnsafeMutableBufferPointer<Double>.allocate(capacity: max(min(count, ValueBlocks.size), 1))
        defer { buffer.deallocate() }
        var filled = 0
        var element = 0
        for o in 0..<outer {
            for source in sources {
                var done = 0
                while done < inner {
                    let n = min(inner - done, buffer.count - filled)
                    let target = UnsafeMutableBufferPointer(rebasing: buffer[filled..<filled + n])
                    if let source {
                        try reader.read(target, from: (o * oldCount + source) * inner + done)
                    } else {
                        drawn.initializer.fill(target, start: element, fans: drawn.fans, stream: drawn.stream)
                    }
                    filled += n
                    done += n
                    element += n
                    if filled == buffer.count {
                        try body(UnsafeBufferPointer(buffer))
                        filled = 0
                    }
                }
            }
        }
        if filled > 0 { try body(UnsafeBufferPointer(rebasing: buffer[0..<filled])) }
    }
}

/// A grid of vectors (`outer` x H x W x `inner`, C order) resized over H and W by separable filter
/// matrices and multiplied by `scale`: a Dense kernel fed by Flatten, moved to a new input size.
public struct ResampledValues: ValueStream {
    let old: any RandomAccessSource
    let dtype: DType
    let outer: Int
    let inner: Int
    let rows: [[Double]]
    let columns: [[Double]]
    let scale: Double

    /// The number of values.
    public var count: Int { outer * rows.count * columns.count * inner }

    /// `old` (bytes of `dtype`) viewed as (`outer`, `height`, `width`, `inner`), resized to
    /// (`outer`, `rows.count`, `columns.count`, `inner`) by the `rows` (H' x H) and `columns` (W' x W)
    /// matrices, times `scale`.
    public init(old source: any RandomAccessSource, dtype: DType, outer: Int, inner: Int, rows: [[Double]], columns: [[Double]], scale: Double) {
        self.old = source
        self.dtype = dtype
        self.outer = outer
        self.inner = inner
        self.rows = rows
        self.columns = columns
        self.scale = scale
    }

    /// Each output vector is the weighted sum of the input vectors its filter reaches, computed a tile of
    /// `inner` at a time from those vectors alone.
    public func forEachBlock(_ body: (UnsafeBufferPointer<Double>) throws -> Void) throws {
        let height = rows.first?.count ?? 0
        let width = columns.first?.count ?? 0
        let reader = ElementReader(source: old, dtype: dtype, count: outer * height * width * inner)
        // Per output position, the input positions it reads and their weights.
        var taps: [[(position: Int, weight: Double)]] = []
        for row in rows {
            for column in columns {
                var list: [(Int, Double)] = []
                for (y, wy) in row.enumerated() where wy != 0 {
                    for (x, wx) in column.enumerated() where wx != 0 { list.append((y * width + x, wy * wx * scale)) }
                }
                taps.append(list)
            }
        }
        let tile = max(1, min(inner, ValueBlocks.size))
        let output = UnsafeMutableBufferPointer<Double>.allocate(capacity: tile)
        let input = UnsafeMutableBufferPointer<Double>.allocate(capacity: tile)
        defer {
            output.deallocate()
            input.deallocate()
        }
        if inner >= 4096 {
            // Long vectors (Keras's (H, W, C, units) kernels): read each tap's vector tile directly.
            for o in 0..<outer {
                for list in taps {
                    var k = 0
                    while k < inner {
                        let n = min(tile, inner - k)
                        let out = UnsafeMutableBufferPointer(rebasing: output[0..<n])
                        out.update(repeating: 0)
                        for (position, weight) in list {
                            let values = UnsafeMutableBufferPointer(rebasing: input[0..<n])
                            try reader.readDirect(values, from: (o * height * width + position) * inner + k)
                            for i in 0..<n { out[i] += weight * values[i] }
                        }
                        try body(UnsafeBufferPointer(out))
                        k += n
                    }
                }
            }
            return
        }
        // Short vectors: read one whole grid per outer index and compute every output position from it.
        let block = UnsafeMutableBufferPointer<Double>.allocate(capacity: ValueBlocks.size)
        defer { block.deallocate() }
        let grid = UnsafeMutableBufferPointer<Double>.allocate(capacity: max(height * width * inner, 1))
        defer { grid.deallocate() }
        var filled = 0
        for o in 0..<outer {
            try reader.readDirect(grid, from: o * height * width * inner)
            for list in taps {
                for k in 0..<inner {
                    var sum = 0.0
                    for (position, weight) in list { sum += weight * grid[position * inner + k] }
                    block[filled] = sum
                    filled += 1
                    if filled == block.count {
                        try body(UnsafeBufferPointer(block))
                        filled = 0
                    }
                }
            }
        }
        if filled > 0 { try body(UnsafeBufferPointer(rebasing: block[0..<filled])) }
    }
}
