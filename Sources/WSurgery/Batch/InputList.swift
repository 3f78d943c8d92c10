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
    /// Where the slice came from: `option` for `--shard I/N`, else the scheduler (`slurm`, `kubernetes`,
    /// `gnu-parallel`) whose environment gave it.
    public var source: String = "option"

    /// Slice `index` of `count`.
    public init(index: Int, count: Int, source: String = "option") {
        self.index = index
        self.count = count
        self.source = source
    }

    /// Parses `I/N` with 0 <= I < N.
    public init(parsing text: String) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n >= 1, i >= 0, i < n else {
            let fromOne = parts.count == 2 && Int(parts[0]) != nil && Int(parts[0]) == Int(parts[1])
            throw WSurgeryError.invalidOption(
                option: "shard",
                reason: "'\(text)': expected I/N with 0 <= I < N (e.g. 0/4)"
                    + (fromOne ? "; slices count from 0: for a Slurm array numbered from 1 use --shard auto" : "; or 'auto' under a scheduler"))
        }
        self.init(index: i, count: n)
    }

    /// The slice a scheduler gave this task, from its environment: a Slurm array task
    /// (`SLURM_ARRAY_TASK_ID`, `_MIN`, `_STEP`, `_COUNT`; arrays may start at any index), a Kubernetes
    /// Indexed Job (`JOB_COMPLETION_INDEX`, from 0, with `count` = the Job's completions), or GNU parallel
    /// (`PARALLEL_SEQ`, from 1, with `count` or `PARALLEL_JOBSLOTS`). `count` (`--shard-count`) overrides
    /// the number of slices. Refuses an environment with none of them, or with several that disagree.
    public static func fromEnvironment(_ environment: [String: String], count: Int? = nil) throws -> Shard {
        func value(_ name: String) throws -> Int? {
            guard let text = environment[name] else { return nil }
            guard let number = Int(text.trimmingCharacters(in: .whitespaces)) else {
                throw WSurgeryError.invalidOption(option: "shard", reason: "auto: \(name)='\(text)' is not a number")
            }
            return number
        }
        func problem(_ reason: String) -> WSurgeryError { .invalidOption(option: "shard", reason: "auto: " + reason) }
        if let count, count < 1 { throw WSurgeryError.invalidOption(option: "shard-count", reason: "must be at least 1 (got \(count))") }
        var found: [Shard] = []
        if let id = try value("SLURM_ARRAY_TASK_ID") {
            let first = try value("SLURM_ARRAY_TASK_MIN") ?? 0
            let step = try value("SLURM_ARRAY_TASK_STEP") ?? 1
            guard let total = try count ?? value("SLURM_ARRAY_TASK_COUNT") else {
                throw problem("SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT; give --shard-count")
            }
            guard step >= 1, id >= first, (id - first) % step == 0 else {
                throw problem(
                    "Slurm task \(id) is not on the array's range \(first), \(first + step), ...; submit --array=A-B or A-B:S (not a list), or give --shard I/N"
                )
            }
            found.append(Shard(index: (id - first) / step, count: total, source: "slurm"))
        }
        if let index = try value("JOB_COMPLETION_INDEX") {
            guard let total = count else {
                throw problem(
                    "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but the number of slices is not: give --shard-count with the Job's completions"
                )
            }
            found.append(Shard(index: index, count: total, source: "kubernetes"))
        }
        if let sequence = try value("PARALLEL_SEQ") {
            guard let total = try count ?? value("PARALLEL_JOBSLOTS") else {
                throw problem("PARALLEL_SEQ is set but not PARALLEL_JOBSLOTS; give --shard-count")
            }
            found.append(Shard(index: sequence - 1, count: total, source: "gnu-parallel"))
        }
        guard let shard = found.first else {
            throw problem(
                "no scheduler found: expected SLURM_ARRAY_TASK_ID (a Slurm array job), JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) or PARALLEL_SEQ (GNU parallel); or give --shard I/N"
            )
        }
        if let other = found.dropFirst().first(where: { $0.index != shard.index || $0.count != shard.count }) {
            throw problem("\(shard.source) says slice \(shard) but \(other.source) says \(other); give --shard I/N")
        }
        guard shard.index >= 0, shard.index < shard.count else {
            throw problem("\(shard.source) gives slice \(shard.index) of \(shard.count), outside 0..<\(shard.count)")
        }
        return shard
    }

    /// This shard's part of `items`.
    public func select<T>(_ items: [T]) -> [T] {
        items.enumerated().filter { $0.offset % count == index }.map(\.element)
    }

    /// `I/N`.
    public var description: String { "\(index)/\(count)" }

    /// Same slice, wherever it came from.
    public static func == (a: Shard, b: Shard) -> Bool { a.index == b.index && a.count == b.count }
}
