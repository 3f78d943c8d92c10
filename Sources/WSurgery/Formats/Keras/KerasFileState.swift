/// The Keras version, backend and training config a Keras file records. Every format that can hold a
/// Keras model keeps them (HDF5 root attributes, `.keras` metadata, safetensors `__metadata__`).
public struct KerasSavedBy: FileState {
    /// `keras_version`.
    public var version: String?
    /// `backend`.
    public var backend: String?
    /// `training_config` (JSON text).
    public var trainingConfig: String?

    /// Facts as read.
    public init(version: String? = nil, backend: String? = nil, trainingConfig: String? = nil) {
        self.version = version
        self.backend = backend
        self.trainingConfig = trainingConfig
    }

    /// A PyTorch-layout graph is no Keras model any more.
    public func after(_ change: GraphChange) -> (any FileState)? { change == .layout ? nil : self }

    /// `keras_version: 3.15.1, backend: jax`; a `.keras` archive's metadata.json records no backend.
    public var summaryLines: [String] { version.map { ["keras_version: \($0)" + (backend.map { ", backend: \($0)" } ?? "")] } ?? [] }

    /// Version, backend, and whether a training config is present.
    public var summaryJSON: [(String, JSONValue)] {
        var result: [(String, JSONValue)] = []
        if let version { result.append(("keras_version", .string(version))) }
        if let backend { result.append(("backend", .string(backend))) }
        if trainingConfig != nil { result.append(("training_config", .bool(true))) }
        return result
    }
}

/// The `metadata.json` of a `.keras` archive, written back as it was.
public struct KerasArchiveState: FileState {
    /// The document read.
    public var metadata: ConfigDocument

    /// A state for `metadata`.
    public init(metadata: ConfigDocument) { self.metadata = metadata }

    /// A PyTorch-layout graph is no Keras model any more.
    public func after(_ change: GraphChange) -> (any FileState)? { change == .layout ? nil : self }
    /// Nothing shown.
    public var summaryLines: [String] { [] }
    /// Nothing shown.
    public var summaryJSON: [(String, JSONValue)] { [] }
}
