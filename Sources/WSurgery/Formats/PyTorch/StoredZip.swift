import Foundation

/// The entries of a zip file where they lie in it, read from its central directory (ZIP64 included).
/// `torch.save` stores its entries uncompressed, so a stored entry's bytes are a plain file region and
/// can be read in place.
struct StoredZip {
    /// One entry of the central directory.
    struct Entry {
        let name: String
        /// 0 = stored, 8 = deflated.
        let method: UInt16
        let compressedSize: UInt64
        let size: UInt64
        let localHeaderOffset: UInt64
    }

    let file: InputFile
    let entries: [Entry]
    /// The entries by name (a state dict of thousands of tensors has as many storage entries).
    private let byName: [String: Entry]

    /// Reads the central directory of `file`; `describe` names the file in errors.
    init(file: InputFile) throws {
        self.file = file
        func fail(_ reason: String) -> WSurgeryError { .invalidPyTorch(path: file.path, reason: reason) }
        // The end-of-central-directory record is in the last 64 KiB + 22 bytes.
        let tailLength = Int(min(file.size, 65_557))
        let tail = try file.read(count: tailLength, at: file.size - UInt64(tailLength))
        guard let eocd = stride(from: tail.count - 22, through: 0, by: -1).first(where: { Self.u32(tail, $0) == 0x0605_4b50 }) else {
            throw fail("no zip end-of-central-directory record")
        }
        var count = UInt64(Self.u16(tail, eocd + 10))
        var directorySize = UInt64(Self.u32(tail, eocd + 12))
        var directoryOffset = UInt64(Self.u32(tail, eocd + 16))
        if count == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
            // ZIP64: a locator just before the record points at the ZIP64 end record.
            guard eocd >= 20, Self.u32(tail, eocd - 20) == 0x0706_4b50 else { throw fail("a ZIP64 archive without its locator") }
            let recordOffset = Self.u64(tail, eocd - 20 + 8)
            guard recordOffset < file.size else { throw fail("the ZIP64 end record lies past the end of the file") }
            let record = try file.read(count: 56, at: recordOffset)
            guard record.count == 56, Self.u32(record, 0) == 0x0606_4b50 else { throw fail("no ZIP64 end record where the locator points") }
            count = Self.u64(record, 32)
            directorySize = Self.u64(record, 40)
            directoryOffset = Self.u64(record, 48)
        }
        guard directoryOffset <= file.size, directorySize <= file.size - directoryOffset, directorySize <= 1 << 30 else {
            throw fail("the central directory lies outside the file")
        }
        let directory = try file.read(count: Int(directorySize), at: directoryOffset)
        var entries: [Entry] = []
        var at = 0
        for _ in 0..<count {
            guard at + 46 <= directory.count, Self.u32(directory, at) == 0x0201_4b50 else { throw fail("a malformed central directory entry") }
            let method = Self.u16(directory, at + 10)
            var compressed = UInt64(Self.u32(directory, at + 20))
            var size = UInt64(Self.u32(directory, at + 24))
            let nameLength = Int(Self.u16(directory, at + 28))
            let extraLength = Int(Self.u16(directory, at + 30))
            let commentLength = Int(Self.u16(directory, at + 32))
            var offset = UInt64(Self.u32(directory, at + 42))
            let end = at + 46 + nameLength + extraLength + commentLength
            guard end <= directory.count else { throw fail("a central directory entry runs past the directory") }
            let name = String(decoding: directory[(at + 46)..<(at + 46 + nameLength)], as: UTF8.self)
            // ZIP64 extra field: the 64-bit values of the fields saturated above, in this order.
            var extra = at + 46 + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let id = Self.u16(directory, extra)
                let length = Int(Self.u16(directory, extra + 2))
                if id == 0x0001 {
                    var field = extra + 4
                    func next() throws -> UInt64 {
                        guard field + 8 <= extra + 4 + length, field + 8 <= extraEnd else { throw fail("a short ZIP64 field for '\(name)'") }
                        defer { field += 8 }
                        return Self.u64(directory, field)
                    }
                    if size == 0xFFFF_FFFF { size = try next() }
                    if compressed == 0xFFFF_FFFF { compressed = try next() }
                    if offset == 0xFFFF_FFFF { offset = try next() }
                }
                extra += 4 + length
            }
            entries.append(Entry(name: name, method: method, compressedSize: compressed, size: size, localHeaderOffset: offset))
            at = end
        }
        self.entries = entries
        var byName: [String: Entry] = [:]
        byName.reserveCapacity(entries.count)
        for entry in entries {
            // Readers disagree on which of two same-named entries counts (Python's zipfile takes the
            // last, a streaming reader the first): a file that means two things is refused.
            guard byName.updateValue(entry, forKey: entry.name) == nil else { throw fail("the entry '\(entry.name)' appears twice") }
        }
        self.byName = byName
    }

    /// The entry called `name`.
    func entry(_ name: String) -> Entry? { byName[name] }

    /// Where a stored entry's bytes lie in the file.
    func region(of entry: Entry) throws -> FileRegion {
        func fail(_ reason: String) -> WSurgeryError { .invalidPyTorch(path: file.path, reason: "entry '\(entry.name)': " + reason) }
        guard entry.method == 0, entry.compressedSize == entry.size else { throw fail("compressed (torch.save stores entries uncompressed)") }
        guard entry.localHeaderOffset < file.size else { throw fail("its header lies past the end of the file") }
        let header = try file.read(count: 30, at: entry.localHeaderOffset)
        guard header.count == 30, Self.u32(header, 0) == 0x0403_4b50 else { throw fail("no local header where the directory points") }
        let start = entry.localHeaderOffset + 30 + UInt64(Self.u16(header, 26)) + UInt64(Self.u16(header, 28))
        guard start <= file.size, entry.size <= file.size - start else { throw fail("its bytes run past the end of the file") }
        return FileRegion(file: file, offset: start, length: entry.size)
    }

    static func u16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }
    static func u32(_ b: [UInt8], _ i: Int) -> UInt32 { (0..<4).reduce(UInt32(0)) { $0 | UInt32(b[i + $1]) << (8 * UInt32($1)) } }
    static func u64(_ b: [UInt8], _ i: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(b[i + $1]) << (8 * UInt64($1)) } }
}
