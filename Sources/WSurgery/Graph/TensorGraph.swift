/// One named tensor of a layer.
public struct Tensor: Sendable {
    /// The tensor's name in the checkpoint (`conv1.weight`, `conv1/kernel:0`, `conv1/kernel`).
    public var name: String
    /// The element type.
    public var dtype: DType
    /// The dimensions, outermost first (C order).
    public var shape: [Int]
    /// The axis convention of the values (where a kernel's channel axes are).
    public var layout: Layout
    /// The bytes, read lazily.
    public var data: any TensorSource
    /// What the reader recorded about where the tensor came from, for the writer of the same format
    /// (see `TensorOrigin`). A pass that changes the tensor's values or name clears it.
    public var origin: (any TensorOrigin)?

    /// A tensor; `origin` is for readers.
    public init(name: String, dtype: DType, shape: [Int], layout: Layout, data: any TensorSource, origin: (any TensorOrigin)? = nil) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.layout = layout
        self.data = data
        self.origin = origin
    }

    /// The number of elements (1 for a scalar).
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A layer: its name, kind, tensors in the format's order and the layers feeding it.
public struct Layer: Sendable {
    /// The layer's name (a Keras layer name, or a state dict's module path).
    public var name: String
    /// What kind of layer it is, from its class or its tensors.
    public var kind: LayerKind
    /// The layer's class name when the architecture records it (`Conv2D`).
    public var className: String?
    /// The layer's tensors, in the order its framework creates them.
    public var tensors: [Tensor]
    /// Names of the layers whose outputs feed this one, where the architecture records them.
    public var inbound: [String]
    /// What the reader recorded about where the layer's weights live in the file (see `LayerOrigin`).
    public var origin: (any LayerOrigin)?

    /// A layer; `origin` is for readers.
    public init(
        name: String, kind: LayerKind, className: String? = nil, tensors: [Tensor] = [], inbound: [String] = [], origin: (any LayerOrigin)? = nil
    ) {
        self.name = name
        self.kind = kind
        self.className = className
        self.tensors = tensors
        self.inbound = inbound
        self.origin = origin
    }

    /// Elements of the layer's learned parameters (what `torch.nn.Module.parameters()` and Keras's
    /// trainable count include).
    public var parameterCount: Int { tensors.filter { !$0.isBuffer }.reduce(0) { $0 + $1.elementCount } }
    /// Elements of the layer's buffers: running statistics and counters.
    public var bufferCount: Int { tensors.filter(\.isBuffer).reduce(0) { $0 + $1.elementCount } }
}

extension Tensor {
    /// Whether the tensor is state rather than a learned parameter: normalisation running statistics and
    /// batch counters (PyTorch registers them as buffers, Keras as non-trainable weights).
    public var isBuffer: Bool {
        ["running_mean", "running_var", "num_batches_tracked", "moving_mean", "moving_variance"].contains(StateDictGrouping.localName(name))
    }
}

/// Optimizer state stored beside the weights. Only the format that read it knows how to write it back
/// (its `layout`); any surgery makes it stale.
public struct OptimizerState: Sendable {
    /// How the state is laid out in the file it came from.
    public var layout: any OptimizerLayout
    /// The optimizer's variables.
    public var tensors: [Tensor]

    /// State as a reader found it.
    public init(layout: any OptimizerLayout, tensors: [Tensor]) {
        self.layout = layout
        self.tensors = tensors
    }
}

/// The file format of a checkpoint.
public enum CheckpointFormat: String, Sendable, CaseIterable {
    /// One `.safetensors` file.
    case safetensors
    /// `*.safetensors` shards and their `*.safetensors.index.json`.
    case shardedSafetensors = "sharded-safetensors"
    /// A legacy Keras HDF5 file (full model or weights only).
    case kerasLegacyH5 = "keras-legacy-h5"
    /// A Keras 3 `.weights.h5`.
    case kerasWeightsH5 = "keras-weights-h5"
    /// A Keras 3 `.keras` archive.
    case kerasArchive = "keras"
    /// A `torch.save` file (`.pth`, `.pt`, `.bin`, `.ckpt`), zip or legacy; read only.
    case pytorch
}

/// A checkpoint as a graph of named tensors: every reader produces one, every pass maps one to another,
/// every writer consumes one. Nothing in it is specific to a file format: what a format needs to write a
/// file back travels in opaque values its reader made (`TensorOrigin`, `LayerOrigin`, `FileState`,
/// `OptimizerLayout`).
public struct TensorGraph: Sendable {
    /// Layers in model order, including layers without weights when the format lists them.
    public var layers: [Layer]
    /// What the file (or its directory) records about the model: a Keras config, a Hugging Face config.json.
    public var architecture: Architecture?
    /// The architecture the tensors were converted away from: a PyTorch-layout state dict made from a Keras
    /// model keeps that model here, so converting back restores it. Formats with a place for it store it.
    public var originalArchitecture: Architecture?
    /// The layout a pass declared for the whole checkpoint (`convert` to another layout); writers record it
    /// where their format has a place for it.
    public var declaredLayout: Layout?
    /// Whether `layers` is in the model's order (Keras files list layers in model order; a state dict's
    /// order is whatever its writer chose: safetensors sorts by dtype and name).
    public var layersInModelOrder: Bool
    /// What earlier wsurgery runs did to make the file (see `Provenance`).
    public var provenance: Provenance?
    /// File-level facts each format keeps for writing the file back.
    public var fileStates: FileStates
    /// Optimizer state stored beside the weights.
    public var optimizer: OptimizerState?
    /// The format and path the graph was read from.
    public var sourceFormat: CheckpointFormat
    /// The path the graph was read from (the index of a sharded checkpoint).
    public var sourcePath: String
    /// Every input file the graph reads from (to refuse writing over one of them).
    public var sourceFiles: [InputFile]
    /// The input digest the newest provenance entry waits for (computed while the output is written).
    public var pendingDigest: InputDigest?
    /// What the reader noted for the report (the entry a training checkpoint keeps its weights under,
    /// globals a pickle named that were not called).
    public var readerNotes: [String] = []

    /// A graph as a reader makes it.
    public init(
        layers: [Layer], architecture: Architecture? = nil, layersInModelOrder: Bool = false, sourceFormat: CheckpointFormat, sourcePath: String,
        sourceFiles: [InputFile]
    ) {
        self.layers = layers
        self.architecture = architecture
        self.layersInModelOrder = layersInModelOrder
        self.fileStates = FileStates()
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

    /// Whether the format recorded the edges between layers.
    public var hasEdges: Bool { layers.contains { !$0.inbound.isEmpty } }

    /// Elements of every learned parameter (buffers excluded).
    public var parameterCount: Int { layers.reduce(0) { $0 + $1.parameterCount } }
    /// Elements of every buffer (running statistics, counters).
    public var bufferCount: Int { layers.reduce(0) { $0 + $1.bufferCount } }
    /// Total bytes over every tensor.
    public var byteCount: UInt64 { tensors.reduce(0) { $0 + $1.data.byteCount } }

    /// Tells what the readers recorded that the graph changed this way; each format's state keeps what
    /// still holds after it.
    public mutating func recordChange(_ change: GraphChange) {
        fileStates.apply(change)
        for l in layers.indices {
            layers[l].origin = layers[l].origin?.after(change)
        }
    }
}
