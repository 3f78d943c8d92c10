import Foundation

@testable import WSurgery

/// Paths and helpers shared by the tests.
enum TestSupport {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static func fixture(_ name: String) -> String { root + "/fixtures/" + name }

    /// A fresh empty directory.
    static func temporaryDirectory() -> String {
        let dir = NSTemporaryDirectory() + "/wsurgery-tests-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Writes a safetensors file from a raw header string and data bytes.
    static func safetensors(header: String, data: [UInt8], lengthOverride: UInt64? = nil, in dir: String) -> String {
        let path = dir + "/crafted-\(UUID().uuidString).safetensors"
        let h = Array(header.utf8)
        let n = lengthOverride ?? UInt64(h.count)
        var bytes = (0..<8).map { UInt8((n >> (8 * UInt64($0))) & 0xFF) }
        bytes += h + data
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    /// The bytes of every tensor, by name.
    static func tensorBytes(_ graph: TensorGraph) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for t in graph.tensors { out[t.name] = try t.data.readAll() }
        return out
    }
}
