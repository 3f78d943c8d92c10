/// A tensor's values decoded to `Double`, in C order: what a pass computes with. Only the tensors a pass
/// changes are decoded; every other tensor keeps its lazy bytes.
public struct ValueArray: Equatable, Sendable {
    /// The dimensions, outermost first.
    public var shape: [Int]
    /// The elements in C order.
    public var values: [Double]

    /// An array of `values` viewed as `shape`.
    public init(shape: [Int], values: [Double]) {
        precondition(values.count == shape.reduce(1, *), "values do not fill the shape")
        self.shape = shape
        self.values = values
    }

    /// (elements before `axis`, length of `axis`, elements after `axis`): the three loop bounds of any
    /// operation along one axis.
    private func split(_ axis: Int) -> (outer: Int, count: Int, inner: Int) {
        (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
    }

    /// A linear map along `axis`: `result[..., j, ...] = sum_i matrix[j][i] * self[..., i, ...]`. The
    /// matrix has one row per output index and `shape[axis]` columns. Collapsing channels (one row of
    /// ones), repeating them, weighting them and selecting them are all such maps.
    public func mapped(along axis: Int, by matrix: [[Double]]) -> ValueArray {
        let (outer, count, inner) = split(axis)
        precondition(matrix.allSatisfy { $0.count == count }, "matrix columns must match the axis length")
        var newShape = shape
        newShape[axis] = matrix.count
        var out = [Double](repeating: 0, count: outer * matrix.count * inner)
        for o in 0..<outer {
            for (j, row) in matrix.enumerated() {
                let target = (o * matrix.count + j) * inner
                for (i, weight) in row.enumerated() where weight != 0 {
                    let source = (o * count + i) * inner
                    for k in 0..<inner { out[target + k] += weight * values[source + k] }
                }
            }
        }
        return ValueArray(shape: newShape, values: out)
    }

    /// Sums over every axis except `axis`: one value per index of `axis`.
    public func sums(keeping axis: Int) -> [Double] {
        let (outer, count, inner) = split(axis)
        var result = [Double](repeating: 0, count: count)
        for o in 0..<outer {
            for i in 0..<count {
                let base = (o * count + i) * inner
                for k in 0..<inner { result[i] += values[base + k] }
            }
        }
        return result
    }

    /// Slices along `axis` taken from this array: slice `j` of the result is slice `sources[j]` of this
    /// one, or, where `sources[j]` is nil, `fill(flat index in the result)`. Keeping, reordering and
    /// growing along one axis.
    public func picking(along axis: Int, sources: [Int?], fill: (Int) -> Double) -> ValueArray {
        let (outer, count, inner) = split(axis)
        var newShape = shape
        newShape[axis] = sources.count
        var out = [Double](repeating: 0, count: outer * sources.count * inner)
        for o in 0..<outer {
            for (j, source) in sources.enumerated() {
                let target = (o * sources.count + j) * inner
                if let source {
                    precondition(source < count, "source slice out of range")
                    let from = (o * count + source) * inner
                    for k in 0..<inner { out[target + k] = values[from + k] }
                } else {
                    for k in 0..<inner { out[target + k] = fill(target + k) }
                }
            }
        }
        return ValueArray(shape: newShape, values: out)
    }
}

/// Decoding a tensor's bytes to values and encoding values back in the tensor's dtype.
public enum TensorValues {
    /// Whether values of `dtype` can be decoded and encoded.
    public static func canCompute(_ dtype: DType) -> Bool { [.f16, .bf16, .f32, .f64].contains(dtype) }

    /// The tensor's values; `path` names the file in errors.
    public static func decode(_ tensor: Tensor, path: String) throws -> ValueArray {
        try decode(tensor, bytes: try tensor.data.readAll(), path: path)
    }

    /// The values of `tensor` from its bytes, already read.
    public static func decode(_ tensor: Tensor, bytes: [UInt8], path: String) throws -> ValueArray {
        guard canCompute(tensor.dtype) else {
            throw WSurgeryError.cannotComputeDType(path: path, tensor: tensor.name, dtype: tensor.dtype.numpyName)
        }
        var values = [Double](repeating: 0, count: tensor.elementCount)
        bytes.withUnsafeBytes { raw in values.withUnsafeMutableBufferPointer { decode(raw, as: tensor.dtype, into: $0) } }
        return ValueArray(shape: tensor.shape, values: values)
    }

    /// Decodes `out.count` little-endian elements of `dtype` (a computable kind) from `raw`.
    public static func decode(_ raw: UnsafeRawBufferPointer, as dtype: DType, into out: UnsafeMutableBufferPointer<Double>) {
        switch dtype {
        case .f32:
            for i in 0..<out.count { out[i] = Double(Float(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian)) }
        case .f64:
            for i in 0..<out.count { out[i] = Double(bitPattern: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self).littleEndian) }
        case .f16:
            for i in 0..<out.count { out[i] = Double(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian)) }
        default:  // bf16: the upper half of a float32
            for i in 0..<out.count {
                let high = UInt32(raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian)
                out[i] = Double(Float(bitPattern: high << 16))
            }
        }
    }

    /// Little-endian bytes of `values` in `dtype`, rounded to nearest even.
    public static func encode(_ values: [Double], as dtype: DType) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: values.count * (dtype.bitsPerElement! / 8))
        values.withUnsafeBufferPointer { v in out.withUnsafeMutableBytes { encode(v, as: dtype, into: $0) } }
        return out
    }

    /// Encodes `values` as little-endian `dtype` (a computable kind) at the start of `raw`.
    public static func encode(_ values: UnsafeBufferPointer<Double>, as dtype: DType, into raw: UnsafeMutableRawBufferPointer) {
        switch dtype {
        case .f64: for (i, v) in values.enumerated() { raw.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: 8 * i, as: UInt64.self) }
        case .f16: for (i, v) in values.enumerated() { raw.storeBytes(of: Float16(v).bitPattern.littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
        case .bf16:
            for (i, v) in values.enumerated() { raw.storeBytes(of: bfloat16Bits(Float(v)).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
        default: for (i, v) in values.enumerated() { raw.storeBytes(of: Float(v).bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
        }
    }

    /// The bfloat16 bit pattern nearest to `value` (ties to even), NaN kept quiet.
    static func bfloat16Bits(_ value: Float) -> UInt16 {
        if value.isNaN { return 0x7FC0 }
        let bits = value.bitPattern
        let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }

    /// `tensor` with new values of `shape` computed block by block when a writer asks; its origin keeps only
    /// what survives new values.
    public static func replacing(_ tensor: Tensor, shape: [Int], with values: any ValueStream) -> Tensor {
        precondition(values.count == shape.reduce(1, *), "values do not fill the shape")
        var result = tensor
        result.shape = shape
        result.data = ComputedSource(dtype: tensor.dtype, values: values)
        result.origin = tensor.origin?.afterNewValues()
        return result
    }

    /// `tensor` with new values (and shape): its bytes now live in memory, so writers encode it instead of
    /// copying the input; its origin keeps only what survives new values (its place in a weight group).
    public static func replacing(_ tensor: Tensor, with array: ValueArray) -> Tensor {
        var result = tensor
        result.shape = array.shape
        result.data = MemorySource(bytes: encode(array.values, as: tensor.dtype))
        result.origin = tensor.origin?.afterNewValues()
        return result
    }
}
