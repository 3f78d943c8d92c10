import CXXHash

/// How the provenance record fingerprints the input file.
public enum DigestAlgorithm: String, Sendable, CaseIterable {
    /// XXH3-128 (xxHash): as fast as the copy, so recording it costs nothing visible; `xxhsum -H2 FILE`
    /// prints the same value. The default.
    case xxh128
    /// SHA-256: what model hubs list and `sha256sum` prints; about 1.4 GB/s here.
    case sha256

    /// Hex digits of a digest.
    public var hexLength: Int { self == .sha256 ? 64 : 32 }
}

/// A digest of bytes fed in order.
struct StreamingDigest {
    private var sha: SHA256?
    private var xxh: XXH128State?

    init(_ algorithm: DigestAlgorithm) {
        switch algorithm {
        case .sha256: sha = SHA256()
        case .xxh128: xxh = XXH128State()
        }
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        sha?.update(bytes)
        xxh?.update(bytes)
    }

    /// Lowercase hex, as `sha256sum` / `xxhsum -H2` print it.
    mutating func finalize() -> String {
        if var sha { return sha.finalize() }
        return xxh!.finalize()
    }
}

/// XXH3-128 streaming state (freed with the value).
final class XXH128State {
    private let state: OpaquePointer

    init() {
        state = XXH3_createState()!
        XXH3_128bits_reset(state)
    }

    deinit { XXH3_freeState(state) }

    func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        XXH3_128bits_update(state, base, bytes.count)
    }

    /// The canonical (big-endian: high 64 bits first) hex form `xxhsum -H2` prints.
    func finalize() -> String {
        let hash = XXH3_128bits_digest(state)
        func hex(_ v: UInt64) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: 16 - s.count) + s
        }
        return hex(hash.high64) + hex(hash.low64)
    }
}

extension DigestAlgorithm {
    /// The digest of a whole file, read in 4 MiB pieces; throws `CancellationError` when `cancelled`
    /// says so between pieces.
    public func file(_ file: InputFile, cancelled: () -> Bool = { false }) throws -> String {
        var digest = StreamingDigest(self)
        var offset: UInt64 = 0
        let chunk = 4 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buffer.deallocate() }
        while offset < file.size {
            if cancelled() { throw CancellationError() }
            let n = Int(min(UInt64(chunk), file.size - offset))
            let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
            try file.read(into: piece, at: offset)
            digest.update(UnsafeRawBufferPointer(piece))
            offset += UInt64(n)
        }
        return digest.finalize()
    }
}
