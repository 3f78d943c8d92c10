import Foundation

/// Limits on what a file may make the tool do, so a small hostile file cannot take hours, all memory or
/// all disk. Each has a key; `WSURGERY_LIMITS="key=value,key=value"` raises (or lowers) them, for
/// checkpoints that really are that large.
public struct Limits: Sendable, Equatable {
    /// `config-bytes`: the longest model config accepted (a `.keras` config.json, an HDF5 `model_config`
    /// attribute, a Hugging Face config.json).
    public var configBytes: UInt64 = 64 << 20
    /// `expansion`: how many times its stored size a compressed or unallocated HDF5 dataset may decode
    /// to, once it decodes to more than `expansion-floor` bytes; and how many times its own size the
    /// tensors of a `torch.save` file may hold (views and storages shared by several tensors).
    public var expansion: UInt64 = 100
    /// `expansion-floor`: below this decoded size a dataset is never refused for its expansion.
    public var expansionFloor: UInt64 = 64 << 20
    /// `tensors`: the most tensors one checkpoint may hold.
    public var tensors: UInt64 = 1_000_000
    /// `name-bytes`: the longest tensor or layer name accepted.
    public var nameBytes: UInt64 = 4096
    /// `probe-seconds`: how long the child process that reads an HDF5 file first may take, plus one
    /// second per 64 MiB of the file, before the file is declared to hang the HDF5 library.
    public var probeSeconds: UInt64 = 5

    /// `carried-bytes`: the largest file a model folder output carries from its input folder (a README,
    /// a tokenizer); a larger one (a sparse 64 GiB `tokenizer.json`) is refused.
    public var carriedBytes: UInt64 = 1 << 30

    /// The defaults.
    public init() {}

    /// The environment variable read by `current`.
    public static let environmentKey = "WSURGERY_LIMITS"

    /// Each key and the limit it sets.
    static var keys: [(key: String, path: WritableKeyPath<Limits, UInt64>)] {
        [
            ("config-bytes", \.configBytes), ("expansion", \.expansion), ("expansion-floor", \.expansionFloor),
            ("tensors", \.tensors), ("name-bytes", \.nameBytes), ("probe-seconds", \.probeSeconds), ("carried-bytes", \.carriedBytes),
        ]
    }

    /// Parses `key=value,...` over the defaults; sizes take units (`2GiB`, `500MB`).
    public static func parse(_ text: String) throws -> Limits {
        var limits = Limits()
        for item in text.split(separator: ",") where !item.trimmingCharacters(in: .whitespaces).isEmpty {
            let parts = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let entry = keys.first(where: { $0.key == parts[0] }) else {
                throw WSurgeryError.invalidArguments(
                    reason: "\(environmentKey): '\(item)' is not KEY=VALUE with KEY one of \(keys.map(\.key).joined(separator: ", "))")
            }
            guard let value = try? ShardedSafetensors.parseSize(parts[1]) else {
                throw WSurgeryError.invalidArguments(reason: "\(environmentKey): '\(parts[1])' is not a positive number for \(parts[0])")
            }
            limits[keyPath: entry.path] = value
        }
        return limits
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var cached: Limits?

    /// The limits of this process: the defaults, changed by `WSURGERY_LIMITS` (checked once at start by
    /// the command line, so a typo is an error there).
    public static var current: Limits {
        get {
            lock.withLock {
                if let cached { return cached }
                let parsed = (try? parse(ProcessInfo.processInfo.environment[environmentKey] ?? "")) ?? Limits()
                cached = parsed
                return parsed
            }
        }
        set { lock.withLock { cached = newValue } }
    }

    /// The error for `value` over the limit `key` while reading `path`.
    func exceeded(_ key: String, path: String, what: String, value: UInt64) -> WSurgeryError {
        let limit: UInt64 = Limits.keys.first { $0.key == key }.map { entry in self[keyPath: entry.path] } ?? 0
        return .limitExceeded(path: path, what: what, value: value, limit: limit, key: key)
    }

    /// Refuses a name longer than `name-bytes`.
    func checkName(_ name: String, path: String, kind: String = "tensor") throws {
        let bytes = UInt64(name.utf8.count)
        if bytes > nameBytes {
            throw exceeded("name-bytes", path: path, what: "a \(kind) name of \(bytes) bytes ('\(name.prefix(40))...')", value: bytes)
        }
    }

    /// Refuses more than `tensors` tensors.
    func checkTensorCount(_ count: Int, path: String) throws {
        if UInt64(count) > tensors { throw exceeded("tensors", path: path, what: "\(count) tensors", value: UInt64(count)) }
    }

    /// Refuses a file of a model folder larger than `carried-bytes`.
    func checkCarried(bytes: UInt64, path: String) throws {
        if bytes > carriedBytes { throw exceeded("carried-bytes", path: path, what: "a folder file of \(bytes) bytes", value: bytes) }
    }

    /// Refuses a config text longer than `config-bytes`.
    func checkConfig(bytes: UInt64, path: String, what: String) throws {
        if bytes > configBytes { throw exceeded("config-bytes", path: path, what: "\(what) of \(bytes) bytes", value: bytes) }
    }

    /// Refuses a `torch.save` file whose tensors hold more than `expansion` times the file's bytes, once
    /// over the floor (a stride-0 view or a storage shared by many tensors is written out in full).
    func checkExpansion(yielded: UInt64, fileBytes: UInt64, path: String) throws {
        guard yielded > expansionFloor else { return }
        let (allowed, overflow) = max(fileBytes, 1).multipliedReportingOverflow(by: expansion)
        if !overflow, yielded > allowed {
            let ratio = yielded / max(fileBytes, 1)
            let what = "its tensors (views of its storages) hold at least \(yielded) bytes from a file of \(fileBytes) (x\(ratio))"
            throw exceeded("expansion", path: path, what: what, value: ratio)
        }
    }

    /// Refuses a dataset that would decode to more than `expansion` times what it stores, once over the floor.
    func checkExpansion(decoded: UInt64, stored: UInt64, path: String, dataset: String) throws {
        guard decoded > expansionFloor else { return }
        let (allowed, overflow) = max(stored, 1).multipliedReportingOverflow(by: expansion)
        if !overflow, decoded > allowed {
            throw exceeded(
                "expansion", path: path,
                what: "dataset '\(dataset)' decodes to \(decoded) bytes from \(stored) stored (x\(decoded / max(stored, 1)))",
                value: decoded / max(stored, 1))
        }
    }
}
