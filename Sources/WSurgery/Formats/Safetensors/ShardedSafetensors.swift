import Foundation

/// Naming rules of sharded safetensors checkpoints (Hugging Face's `model-00001-of-00003.safetensors`
/// beside `model.safetensors.index.json`).
public enum ShardedSafetensors {
    /// How a sharded checkpoint's index file name ends.
    public static let indexSuffix = ".safetensors.index.json"

    /// The index file for a path that is an index or a directory holding exactly one index.
    public static func indexPath(for path: String) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw WSurgeryError.cannotOpen(path: path, reason: "no such file or directory")
        }
        if !isDirectory.boolValue { return path }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        let indexes = names.filter { $0.hasSuffix(indexSuffix) }.sorted()
        if indexes.contains("model" + indexSuffix) { return path + "/model" + indexSuffix }
        guard indexes.count == 1 else {
            throw WSurgeryError.unknownFormat(
                path: path,
                reason: indexes.isEmpty
                    ? "the directory holds no *\(indexSuffix)"
                    : "the directory holds several indexes (\(indexes.joined(separator: ", "))); name one")
        }
        return path + "/" + indexes[0]
    }

    /// Whether an output path names a directory (a model folder): it ends in `/`, is an existing
    /// directory, or has no extension at all (`resnet-gray`, as `save_pretrained("resnet-gray")` names
    /// a folder) and is not an existing file.
    public static func isDirectoryOutput(_ path: String) -> Bool {
        if path.hasSuffix("/") { return true }
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        if exists { return isDirectory.boolValue && !namesAFile(path) }
        let base = path.split(separator: "/").last.map(String.init) ?? path
        return !base.isEmpty && base != "." && base != ".." && !base.dropFirst().contains(".")
    }

    /// The single weights file of a model folder whose weights fit in one shard (`save_pretrained`'s name).
    public static let singleFileName = "model.safetensors"

    /// The file whose presence says an output is complete (written last of its set): the index, or for a
    /// folder holding one `model.safetensors` and no index, that file.
    public static func completionMarker(for output: String) -> String {
        let names = outputNames(for: output)
        if isDirectoryOutput(output), !FileManager.default.fileExists(atPath: names.index) {
            return names.directory + "/" + singleFileName
        }
        return names.index
    }

    /// Whether the name ends like a checkpoint file (`.h5`, `.keras`, `.safetensors`, ...): a directory of
    /// such a name is never filled with shards.
    public static func namesAFile(_ path: String) -> Bool {
        [".safetensors", ".json", ".h5", ".hdf5", ".keras", ".pt", ".pth", ".bin", ".ckpt"].contains { path.hasSuffix($0) }
    }

    /// The index path and the shard-name stem for an output path: a directory gets `model.*` inside it,
    /// `x.safetensors` and `x.safetensors.index.json` give stem `x`.
    public static func outputNames(for path: String) -> (index: String, directory: String, stem: String) {
        if isDirectoryOutput(path) {
            var dir = path
            while dir.count > 1 && dir.hasSuffix("/") { dir.removeLast() }
            return (dir + "/model" + indexSuffix, dir, "model")
        }
        let directory = OutputFile.directory(of: path)
        var base = path.split(separator: "/").last.map(String.init) ?? path
        if base.hasSuffix(indexSuffix) {
            base = String(base.dropLast(indexSuffix.count))
        } else if base.hasSuffix(".safetensors") {
            base = String(base.dropLast(".safetensors".count))
        }
        return (directory + "/" + base + indexSuffix, directory, base)
    }

    /// `stem-0000i-of-0000n.safetensors`.
    public static func shardName(stem: String, index: Int, count: Int) -> String {
        func pad(_ n: Int) -> String {
            let s = String(n)
            return String(repeating: "0", count: max(0, 5 - s.count)) + s
        }
        return "\(stem)-\(pad(index))-of-\(pad(count)).safetensors"
    }

    /// Parses a size such as `5GB`, `500MB`, `2GiB`, `1000000` (decimal units as Hugging Face reads them).
    public static func parseSize(_ text: String) throws -> UInt64 {
        let t = text.trimmingCharacters(in: .whitespaces).uppercased()
        let units: [(String, UInt64)] = [
            ("KIB", 1 << 10), ("MIB", 1 << 20), ("GIB", 1 << 30), ("TIB", 1 << 40),
            ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000),
            ("K", 1_000), ("M", 1_000_000), ("G", 1_000_000_000), ("B", 1),
        ]
        for (suffix, factor) in units where t.hasSuffix(suffix) {
            let number = t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)
            if let value = Double(number), value > 0, value * Double(factor) < 1.8e19 { return UInt64(value * Double(factor)) }
            break
        }
        if let value = UInt64(t), value > 0 { return value }
        throw WSurgeryError.invalidOption(option: "shard-size", reason: "'\(text)' is not a size such as 5GB, 500MB or 2GiB")
    }
}
