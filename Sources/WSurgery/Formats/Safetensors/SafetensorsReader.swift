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
        var graph = TensorGraph(
            layers: StateDictOrder.recovered(StateDictGrouping.layers(from: tensors)), sourceFormat: .safetensors, sourcePath: path,
            sourceFiles: [file])
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
        let index = try ShardIndex(path: indexPath)
        var files = [index.file]
        var tensors: [Tensor] = []
        var seen = Set<String>()
        var shardMetadata: [(String, String)]?
        for shard in index.shards {
            let shardPath = index.path(of: shard)
            let file = try InputFile(path: shardPath)
            files.append(file)
            let header = try SafetensorsHeader.read(file)
            if shardMetadata == nil { shardMetadata = header.metadata }
            for entry in header.entries {
                try index.check(tensor: entry.name, inShard: shard)
                if !seen.insert(entry.name).inserted {
                    throw WSurgeryError.duplicateTensor(path: shardPath, tensor: entry.name)
                }
                tensors.append(tensor(from: entry, header: header, file: file))
            }
        }
        try index.checkComplete(found: seen)
        var graph = TensorGraph(
            layers: StateDictOrder.recovered(StateDictGrouping.layers(from: tensors)), sourceFormat: .shardedSafetensors, sourcePath: indexPath,
            sourceFiles: files)
        try attachMetadata(
            shardMetadata, indexMetadata: (index.json["metadata"]?.objectValue ?? []).filter { $0.0 != "total_size" }, to: &graph, path: indexPath)
        try HuggingFaceFolder.attachConfig(beside: indexPath, to: &graph)
        return graph
    }
}
