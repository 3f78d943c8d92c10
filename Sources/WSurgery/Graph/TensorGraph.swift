/// One named tensor of a layer.
public struct Tensor: Sendable {
    /// The tensor's name in the checkpoint (`conv1.weight`, `conv1/kernel:0`, `conv1/kernel`).
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var layout: Layout
    /// The bytes, read lazily.
    public var data: any TensorSource
    /// Position within its Keras legacy weight group, when read from one. Keras lists a nested model's
    /// weights trainable-first, so a group's order is not the order of its layers' tensors.
    public var legacyIndex: Int?
    /// The HDF5 dataset the tensor was read from (readers of HDF5 set it; a pass that changes the tensor
    /// clears it). HDF5 writers copy such datasets whole.
    public var hdf5Origin: HDF5Origin?

    public init(name: String, dtype: DType, shape: [Int], layout: Layout, data: any TensorSource) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.layout = layout
        self.data = data
    }

    /// The number of elements (1 for a scalar).
    public var elementCount: Int { shape.reduce(1, *) }
}

/// Where a layer's weights live in the Keras weight files, kept so a Keras file is written back the way
/// Keras reads it.
public struct KerasPlacement: Sendable, Equatable {
    /// Legacy HDF5: the `layer_names` entry whose group holds the weights (the enclosing model for a layer
    /// of a nested model).
    public var legacyGroup: String?
    /// Keras 3 `.weights.h5`: the saveable's path, e.g. `layers/conv2d` or `layers/functional/layers/dense`.
    public var saveablePath: String?

    public init(legacyGroup: String? = nil, saveablePath: String? = nil) {
        self.legacyGroup = legacyGroup
        self.saveablePath = saveablePath
    }
}

/// A layer: its name, kind, tensors in the format's order and the layers feeding it.
public struct Layer: Sendable {
    public var name: String
    public var kind: LayerKind
    /// The Keras class name when the architecture records it.
    public var className: String?
    public var tensors: [Tensor]
    /// Names of the layers whose outputs feed this one, where the format records them.
    public var inbound: [String]
    public var keras: KerasPlacement?

    public init(name: String, kind: LayerKind, className: String? = nil, tensors: [Tensor] = [], inbound: [String] = [], keras: KerasPlacement? = nil) {
        self.name = name
        self.kind = kind
        self.className = className
        self.tensors = tensors
        self.inbound = inbound
        self.keras = keras
    }

    /// Total elements over the layer's tensors.
    public var parameterCount: Int { tensors.reduce(0) { $0 + $1.elementCount } }
}

/// A JSON document (a Keras model config, a Hugging Face config.json) with the text it was read from,
/// so an unchanged document is written back byte-for-byte.
public struct ConfigDocument: Sendable {
    public var json: JSONValue
    public let originalText: String?

    public init(json: JSONValue, originalText: String? = nil) {
        self.json = json
        self.originalText = originalText
    }

    /// Parses `text`; the error reason says where it is malformed.
    public init(text: String) throws(JSONParseError) {
        self.json = try JSONParser.parse(text)
        self.originalText = text
    }

    /// The document's text: the original when nothing changed, else serialised in `style`.
    public func text(style: JSONStyle) -> String {
        if let originalText, let parsed = try? JSONParser.parse(originalText), parsed == json { return originalText }
        return json.serialized(style)
    }
}

/// The model's architecture when the file (or its directory) records one.
public enum Architecture: Sendable {
    /// A Keras model config (`model_config` attribute, `config.json` inside `.keras`).
    case keras(ConfigDocument)
    /// A Hugging Face `config.json` found beside a safetensors checkpoint.
    case huggingFace(ConfigDocument)
}

/// The Keras file flavour a graph was read from; decides defaults when it is written back.
public enum KerasFlavor: String, Sendable {
    case legacyFullModel = "legacy-full-model"
    case legacyWeightsOnly = "legacy-weights-only"
    case keras3Weights = "keras3-weights"
    case kerasArchive = "keras-archive"
}

/// Optimizer state stored beside the weights. It is carried only into the same kind of file; any
/// surgery makes it stale.
public struct OptimizerState: Sendable {
    public enum Flavor: String, Sendable {
        /// Legacy HDF5 `optimizer_weights` group with `weight_names`.
        case legacyH5
        /// Keras 3 `optimizer/vars/N`.
        case keras3
    }
    public var flavor: Flavor
    /// Keras 3 records the optimizer's name as an attribute of `optimizer/vars`.
    public var name: String?
    public var tensors: [Tensor]

    public init(flavor: Flavor, name: String?, tensors: [Tensor]) {
        self.flavor = flavor
        self.name = name
        self.tensors = tensors
    }
}

/// File-level metadata carried from the input to the output.
public struct FileMetadata: Sendable {
    /// safetensors `__metadata__` entries, in order.
    public var safetensors: [(String, String)]?
    /// Extra keys of a sharded checkpoint's index `metadata` (besides `total_size`).
    public var shardIndex: [(String, JSONValue)]?
    /// Keras root attributes.
    public var kerasVersion: String?
    public var kerasBackend: String?
    public var trainingConfig: String?
    /// `metadata.json` of a `.keras` archive.
    public var kerasArchiveMetadata: ConfigDocument?
    /// The Keras 3 model's own `vars` group name attribute (the model name).
    public var keras3ModelName: String?
    public var kerasFlavor: KerasFlavor?
    /// Keras 3 legacy files have a `top_level_model_weights` group outside `layer_names`.
    public var kerasTopLevelWeights = false
    /// What earlier wsurgery runs did to make the file (see `Provenance`).
    public var provenance: Provenance?

    public init() {}
}

/// The file format of a checkpoint.
public enum CheckpointFormat: String, Sendable, CaseIterable {
    case safetensors
    case shardedSafetensors = "sharded-safetensors"
    case kerasLegacyH5 = "keras-legacy-h5"
    case kerasWeightsH5 = "keras-weights-h5"
    case kerasArchive = "keras"
}

/// A checkpoint as a graph of named tensors: every reader produces one, every pass maps one to another,
/// every writer consumes one.
public struct TensorGraph: Sendable {
    /// Layers in model order, including layers without weights when the format lists them.
    public var layers: [Layer]
    public var architecture: Architecture?
    public var metadata: FileMetadata
    public var optimizer: OptimizerState?
    /// The format and path the graph was read from.
    public var sourceFormat: CheckpointFormat
    public var sourcePath: String
    /// Every input file the graph reads from (to refuse writing over one of them).
    public var sourceFiles: [InputFile]

    public init(layers: [Layer], architecture: Architecture? = nil, metadata: FileMetadata = FileMetadata(), optimizer: OptimizerState? = nil, sourceFormat: CheckpointFormat, sourcePath: String, sourceFiles: [InputFile]) {
        self.layers = layers
        self.architecture = architecture
        self.metadata = metadata
        self.optimizer = optimizer
        self.sourceFormat = sourceFormat
        self.sourcePath = sourcePath
        self.sourceFiles = sourceFiles
    }

    /// Every tensor, in layer order.
    public var tensors: [Tensor] { layers.flatMap(\.tensors) }

    /// The layer with this name.
    public func layer(named name: String) -> Layer? { layers.first(where: { $0.name == name }) }

    /// For each layer name, the layers its output feeds (the recorded edges read forwards).
    public var consumers: [String: [String]] {
        var result: [String: [String]] = [:]
        for layer in layers { for source in layer.inbound { result[source, default: []].append(layer.name) } }
        return result
    }

    public var parameterCount: Int { layers.reduce(0) { $0 + $1.parameterCount } }
    public var byteCount: UInt64 { tensors.reduce(0) { $0 + $1.data.byteCount } }
}
