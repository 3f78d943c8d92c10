import Foundation

/// Reading and writing checkpoints of any supported format: the format is recognised from the file's
/// content (input) or name (output), and the matching reader or writer runs.
public enum Checkpoint {
    /// Options for writing.
    public struct WriteOptions: Sendable {
        /// Replace existing outputs.
        public var force: Bool
        /// Write sharded safetensors with shards of at most this many bytes.
        public var shardSize: UInt64?
        /// How the provenance record fingerprints the input.
        public var digest: DigestAlgorithm
        /// Outputs below this directory (`run --out-dir`) are written only through real directories,
        /// walked from it with O_NOFOLLOW and created as needed.
        public var root: String?

        /// Options for writing.
        public init(force: Bool = false, shardSize: UInt64? = nil, digest: DigestAlgorithm = .xxh128, root: String? = nil) {
            self.force = force
            self.shardSize = shardSize
            self.digest = digest
            self.root = root
        }
    }

    /// Recognises the format of an input path from its content (`FILE#KEY` names a PyTorch checkpoint's entry).
    public static func detectInputFormat(_ path: String) throws -> CheckpointFormat {
        let (path, key) = splitSelector(path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw WSurgeryError.cannotOpen(path: path, reason: "no such file or directory")
        }
        if isDirectory.boolValue {
            guard let weights = HuggingFaceFolder.weights(in: path) else {
                throw WSurgeryError.unknownFormat(
                    path: path,
                    reason: "the directory holds no weights (model.safetensors, *.safetensors.index.json, pytorch_model.bin or its index)")
            }
            if key != nil, weights.format != .pytorch {
                throw WSurgeryError.unknownFormat(path: path, reason: "#KEY picks an entry of a PyTorch checkpoint")
            }
            return weights.format
        }
        if path.hasSuffix(ShardedSafetensors.indexSuffix) { return .shardedSafetensors }
        if path.hasSuffix(HuggingFaceFolder.binIndexName) { return .pytorch }
        let file = try InputFile(path: path)
        let head = try file.read(count: Int(min(file.size, 512)), at: 0)
        let format: CheckpointFormat
        if head.starts(with: [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]) {
            format = path.hasSuffix(".weights.h5") ? .kerasWeightsH5 : .kerasLegacyH5
        } else if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) {
            // A torch.save zip holds '<name>/data.pkl'; a .keras archive holds config.json.
            let zip = try? StoredZip(file: file)
            let isTorch = zip?.entries.contains { $0.name.hasSuffix("/data.pkl") && $0.name.split(separator: "/").count == 2 } ?? false
            if let zip, !isTorch, !zip.entries.isEmpty, zip.entries.allSatisfy({ $0.name.hasSuffix(".npy") }) {
                throw WSurgeryError.notACheckpoint(
                    path: path,
                    content: "a numpy .npz archive (numpy.savez), which wsurgery does not read; "
                        + "safetensors.numpy.save_file(dict(numpy.load(FILE)), 'weights.safetensors') converts it")
            }
            if let zip, !isTorch, !zip.entries.contains(where: { $0.name == "config.json" || $0.name == "model.weights.h5" }) {
                throw WSurgeryError.notACheckpoint(path: path, content: "a zip archive holding neither a Keras config.json nor a torch.save data.pkl")
            }
            format = isTorch || (zip == nil && TorchCheckpointReader.suffixes.contains { path.hasSuffix($0) }) ? .pytorch : .kerasArchive
        } else if TorchCheckpointReader.isLegacy(head) {
            format = .pytorch
        } else if let content = FileKind.describe(head, size: file.size), !(head.count > 8 && head[8] == UInt8(ascii: "{")) {
            throw WSurgeryError.notACheckpoint(path: path, content: content)
        } else if head.count > 8, head[8] == UInt8(ascii: "{") || path.hasSuffix(".safetensors") {
            format = .safetensors
        } else if path.hasSuffix(".keras") {
            throw WSurgeryError.notACheckpoint(path: path, content: "not a zip archive (a .keras file is one)")
        } else if path.hasSuffix(".h5") || path.hasSuffix(".hdf5") {
            throw WSurgeryError.notHDF5(path: path)
        } else if TorchCheckpointReader.suffixes.contains(where: { path.hasSuffix($0) }) {
            throw WSurgeryError.invalidPyTorch(path: path, reason: "neither the zip nor the legacy torch.save format")
        } else {
            throw WSurgeryError.notACheckpoint(path: path, content: "not safetensors, HDF5, a .keras archive or a torch.save file")
        }
        if key != nil, format != .pytorch {
            throw WSurgeryError.unknownFormat(path: path, reason: "#KEY picks an entry of a PyTorch checkpoint; this is \(format.rawValue)")
        }
        return format
    }

    /// `FILE#KEY` as the file and the key, when FILE exists and the whole path does not; else the path.
    public static func splitSelector(_ path: String) -> (path: String, key: String?) {
        guard let hash = path.lastIndex(of: "#"), !FileManager.default.fileExists(atPath: path) else { return (path, nil) }
        let file = String(path[..<hash])
        let key = String(path[path.index(after: hash)...])
        guard !key.isEmpty, FileManager.default.fileExists(atPath: file) else { return (path, nil) }
        return (file, key)
    }

    /// The output format for a path, from its name (and whether a shard size is given).
    public static func outputFormat(for path: String, shardSize: UInt64?) throws -> CheckpointFormat {
        if ShardedSafetensors.isDirectoryOutput(path) || path.hasSuffix(ShardedSafetensors.indexSuffix) { return .shardedSafetensors }
        if path.hasSuffix(".safetensors") { return shardSize == nil ? .safetensors : .shardedSafetensors }
        if shardSize != nil {
            throw WSurgeryError.invalidOption(option: "shard-size", reason: "only safetensors outputs can be sharded (got \(path))")
        }
        if path.hasSuffix(".weights.h5") { return .kerasWeightsH5 }
        if path.hasSuffix(".h5") || path.hasSuffix(".hdf5") { return .kerasLegacyH5 }
        if path.hasSuffix(".keras") { return .kerasArchive }
        if TorchCheckpointReader.suffixes.contains(where: { path.hasSuffix($0) }) {
            throw WSurgeryError.unknownFormat(
                path: path,
                reason:
                    "outputs are never pickles (a pickle can run code when loaded); write .safetensors, which torch loads with safetensors.torch.load_file"
            )
        }
        throw WSurgeryError.unknownFormat(
            path: path,
            reason:
                "the output name must end in .safetensors, .safetensors.index.json, .h5, .hdf5, .weights.h5 or .keras (or be a directory for sharded safetensors)"
        )
    }

    /// Whether an output path names safetensors (one file, an index, or a directory for shards).
    public static func isSafetensorsOutput(_ path: String) -> Bool {
        path.hasSuffix(".safetensors") || path.hasSuffix(ShardedSafetensors.indexSuffix) || path.hasSuffix("/")
    }

    /// Reads any supported checkpoint: a file, a sharded index, or a model folder (whose other files an
    /// output folder carries).
    public static func read(_ path: String) throws -> TensorGraph {
        let format = try detectInputFormat(path)
        let (file, key) = splitSelector(path)
        var isDirectory: ObjCBool = false
        let folder = FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory) && isDirectory.boolValue
        let weights = folder && format != .shardedSafetensors ? HuggingFaceFolder.weights(in: file)?.path ?? file : file
        var graph: TensorGraph
        switch format {
        case .safetensors: graph = try SafetensorsReader.read(path: weights)
        case .shardedSafetensors: graph = try SafetensorsReader.readSharded(path: weights)
        case .kerasLegacyH5, .kerasWeightsH5: graph = try KerasH5Reader.read(path: weights)
        case .kerasArchive: graph = try KerasArchive.read(path: weights)
        case .pytorch:
            graph =
                weights.hasSuffix(HuggingFaceFolder.binIndexName)
                ? try TorchCheckpointReader.readSharded(indexPath: weights) : try TorchCheckpointReader.read(path: weights, selecting: key)
        }
        if folder { HuggingFaceFolder.recordFolder(file, in: &graph) }
        try checkLimits(graph, path: file)
        return graph
    }

    /// Refuses a graph with more tensors, or longer names, than the limits allow.
    static func checkLimits(_ graph: TensorGraph, path: String) throws {
        let limits = Limits.current
        try limits.checkTensorCount(graph.layers.reduce(0) { $0 + $1.tensors.count }, path: path)
        for layer in graph.layers {
            try limits.checkName(layer.name, path: path, kind: "layer")
            for tensor in layer.tensors { try limits.checkName(tensor.name, path: path) }
        }
    }

    /// Refuses an output before any work is done: the output is an input, or exists without `force`.
    /// Below `root` (`run --out-dir`) missing directories are fine: they are created when written.
    public static func precheckOutput(_ path: String, inputs: [String], force: Bool, root: String? = nil) throws {
        let target = FileIdentity.of(path: path)
        for input in inputs {
            if let target, target == FileIdentity.of(path: input) { throw WSurgeryError.outputIsInput(path: path) }
            if URL(fileURLWithPath: input).standardizedFileURL.path == URL(fileURLWithPath: path).standardizedFileURL.path {
                throw WSurgeryError.outputIsInput(path: path)
            }
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue, ShardedSafetensors.namesAFile(path) {
            throw WSurgeryError.cannotCreateOutput(path: path, reason: "a directory of that name exists")
        }
        // lstat, not stat: a symlink at the output (even a dangling one) is an existing file.
        var info = stat()
        if lstat(path, &info) == 0, (info.st_mode & S_IFMT) != S_IFDIR, !force {
            throw WSurgeryError.outputExists(path: path)
        }
        // A folder output (`OUT/`) may be new: it is created when written, so its parent must exist.
        let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
        let directory = path.hasSuffix("/") && FileManager.default.fileExists(atPath: trimmed) ? trimmed : OutputFile.directory(of: trimmed)
        if let root = root.map(OutputSet.trimmed), directory == root || directory.hasPrefix(root + "/") { return }
        if !FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) || !isDirectory.boolValue {
            throw WSurgeryError.cannotCreateOutput(path: path, reason: "directory \(directory) does not exist")
        }
    }

    /// Writes `graph` to `path` in the format its name asks for; every output file appears at once, or
    /// none does. Returns notes for the report (what was dropped, extra files written).
    @discardableResult
    public static func write(_ graph: TensorGraph, to path: String, options: WriteOptions = WriteOptions()) throws -> [String] {
        let format = try outputFormat(for: path, shardSize: options.shardSize)
        WriteProgress.begin(total: graph.byteCount + (graph.optimizer?.tensors.reduce(0) { $0 + $1.data.byteCount } ?? 0), task: "writing \(path)")
        let outputs = OutputSet(allowOverwrite: options.force, protecting: graph.sourceFiles, root: options.root)
        try outputs.claim(path)
        let notes: [String]
        switch format {
        case .safetensors:
            notes = try SafetensorsWriter.write(graph, to: path, outputs: outputs)
        case .shardedSafetensors:
            notes = try SafetensorsWriter.writeSharded(graph, to: path, maxShardBytes: options.shardSize ?? 5_000_000_000, outputs: outputs)
        case .kerasLegacyH5:
            notes = try KerasH5Writer.writeLegacy(graph, to: try outputs.create(path))
        case .kerasWeightsH5:
            notes = try KerasH5Writer.writeKeras3Weights(graph, to: try outputs.create(path))
        case .kerasArchive:
            notes = try KerasArchive.write(graph, to: try outputs.create(path))
        case .pytorch:
            throw WSurgeryError.unknownFormat(path: path, reason: "PyTorch checkpoints are read only")
        }
        // Read back before anything gets its name: an exit 0 means the output holds what was meant.
        try OutputCheck.verify(graph, format: format, outputs: outputs, path: path)
        try outputs.commit()
        return notes
    }
}
