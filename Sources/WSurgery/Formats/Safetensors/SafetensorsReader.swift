import Foundation

/// Reads single-file and sharded safetensors checkpoints into a graph. Tensors stay in the file until
/// they are needed; a Hugging Face `config.json` beside the checkpoint becomes the architecture (with `preprocessor_config.json`), and a
/// Keras model config this tool stored in `__metadata__` comes back as the Keras architecture.
public enum SafetensorsReader {
    /// Reads one `.safetensors` file.
    public static func read(path: String) throws -> TensorGraph {
        let file = try InputFile(path: path)
        let header = try SafetensorsHeader.read(file)
        let tensors = header.entries.map { tensor(from: $0, header: header, file: file) }
        var graph = TensorGraph(layers: StateDictGrouping.layers(from: tensors), sourceFormat: .safetensors, sourcePath: path, sourceFiles: [file])
        try attachMetadata(header.metadata, to: &graph, path: path)
        try HuggingFaceFolder.attachConfig(beside: path, to: &graph)
        return graph
    }

    static func tensor(from entry: SafetensorsEntry, header: SafetensorsHeader, file: InputFile) -> Tensor {
        let region = FileRegion(file: file, offset: header.dataStart + entry.begin, length: entry.end - entry.begin)
        return Tensor(
            name: entry.name, dtype: entry.dtype, shape: entry.shape,
            layout: StateDictGrouping.layout(name: entry.name, shape: entry.shape),
            data: FileRegionSource(region: region))
    }

    /// Splits `__metadata__` into the keys this tool writes (a Keras model, the Keras config a
    /// PyTorch-layout file came from, the provenance record) and the rest, kept as `SafetensorsFileState`.
    static func attachMetadata(
        _ metadata: [(String, String)]?, indexMetadata: [(String, JSONValue)]? = nil, to graph: inout TensorGraph, path: String
    ) throws {
        typealias Key = SafetensorsMetadataKey
        func config(_ key: String, _ value: String) throws -> ConfigDocument {
            do { return try ConfigDocument(text: value) } catch {
                throw WSurgeryError.invalidConfig(path: path, reason: "__metadata__ \(key): \(error)")
            }
        }
        var rest: [(String, String)] = []
        var savedBy = KerasSavedBy()
        for (key, value) in metadata ?? [] {
            switch key {
            case Key.kerasModelConfig: graph.architecture = .keras(try config(key, value))
            case Key.sourceKerasModelConfig: graph.originalArchitecture = .keras(try config(key, value))
            case Key.kerasVersion: savedBy.version = value
            case Key.kerasBackend: savedBy.backend = value
            case Key.kerasTrainingConfig: savedBy.trainingConfig = value
            default:
                // A provenance record becomes the history; anything else under that key stays plain metadata.
                if key == Provenance.key, let history = Provenance(text: value) { graph.provenance = history } else { rest.append((key, value)) }
            }
        }
        if metadata != nil || indexMetadata != nil {
            graph.fileStates[SafetensorsFileState.self] = SafetensorsFileState(metadata: metadata.map { _ in rest }, indexMetadata: indexMetadata)
        }
        if savedBy.version != nil || savedBy.backend != nil || savedBy.trainingConfig != nil { graph.fileStates[KerasSavedBy.self] = savedBy }
        if case .keras(let config)? = graph.architecture {
            graph.layers = KerasConfig.arrange(graph.tensors, by: config.json)
            graph.layersInModelOrder = true
        }
    }

    /// Reads a sharded checkpoint from its `*.safetensors.index.json` or the directory holding one.
    public static func readSharded(path: String) throws -> TensorGraph {
        let indexPath = try ShardedSafetensors.indexPath(for: path)
        let indexFile = try InputFile(path: indexPath)
        let bytes = try indexFile.read(count: Int(indexFile.size), at: 0)
        let index: JSONValue
        do { index = try JSONParser.parse(bytes, rejectDuplicateKeys: true) } catch {
            throw WSurgeryError.invalidIndex(path: indexPath, reason: "\(error)")
        }
        guard let weightMap = index["weight_map"]?.objectValue else {
            throw WSurgeryError.invalidIndex(path: indexPath, reason: "no 'weight_map' object")
        }
        var shardOrder: [String] = []
        var expected: [String: String] = [:]
        for (tensor, file) in weightMap {
            guard let name = file.stringValue else {
                throw WSurgeryError.invalidIndex(path: indexPath, reason: "weight_map entry '\(tensor)' is not a file name")
            }
            if name.contains("/") || name == ".." || name.isEmpty {
                throw WSurgeryError.invalidIndex(path: indexPath, reason: "shard '\(name)' is not a plain file name in the index's directory")
            }
            if !shardOrder.contains(name) { shardOrder.append(name) }
            expected[tensor] = name
        }
        shardOrder.sort { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let directory = OutputFile.directory(of: indexPath)
        var files = [indexFile]
        var tensors: [Tensor] = []
        var seen = Set<String>()
        var shardMetadata: [(String, String)]?
        for shard in shardOrder {
            let shardPath = directory + "/" + shard
            let file = try InputFile(path: shardPath)
            files.append(file)
            let header = try SafetensorsHeader.read(file)
            if shardMetadata == nil { shardMetadata = header.metadata }
            for entry in header.entries {
                guard expected[entry.name] == shard else {
                    let reason = expected[entry.name].map { "the index places it in '\($0)'" } ?? "the index does not list it"
                    throw WSurgeryError.invalidIndex(path: indexPath, reason: "tensor '\(entry.name)' is in shard '\(shard)' but \(reason)")
                }
                if !seen.insert(entry.name).inserted {
                    throw WSurgeryError.duplicateTensor(path: shardPath, tensor: entry.name)
                }
                tensors.append(tensor(from: entry, header: header, file: file))
            }
        }
        if let missing = expected.keys.sorted().first(where: { !seen.contains($0) }) {
            throw WSurgeryError.invalidIndex(
                path: indexPath, reason: "tensor '\(missing)' is listed for shard '\(expected[missing]!)' but that shard does not hold it")
        }
        var graph = TensorGraph(
            layers: StateDictGrouping.layers(from: tensors), sourceFormat: .shardedSafetensors, sourcePath: indexPath, sourceFiles: files)
        try attachMetadata(
            shardMetadata, indexMetadata: (index["metadata"]?.objectValue ?? []).filter { $0.0 != "total_size" }, to: &graph, path: indexPath)
        try HuggingFaceFolder.attachConfig(beside: indexPath, to: &graph)
        return graph
    }
}
