/// What a file that is not a checkpoint holds, told from its first bytes, so the error can say "a PNG
/// image" instead of "not an HDF5 file" when an input's extension promised something else.
enum FileKind {
    /// A short description ("a PNG image") of a file starting with `head`, or nil when the bytes match
    /// nothing known.
    static func describe(_ head: [UInt8], size: UInt64) -> String? {
        if size == 0 { return "an empty file" }
        func starts(_ magic: [UInt8], at offset: Int = 0) -> Bool {
            head.count >= offset + magic.count && Array(head[offset..<offset + magic.count]) == magic
        }
        let signatures: [([UInt8], Int, String)] = [
            ([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], 0, "a PNG image"),
            ([0xFF, 0xD8, 0xFF], 0, "a JPEG image"),
            (Array("GIF8".utf8), 0, "a GIF image"),
            (Array("%PDF".utf8), 0, "a PDF document"),
            ([0x1F, 0x8B], 0, "a gzip-compressed file"),
            (Array("BZh".utf8), 0, "a bzip2-compressed file"),
            ([0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00], 0, "an xz-compressed file"),
            ([0x28, 0xB5, 0x2F, 0xFD], 0, "a Zstandard-compressed file"),
            (Array("ustar".utf8), 257, "a tar archive"),
            ([0x7F, 0x45, 0x4C, 0x46], 0, "an ELF executable"),
            ([0x93] + Array("NUMPY".utf8), 0, "a NumPy .npy array"),
            (Array("TFL3".utf8), 4, "a TensorFlow Lite model"),
            (Array("GGUF".utf8), 0, "a GGUF model (llama.cpp)"),
            (Array("RIFF".utf8), 0, "a RIFF file (audio, video or image)"),
        ]
        if let match = signatures.first(where: { starts($0.0, at: $0.1) }) { return match.2 }
        // An ONNX ModelProto opens with field 1, ir_version (a small varint), then another of its fields:
        // producer_name 2, producer_version 3, domain 4, model_version 5, doc_string 6, graph 7,
        // opset_import 8, metadata_props 14 (onnx.proto).
        if head.count >= 3, head[0] == 0x08, (1...20).contains(head[1]), [0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72].contains(head[2]) {
            return "an ONNX model (ir_version \(head[1])), which wsurgery does not read yet"
        }
        // Text: printable UTF-8 (a multi-byte character may be cut at the end of the sample).
        var sample = Array(head.prefix(512))
        guard sample.allSatisfy({ ($0 >= 0x20 && $0 != 0x7F) || [0x09, 0x0A, 0x0D].contains($0) }) else { return nil }
        for _ in 0..<3 where String(validating: sample, as: UTF8.self) == nil && !sample.isEmpty { sample.removeLast() }
        if String(validating: sample, as: UTF8.self) != nil { return "a text file" }
        return nil
    }
}
