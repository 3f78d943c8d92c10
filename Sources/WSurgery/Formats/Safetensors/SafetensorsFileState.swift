/// What a safetensors file records besides its tensors: the `__metadata__` entries this tool does not
/// interpret, and the extra keys of a sharded checkpoint's index `metadata`.
public struct SafetensorsFileState: FileState {
    /// `__metadata__` entries, in order (nil: the file had no `__metadata__`).
    public var metadata: [(String, String)]?
    /// Extra keys of a sharded checkpoint's index `metadata` (besides `total_size`).
    public var indexMetadata: [(String, JSONValue)]?

    /// Metadata as read.
    public init(metadata: [(String, String)]?, indexMetadata: [(String, JSONValue)]? = nil) {
        self.metadata = metadata
        self.indexMetadata = indexMetadata
    }

    /// `metadata: key=value, ...`, long values shortened.
    public var summaryLines: [String] {
        guard let metadata, !metadata.isEmpty else { return [] }
        return ["metadata: " + metadata.map { "\($0.0)=\($0.1.count > 60 ? String($0.1.prefix(57)) + "..." : $0.1)" }.joined(separator: ", ")]
    }

    /// The entries, and the index's extra keys.
    public var summaryJSON: [(String, JSONValue)] {
        var result: [(String, JSONValue)] = []
        if let metadata { result.append(("safetensors", .object(metadata.map { ($0.0, .string($0.1)) }))) }
        if let indexMetadata, !indexMetadata.isEmpty { result.append(("index", .object(indexMetadata))) }
        return result
    }
}

/// The `__metadata__` keys this tool reads and writes, defined once for the safetensors reader and writer.
enum SafetensorsMetadataKey {
    /// A Keras model's config, so a Keras model survives a trip through safetensors.
    static let kerasModelConfig = "keras_model_config"
    /// `KerasSavedBy.version`.
    static let kerasVersion = "keras_version"
    /// `KerasSavedBy.backend`.
    static let kerasBackend = "keras_backend"
    /// `KerasSavedBy.trainingConfig`.
    static let kerasTrainingConfig = "keras_training_config"
    /// The Keras config of a PyTorch-layout state dict made from a Keras model (`originalArchitecture`).
    static let sourceKerasModelConfig = "source_keras_model_config"
    /// The framework convention (`pt`), as Hugging Face writes it.
    static let format = "format"
    /// The keys of a Keras model stored whole.
    static let kerasModel = [kerasModelConfig, kerasVersion, kerasBackend, kerasTrainingConfig]
}
