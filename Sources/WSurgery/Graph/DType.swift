/// An element type. Known kinds carry their size; kinds this tool does not know (a newer safetensors
/// dtype string, an HDF5 opaque type) are carried as `.opaque` and their bytes pass through untouched.
public enum DType: Hashable, Sendable {
    case bool, u8, i8, u16, i16, u32, i32, u64, i64
    case f16, bf16, f32, f64, c64
    case f8e4m3, f8e5m2, f8e8m0, f8e4m3fnuz, f8e5m2fnuz, f6e2m3, f6e3m2, f4
    /// A kind this tool cannot interpret; `name` is the format's own spelling, `bytesPerElement` is known
    /// when the format records it (HDF5 opaque types) and nil otherwise.
    case opaque(name: String, bytesPerElement: Int?)

    /// Every known kind, in the safetensors reference order (used to sort by alignment when writing).
    public static let known: [DType] = [
        .bool, .f4, .f6e2m3, .f6e3m2, .u8, .i8, .f8e5m2, .f8e4m3, .f8e8m0, .f8e4m3fnuz, .f8e5m2fnuz,
        .i16, .u16, .f16, .bf16, .i32, .u32, .f32, .c64, .f64, .i64, .u64,
    ]

    /// The safetensors spelling (`F32`, `BF16`, ...).
    public var safetensorsName: String {
        switch self {
        case .bool: return "BOOL"
        case .u8: return "U8"
        case .i8: return "I8"
        case .u16: return "U16"
        case .i16: return "I16"
        case .u32: return "U32"
        case .i32: return "I32"
        case .u64: return "U64"
        case .i64: return "I64"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .f32: return "F32"
        case .f64: return "F64"
        case .c64: return "C64"
        case .f8e4m3: return "F8_E4M3"
        case .f8e5m2: return "F8_E5M2"
        case .f8e8m0: return "F8_E8M0"
        case .f8e4m3fnuz: return "F8_E4M3FNUZ"
        case .f8e5m2fnuz: return "F8_E5M2FNUZ"
        case .f6e2m3: return "F6_E2M3"
        case .f6e3m2: return "F6_E3M2"
        case .f4: return "F4"
        case .opaque(let name, _): return name
        }
    }

    /// The kind for a safetensors dtype string; unknown strings become `.opaque`.
    public init(safetensorsName name: String) {
        self = DType.known.first(where: { $0.safetensorsName == name }) ?? .opaque(name: name, bytesPerElement: nil)
    }

    /// The name numpy and Keras use (`float32`, `bfloat16`, ...), used in HDF5 `dtype` attributes.
    public var numpyName: String {
        switch self {
        case .bool: return "bool"
        case .u8: return "uint8"
        case .i8: return "int8"
        case .u16: return "uint16"
        case .i16: return "int16"
        case .u32: return "uint32"
        case .i32: return "int32"
        case .u64: return "uint64"
        case .i64: return "int64"
        case .f16: return "float16"
        case .bf16: return "bfloat16"
        case .f32: return "float32"
        case .f64: return "float64"
        case .c64: return "complex64"
        case .f8e4m3: return "float8_e4m3fn"
        case .f8e5m2: return "float8_e5m2"
        case .f8e8m0: return "float8_e8m0fnu"
        case .f8e4m3fnuz: return "float8_e4m3fnuz"
        case .f8e5m2fnuz: return "float8_e5m2fnuz"
        case .f6e2m3: return "float6_e2m3fn"
        case .f6e3m2: return "float6_e3m2fn"
        case .f4: return "float4_e2m1fn"
        case .opaque(let name, _): return name
        }
    }

    /// The kind for a numpy/Keras dtype name, or nil when it is not one this tool knows.
    public init?(numpyName name: String) {
        guard let match = DType.known.first(where: { $0.numpyName == name }) else { return nil }
        self = match
    }

    /// Bits per element, or nil for an opaque kind of unknown size.
    public var bitsPerElement: Int? {
        switch self {
        case .f4: return 4
        case .f6e2m3, .f6e3m2: return 6
        case .bool, .u8, .i8, .f8e4m3, .f8e5m2, .f8e8m0, .f8e4m3fnuz, .f8e5m2fnuz: return 8
        case .u16, .i16, .f16, .bf16: return 16
        case .u32, .i32, .f32: return 32
        case .u64, .i64, .f64, .c64: return 64
        case .opaque(_, let bytes): return bytes.map { $0 * 8 }
        }
    }

    /// Position in the safetensors writer's sort (larger sorts first); opaque kinds sort last.
    public var safetensorsRank: Int { DType.known.firstIndex(of: self) ?? -1 }

    /// Whether elements are floating point numbers a pass can compute with after decoding.
    public var isFloatingPoint: Bool {
        switch self {
        case .f16, .bf16, .f32, .f64: return true
        default: return false
        }
    }

    /// Bytes needed for `elementCount` elements, or nil when the size is unknown or not a whole number of bytes.
    public func byteCount(elements elementCount: UInt64) -> UInt64? {
        guard let bits = bitsPerElement else { return nil }
        let (total, overflow) = elementCount.multipliedReportingOverflow(by: UInt64(bits))
        guard !overflow, total % 8 == 0 else { return nil }
        return total / 8
    }
}
