import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The checkpoints a batch run works on: files, directories (searched recursively; a directory holding
/// a `*.safetensors.index.json` is one sharded checkpoint) and glob patterns, expanded, de-duplicated and
/// sorted so every process of an array job sees the same list.
public enum InputList {
    /// File names taken as checkpoints when a directory is searched.
    static let checkpointSuffixes = [".h5", ".hdf5", ".keras", ".safetensors"] + TorchCheckpointReader.suffixes

    /// Expands the arguments; an argument that matches nothing is an error (before any file is read).
    public static func expand(_ arguments: [String]) throws -> [String] {
        var found: [String] = []
        for argument in arguments {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: argument, isDirectory: &isDirectory) {
                found += isDirectory.boolValue ? try search(directory: argument) : [argument]
            } else if argument.contains(where: { "*?[".contains($0) }) {
                let matches = glob(argument)
                if matches.isEmpty { throw WSurgeryError.cannotOpen(path: argument, reason: "the pattern matches no file") }
                for match in matches {
                    if FileManager.default.fileExists(atPath: match, isDirectory: &isDirectory), isDirectory.boolValue {
                        found += try search(directory: match)
                    } else {
                        found.append(match)
                    }
                }
            } else {
                throw WSurgeryError.cannotOpen(path: argument, reason: "no such file or directory")
            }
        }
        var seen = Set<String>()
        return found.filter { seen.insert(URL(fileURLWithPath: $0).standardizedFileURL.path).inserted }
            .sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }

    /// Checkpoints under a directory: the directory itself when it holds an index, else its checkpoint
    /// files and those of its subdirectories. Hidden entries (temporary outputs among them) are skipped.
    static func search(directory: String) throws -> [String] {
        let base = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: base) } catch {
            throw WSurgeryError.cannotOpen(path: directory, reason: "cannot list the directory")
        }
        if names.contains(where: { $0.hasSuffix(ShardedSafetensors.indexSuffix) }) { return [base] }
        var result: [String] = []
        for name in names.sorted() where !name.hasPrefix(".") {
            let path = base + "/" + name
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { continue }
            if isDirectory.boolValue {
                result += try search(directory: path)
            } else if checkpointSuffixes.contains(where: { name.hasSuffix($0) }) {
                result.append(path)
            }
        }
        return result
    }

    static func glob(_ pattern: String) -> [String] {
        var matches = glob_t()
        defer { globfree(&matches) }
        guard Glibc.glob(pattern, 0, nil, &matches) == 0 else { return [] }
        return (0..<Int(matches.gl_pathc)).compactMap { matches.gl_pathv[$0].map { String(cString: $0) } }
    }
}

/// A shard `I/N`: the I-th of N slices of a sorted input list, taken round-robin (inputs I, I+N, I+2N,
/// ...) so slices stay balanced when the list is sorted by size or by name.
public struct Shard: Sendable, Equatable, CustomStringConvertible {
    /// This slice, from 0.
    public var index: Int
    /// The number of slices.
    public var count: Int

    /// Slice `index` of `count`.
    public init(index: Int, count: Int) {
        self.index = index
        self.count = count
    }

    /// Parses `I/N` with 0 <= I < N.
    public init(parsing text: String) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n >= 1, i >= 0, i < n else {
            throw WSurgeryError.invalidOption(
                option: "shard",
                reason: "'\(text)': expected I/N with 0 <= I < N (e.g. 0/4; under Slurm, $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
        }
        self.init(index: i, count: n)
    }

    /// This shard's part of `items`.
    public func select<T>(_ items: [T]) -> [T] {
        items.enumerated().filter { $0.offset % count == index }.map(\.element)
    }

    /// `I/N`.
    public var description: String { "\(index)/\(count)" }
}
