import Foundation

/// Where a tensor's bytes can be read from. Readers provide one per tensor; the bytes are produced only
/// when a writer or a pass asks, in bounded chunks, so memory does not grow with the checkpoint's size.
public protocol TensorSource: Sendable {
    /// The number of bytes the tensor occupies (little-endian, C order).
    var byteCount: UInt64 { get }
    /// Where the bytes lie contiguously in a plain file, when they do; writers can then copy them
    /// file-to-file without passing them through a user-space buffer.
    var fileRegion: FileRegion? { get }
    /// Calls `body` with successive pieces of the bytes, in order, each at most `maxChunk` bytes.
    func forEachChunk(maxChunk: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws
}

/// A byte range of an input file.
public struct FileRegion: Sendable {
    /// The file.
    public let file: InputFile
    /// The first byte.
    public let offset: UInt64
    /// The number of bytes.
    public let length: UInt64

    /// A region of `file`.
    public init(file: InputFile, offset: UInt64, length: UInt64) {
        self.file = file
        self.offset = offset
        self.length = length
    }
}

/// Bytes that live in a file region: safetensors tensors, contiguous uncompressed HDF5 datasets.
public struct FileRegionSource: TensorSource {
    /// Where the bytes are.
    public let region: FileRegion
    /// Bytes at `region`.
    public init(region: FileRegion) { self.region = region }
    /// The region's length.
    public var byteCount: UInt64 { region.length }
    /// The region itself.
    public var fileRegion: FileRegion? { region }

    /// Reads the region in pieces of at most `maxChunk` bytes.
    public func forEachChunk(maxChunk: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let chunk = Int(min(UInt64(max(maxChunk, 1)), max(region.length, 1)))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        var done: UInt64 = 0
        while done < region.length {
            let n = Int(min(UInt64(chunk), region.length - done))
            let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
            try region.file.read(into: piece, at: region.offset + done)
            try body(UnsafeRawBufferPointer(piece))
            done += UInt64(n)
        }
    }
}

/// Bytes held in memory: what a pass produces.
public struct MemorySource: TensorSource {
    /// The bytes.
    public let bytes: [UInt8]
    /// Bytes held in memory.
    public init(bytes: [UInt8]) { self.bytes = bytes }
    /// The number of bytes held.
    public var byteCount: UInt64 { UInt64(bytes.count) }
    /// Memory is no file region.
    public var fileRegion: FileRegion? { nil }

    /// The bytes in pieces of at most `maxChunk`.
    public func forEachChunk(maxChunk: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        try bytes.withUnsafeBytes { all in
            var start = 0
            repeat {
                let end = min(start + max(maxChunk, 1), all.count)
                try body(UnsafeRawBufferPointer(rebasing: all[start..<end]))
                start = end
            } while start < all.count
        }
    }
}

extension TensorSource {
    /// All bytes in one array. Only passes that change a tensor's values call this.
    public func readAll() throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Int(byteCount))
        try forEachChunk(maxChunk: 8 << 20) { out.append(contentsOf: $0) }
        return out
    }
}

/// A tensor source whose bytes can be read at any offset: what a pass that works in blocks (transposing,
/// resampling, keeping some slices) needs to read only the part of a large tensor that each block uses.
public protocol RandomAccessSource: TensorSource {
    /// Reads `buffer.count` bytes starting `offset` bytes into the tensor.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws
}

extension FileRegionSource: RandomAccessSource {
    /// A `pread` inside the region.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        precondition(offset + UInt64(buffer.count) <= region.length, "read past the tensor")
        try region.file.read(into: buffer, at: region.offset + offset)
    }
}

extension MemorySource: RandomAccessSource {
    /// A copy from memory.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        precondition(offset + UInt64(buffer.count) <= bytes.count, "read past the tensor")
        bytes.withUnsafeBytes { all in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: all[Int(offset)..<Int(offset) + buffer.count]))
        }
    }
}

/// Giving any tensor source random access with bounded memory.
public enum RandomAccess {
    /// Sources up to this size are read into memory; larger ones that cannot be read at an offset are
    /// first streamed to an unlinked temporary file.
    public static let memoryLimit: UInt64 = 64 << 20

    /// `source` itself when it can be read at any offset, else its bytes in memory (small) or in an
    /// unlinked temporary file in `$TMPDIR` (large), which disappears when the last reader is gone.
    public static func of(_ source: any TensorSource, memoryLimit: UInt64 = RandomAccess.memoryLimit) throws -> any RandomAccessSource {
        if let direct = source as? any RandomAccessSource { return direct }
        if source.byteCount <= memoryLimit { return MemorySource(bytes: try source.readAll()) }
        let directory = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        let spill = try OutputFile(path: directory + "/wsurgery-spill")
        try source.forEachChunk(maxChunk: 8 << 20) { try spill.write($0) }
        let file = try InputFile(path: spill.temporaryPath)
        _ = spill  // dropping the uncommitted output unlinks the path; the open descriptor keeps the bytes
        return FileRegionSource(region: FileRegion(file: file, offset: 0, length: source.byteCount))
    }
}
