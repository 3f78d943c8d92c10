/// One tensor entry of a safetensors header.
public struct SafetensorsEntry: Sendable {
    /// The tensor's name.
    public var name: String
    /// Its element type.
    public var dtype: DType
    /// Its dimensions.
    public var shape: [Int]
    /// Offsets relative to the start of the data buffer.
    public var begin: UInt64
    /// End of its bytes (exclusive), relative to the data start.
    public var end: UInt64
}

/// A validated safetensors header.
public struct SafetensorsHeader: Sendable {
    /// Entries in the order the header lists them.
    public var entries: [SafetensorsEntry]
    /// `__metadata__`, in order, when present.
    public var metadata: [(String, String)]?
    /// Absolute offset of the data buffer (8 + header length).
    public var dataStart: UInt64

    /// The reference reader's limit on the header length.
    public static let maxHeaderBytes: UInt64 = 100_000_000

    /// Reads and validates the header of `file` by every rule of the reference reader: header length
    /// within the cap and the file, UTF-8 JSON object, no duplicate names, well-formed entries, offsets
    /// that tile the buffer exactly, sizes matching dtype x shape, and the file ending where the last
    /// tensor does. Unknown dtype strings are accepted as opaque (their size cannot be checked).
    public static func read(_ file: InputFile) throws -> SafetensorsHeader {
        let path = file.path
        guard file.size >= 8 else { throw WSurgeryError.truncatedFile(path: path, expectedBytes: 8, actualBytes: file.size) }
        let lengthBytes = try file.read(count: 8, at: 0)
        let headerLength = lengthBytes.enumerated().reduce(UInt64(0)) { $0 | (UInt64($1.element) << (8 * UInt64($1.offset))) }
        if headerLength > maxHeaderBytes {
            throw WSurgeryError.headerTooLarge(path: path, headerBytes: headerLength, limit: maxHeaderBytes)
        }
        if 8 + headerLength > file.size {
            throw WSurgeryError.headerBeyondFile(path: path, headerBytes: headerLength, fileBytes: file.size)
        }
        let headerBytes = try file.read(count: Int(headerLength), at: 8)
        guard headerBytes.first == UInt8(ascii: "{") else {
            throw WSurgeryError.invalidHeader(path: path, reason: "the header does not start with '{'")
        }
        guard String(validating: headerBytes, as: UTF8.self) != nil else {
            throw WSurgeryError.invalidHeader(path: path, reason: "the header is not valid UTF-8")
        }
        let json: JSONValue
        do {
            json = try JSONParser.parse(headerBytes, rejectDuplicateKeys: true)
        } catch {
            if error.reason.hasPrefix("duplicate key") {
                let name = String(error.reason.dropFirst("duplicate key \"".count).dropLast())
                // A tensor twice is a duplicate at the top level; anything else is a key repeated inside
                // __metadata__ or inside one tensor's entry.
                let topLevel = pairs(of: headerBytes).filter { $0 == name }.count > 1
                if topLevel && name != "__metadata__" { throw WSurgeryError.duplicateTensor(path: path, tensor: name) }
                throw WSurgeryError.invalidHeader(
                    path: path,
                    reason: topLevel
                        ? "the __metadata__ key appears more than once"
                        : "the key '\(name)' appears more than once inside __metadata__ or a tensor's entry")
            }
            throw WSurgeryError.invalidHeader(path: path, reason: error.description)
        }
        guard case .object(let pairs) = json else {
            throw WSurgeryError.invalidHeader(path: path, reason: "the header is not a JSON object")
        }
        var entries: [SafetensorsEntry] = []
        var metadata: [(String, String)]?
        for (name, value) in pairs {
            if name == "__metadata__" {
                guard case .object(let items) = value else {
                    throw WSurgeryError.invalidHeader(path: path, reason: "__metadata__ is not an object of strings")
                }
                metadata = try items.map { key, item in
                    guard case .string(let s) = item else {
                        throw WSurgeryError.invalidHeader(path: path, reason: "__metadata__ value for '\(key)' is not a string")
                    }
                    return (key, s)
                }
                continue
            }
            entries.append(try entry(name: name, value: value, path: path))
        }
        let dataEnd = try validateTiling(entries, path: path)
        let expectedSize = 8 + headerLength + dataEnd
        if expectedSize > file.size {
            throw WSurgeryError.truncatedFile(path: path, expectedBytes: expectedSize, actualBytes: file.size)
        }
        if expectedSize < file.size {
            throw WSurgeryError.trailingBytes(path: path, expectedBytes: expectedSize, actualBytes: file.size)
        }
        return SafetensorsHeader(entries: entries, metadata: metadata, dataStart: 8 + headerLength)
    }

    /// The top-level keys of a header that parses leniently (for error messages).
    private static func pairs(of bytes: [UInt8]) -> [String] {
        guard case .object(let pairs)? = try? JSONParser.parse(bytes) else { return [] }
        return pairs.map(\.0)
    }

    private static func entry(name: String, value: JSONValue, path: String) throws -> SafetensorsEntry {
        func bad(_ reason: String) -> WSurgeryError { .invalidTensorEntry(path: path, tensor: name, reason: reason) }
        guard case .object = value else { throw bad("the entry is not an object") }
        guard let dtypeName = value["dtype"]?.stringValue else { throw bad("missing or non-string 'dtype'") }
        guard (1...32).contains(dtypeName.utf8.count),
            dtypeName.unicodeScalars.allSatisfy({ $0 == "_" || ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) })
        else {
            throw bad("'dtype' \(TextSafety.quoted(dtypeName)) is not a dtype name (letters, digits and '_', at most 32)")
        }
        guard let shapeValues = value["shape"]?.arrayValue else { throw bad("missing or non-array 'shape'") }
        let shape = try shapeValues.map { v -> Int in
            guard let d = v.intValue, d >= 0 else { throw bad("shape entries must be non-negative integers") }
            return d
        }
        guard let offsets = value["data_offsets"]?.arrayValue, offsets.count == 2,
            let begin = offsets[0].int64Value, let end = offsets[1].int64Value, begin >= 0, end >= 0
        else { throw bad("'data_offsets' must be two non-negative integers") }
        if end < begin { throw bad("data_offsets end \(end) is before begin \(begin)") }
        let dtype = DType(safetensorsName: dtypeName)
        var elements: UInt64 = 1
        for d in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: UInt64(d))
            if overflow { throw bad("the shape \(shape) overflows") }
            elements = product
        }
        let span = UInt64(end - begin)
        if dtype.bitsPerElement != nil {
            guard let needed = dtype.byteCount(elements: elements) else {
                throw bad("\(elements) elements of \(dtypeName) are not a whole number of bytes")
            }
            if needed != span {
                throw WSurgeryError.tensorSizeMismatch(
                    path: path, tensor: name, dtype: dtypeName, shape: shape, expectedBytes: needed, actualBytes: span)
            }
        }
        return SafetensorsEntry(name: name, dtype: dtype, shape: shape, begin: UInt64(begin), end: UInt64(end))
    }

    /// Checks that the entries, sorted by offset, cover the buffer from 0 with no hole and no overlap;
    /// returns the buffer's length.
    private static func validateTiling(_ entries: [SafetensorsEntry], path: String) throws -> UInt64 {
        let sorted = entries.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var position: UInt64 = 0
        var previous = "the start of the data"
        for e in sorted {
            if e.begin < position {
                throw WSurgeryError.overlappingTensors(path: path, first: previous, second: e.name, offset: e.begin)
            }
            if e.begin > position {
                throw WSurgeryError.gapBetweenTensors(path: path, before: previous, after: e.name, gapStart: position, gapEnd: e.begin)
            }
            position = e.end
            previous = e.name
        }
        return position
    }
}
