import Foundation

/// Hugging Face model folders: `config.json`, the weights (`model.safetensors`, sharded safetensors,
/// `pytorch_model.bin` or its shards), `preprocessor_config.json`, and other files (README, tokenizer)
/// that an output folder carries unchanged so `from_pretrained` finds everything it found before.
public enum HuggingFaceFolder {
    /// The model config's file name.
    public static let configName = "config.json"
    /// The image processor config's file name.
    public static let preprocessorName = "preprocessor_config.json"
    /// The index of sharded `pytorch_model.bin` weights.
    static let binIndexName = "pytorch_model.bin.index.json"

    /// The weights of a folder, in the order transformers looks for them: a safetensors index,
    /// `model.safetensors`, a `pytorch_model.bin` index, `pytorch_model.bin`, a single `*.safetensors`.
    /// Nil when it holds none of them.
    static func weights(in directory: String) -> (path: String, format: CheckpointFormat)? {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        if names.contains(where: { $0.hasSuffix(ShardedSafetensors.indexSuffix) }) { return (directory, .shardedSafetensors) }
        if names.contains("model.safetensors") { return (directory + "/model.safetensors", .safetensors) }
        if names.contains(binIndexName) { return (directory + "/" + binIndexName, .pytorch) }
        if names.contains("pytorch_model.bin") { return (directory + "/pytorch_model.bin", .pytorch) }
        let single = names.filter { $0.hasSuffix(".safetensors") }
        if single.count == 1 { return (directory + "/" + single[0], .safetensors) }
        return nil
    }

    /// Whether a file of a model folder holds weights (of any framework): an output folder gets new
    /// weights, never stale copies of the old ones.
    static func isWeightsFile(_ name: String) -> Bool {
        let suffixes = [".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".h5", ".keras", ".msgpack", ".onnx", ".gguf", ".index.json", ".pth.tar"]
        return suffixes.contains { name.hasSuffix($0) }
    }

    /// Reads the `config.json` (as the architecture, unless the weights recorded a Keras model) and the
    /// `preprocessor_config.json` beside `path`.
    static func attachConfig(beside path: String, to graph: inout TensorGraph) throws {
        let directory = OutputFile.directory(of: path)
        func document(_ name: String) throws -> ConfigDocument? {
            let file = directory + "/" + name
            guard FileManager.default.fileExists(atPath: file) else { return nil }
            let input = try InputFile(path: file)
            try Limits.current.checkConfig(bytes: input.size, path: file, what: name)
            let bytes = try input.read(count: Int(input.size), at: 0)
            guard let text = String(validating: bytes, as: UTF8.self) else { throw WSurgeryError.invalidConfig(path: file, reason: "not UTF-8") }
            do { return try ConfigDocument(text: text) } catch { throw WSurgeryError.invalidConfig(path: file, reason: "\(error)") }
        }
        guard graph.architecture == nil, let config = try document(configName) else { return }
        graph.architecture = .huggingFace(config, preprocessor: try document(preprocessorName))
    }

    /// Records the folder a graph was read from, for an output folder to carry its other files.
    static func recordFolder(_ directory: String, in graph: inout TensorGraph) {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        var files: [String] = []
        var skipped: [String] = []
        var links: [String] = []
        let read = Set(graph.sourceFiles.map { URL(fileURLWithPath: $0.path).lastPathComponent })
        for name in names where !name.hasPrefix(".") && name != configName && name != preprocessorName && !read.contains(name) {
            var info = stat()
            guard lstat(directory + "/" + name, &info) == 0 else { continue }
            // A symlink is never carried: its target may lie anywhere (`README.md -> /etc/passwd`), and
            // the output folder is what a user uploads.
            if (info.st_mode & S_IFMT) == S_IFLNK {
                links.append(name)
            } else if (info.st_mode & S_IFMT) != S_IFREG || isWeightsFile(name) {
                skipped.append(name)
            } else {
                files.append(name)
            }
        }
        graph.fileStates[HuggingFaceFolderState.self] = HuggingFaceFolderState(directory: directory, files: files, skipped: skipped, symlinks: links)
    }

    /// Writes `config.json` and `preprocessor_config.json` beside a weights output, and when the output is
    /// a folder made from a folder, that folder's other files, unchanged.
    static func writeFiles(_ graph: TensorGraph, besideOutput path: String, folderOutput: Bool, outputs: OutputSet, notes: inout [String]) throws {
        guard case .huggingFace(let config, let preprocessor)? = graph.architecture else { return }
        let directory = OutputFile.directory(of: path)
        func write(_ bytes: [UInt8], as name: String) throws {
            let target = directory + "/" + name
            if outputs.exists(target) {
                if outputs.existingBytes(target, limit: bytes.count) == bytes { return }
                if !outputs.allowOverwrite { throw WSurgeryError.outputExists(path: target) }
            }
            try outputs.create(target).write(bytes)
            notes.append("wrote \(target)")
        }
        try write(Array(config.text(style: .pretty).utf8), as: configName)
        if let preprocessor { try write(Array(preprocessor.text(style: .pretty).utf8), as: preprocessorName) }
        guard folderOutput, let folder = graph.fileStates[HuggingFaceFolderState.self] else { return }
        for name in folder.files {
            // Streamed (bounded memory), never through a symlink swapped in since the folder was read,
            // with the permissions of a new file; at most `carried-bytes` (a sparse 64 GiB file is refused).
            let sourcePath = folder.directory + "/" + name
            let source: InputFile
            do { source = try InputFile(path: sourcePath, followingSymlinks: false) } catch WSurgeryError.cannotOpen(_, let reason) {
                throw WSurgeryError.cannotOpen(path: sourcePath, reason: reason + " (a symlink is never carried into an output folder)")
            }
            try Limits.current.checkCarried(bytes: source.size, path: sourcePath)
            let target = directory + "/" + name
            // An identical copy already there (a re-run into the same folder) is kept, as for config.json.
            if source.size <= Limits.current.configBytes, let existing = outputs.existingBytes(target, limit: Int(source.size)),
                try existing == source.read(count: Int(source.size), at: 0)
            {
                continue
            }
            try outputs.create(target).write(from: FileRegionSource(region: FileRegion(file: source, offset: 0, length: source.size)))
            notes.append("wrote \(target)")
        }
        if !folder.skipped.isEmpty {
            notes.append("not copied from \(folder.directory) (weights or folders): " + folder.skipped.joined(separator: ", "))
        }
        if !folder.symlinks.isEmpty {
            notes.append("not copied from \(folder.directory) (symlinks are never carried): " + folder.symlinks.joined(separator: ", "))
        }
    }
}

/// The model folder a graph was read from and its files besides config, processor config and weights.
public struct HuggingFaceFolderState: FileState {
    /// The folder.
    public var directory: String
    /// Files an output folder carries unchanged (README, tokenizer, generation config).
    public var files: [String]
    /// Weights of other formats and subfolders, which are not carried.
    public var skipped: [String]
    /// Symlinks, which are never carried (nor followed).
    public var symlinks: [String] = []

    /// `folder: files...`.
    public var summaryLines: [String] { files.isEmpty ? [] : ["folder files: " + files.joined(separator: ", ")] }
    /// The folder's other files.
    public var summaryJSON: [(String, JSONValue)] { [("folder_files", .array(files.map { .string($0) }))] }
}
