/// A feature shape, batch axis first; nil marks a size the model leaves open (the batch, or an input built
/// as `(None, None, 3)`).
public typealias FeatureShape = [Int?]

/// What a model's architecture says about the model and how it follows an edit of the weights. Passes
/// decide what to do to the tensors and ask the editor of the graph's architecture (`TensorGraph.editor`)
/// what that means for the rest of the model: each dialect (a Keras model config, a Hugging Face
/// `config.json`, a bare state dict) answers its own way. A new model family is a new editor or a change
/// inside one, never a branch inside a pass.
public protocol ArchitectureEditor: Sendable {
    /// The padding a convolution applies (`same`, `valid`), when the architecture records it.
    func padding(ofConvolution layer: String) -> String?

    /// The layers that prepare the input channel by channel before the first convolution `conv`
    /// (normalisation, rescaling), in input order, with their values.
    func inputPreprocessing(before conv: String, in graph: TensorGraph) throws -> [InputPreprocessing]

    /// The architecture after the convolutions `convolutions` (the first ones, reading the input) were
    /// given `channels` input channels, and the input preprocessing the new values in `preprocessing`.
    func settingInputChannels(_ channels: Int, convolutions: [String], preprocessing: [InputPreprocessing], in graph: TensorGraph) throws
        -> ArchitectureEdit

    /// The architecture after the classifier `heads` (with their old class counts) were given `classes`
    /// outputs; old class `keep[i]` became class i.
    func settingClasses(_ classes: Int, heads: [(layer: String, oldClasses: Int)], keep: [Int], in graph: TensorGraph) throws -> ArchitectureEdit

    /// The architecture at input size `height` x `width`, and the weights that depend on the size.
    func settingInputSize(height: Int, width: Int, in graph: TensorGraph) throws -> InputSizeEdit

    /// The architecture without the layers `selection` names, and the weights that no longer fit.
    func removingLayers(_ selection: LayerSelection, in graph: TensorGraph) throws -> LayerRemovalEdit

    /// The architecture after the Dense/Linear `layer` was given `units` units, and the layers reading it.
    func resizingUnits(of layer: String, to units: Int, in graph: TensorGraph) throws -> UnitResizeEdit

    /// Throws when a tensor of `graph` does not fit its architecture; `before` is the graph before the
    /// edit (a layer of a kind without shape rules is refused only when its input changed).
    func checkWeights(of graph: TensorGraph, before: TensorGraph) throws

    /// The last check before an edited graph is written: throws, naming the layer, when the architecture
    /// contradicts a tensor or itself (a kernel of another shape than its input needs, a per-channel
    /// constant for another channel count), so no file is written that its framework cannot load and run.
    func checkConsistency(of graph: TensorGraph) throws
}

/// An edited architecture and what the report should say about it.
public struct ArchitectureEdit: Sendable {
    /// The new architecture (nil: the graph records none).
    public var architecture: Architecture?
    /// What changed in it (`Keras config: input channels set to 1 in image.batch_shape`).
    public var notes: [String]

    /// An edit.
    public init(architecture: Architecture?, notes: [String] = []) {
        self.architecture = architecture
        self.notes = notes
    }
}

/// A layer that prepares the input channel by channel: `y_c = scale_c * x_c + shift_c`, as a per-channel
/// normalisation `(x - mean_c) / sqrt(variance_c)` or a rescaling `x * scale + offset`. A value list of one
/// element applies to every channel.
public struct InputPreprocessing: Sendable, Equatable {
    /// What the layer computes.
    public enum Statistics: Sendable, Equatable {
        /// `(x - mean) / max(sqrt(variance), epsilon)`.
        case normalization(mean: [Double], variance: [Double])
        /// `x * scale + offset`.
        case rescaling(scale: [Double], offset: [Double])
    }

    /// Where the values live.
    public enum Storage: Sendable, Equatable {
        /// In the layer's config.
        case config
        /// In the layer's tensors (indices of the mean and variance).
        case weights(mean: Int, variance: Int)
        /// Applied before the model by the image processor its folder ships (`preprocessor_config.json`'s
        /// `image_mean`/`image_std`, timm's `pretrained_cfg` mean/std): `layer` names that file. Folding
        /// leaves the processor the channel mean of its values rather than the identity, so a pipeline
        /// built from them still matches.
        case processor
    }

    /// The layer.
    public var layer: String
    /// Its values.
    public var statistics: Statistics
    /// Where they live.
    public var storage: Storage

    /// A preprocessing layer.
    public init(layer: String, statistics: Statistics, storage: Storage) {
        self.layer = layer
        self.statistics = statistics
        self.storage = storage
    }

    /// The smallest divisor of a normalisation, as Keras uses (`backend.epsilon()`).
    public static let epsilon = 1e-7

    /// The number of channels its values give (1 when one value applies to all).
    public var channels: Int {
        switch statistics {
        case .normalization(let mean, let variance): return max(mean.count, variance.count)
        case .rescaling(let scale, let offset): return max(scale.count, offset.count)
        }
    }

    /// `(scale_c, shift_c)` of channel `c`.
    public func affine(_ c: Int) -> (scale: Double, shift: Double) {
        func at(_ list: [Double]) -> Double { list.count == 1 ? list[0] : list[c] }
        switch statistics {
        case .normalization(let mean, let variance):
            let scale = 1 / max(at(variance).squareRoot(), Self.epsilon)
            return (scale, -at(mean) * scale)
        case .rescaling(let scale, let offset): return (at(scale), at(offset))
        }
    }

    /// Whether every channel is treated alike.
    public func isUniform(channels: Int) -> Bool { (0..<channels).allSatisfy { affine($0) == affine(0) } }

    /// The same layer with each value list mapped by `transform`.
    public func mapping(_ transform: ([Double]) -> [Double]) -> InputPreprocessing {
        var copy = self
        switch statistics {
        case .normalization(let mean, let variance): copy.statistics = .normalization(mean: transform(mean), variance: transform(variance))
        case .rescaling(let scale, let offset): copy.statistics = .rescaling(scale: transform(scale), offset: transform(offset))
        }
        return copy
    }

    /// One channel's worth of the values: the mean over channels of the mean and of the standard
    /// deviation (of the scale and offset).
    public var channelMean: InputPreprocessing {
        func average(_ list: [Double]) -> [Double] { [list.reduce(0, +) / Double(max(list.count, 1))] }
        var copy = self
        switch statistics {
        case .normalization(let mean, let variance):
            let std = average(variance.map { $0.squareRoot() })[0]
            copy.statistics = .normalization(mean: average(mean), variance: [std * std])
        case .rescaling(let scale, let offset): copy.statistics = .rescaling(scale: average(scale), offset: average(offset))
        }
        return copy
    }

    /// What undoes this one-channel step: x = std * y + mean (x = (y - offset) / scale).
    public var inverse: InputPreprocessing {
        var copy = self
        let (scale, shift) = affine(0)
        copy.statistics = .rescaling(scale: [1 / scale], offset: [-shift / scale])
        return copy
    }

    /// The layer as the identity: mean 0 and variance 1, or scale 1 and offset 0.
    public var identity: InputPreprocessing {
        var copy = self
        switch statistics {
        case .normalization: copy.statistics = .normalization(mean: [0], variance: [1])
        case .rescaling: copy.statistics = .rescaling(scale: [1], offset: [0])
        }
        return copy
    }

    /// Config keys and the lists they take.
    var configFields: [(String, [Double])] {
        switch statistics {
        case .normalization(let mean, let variance): return [("mean", mean), ("variance", variance)]
        case .rescaling(let scale, let offset): return [("scale", scale), ("offset", offset)]
        }
    }
}

/// A tensor whose shape no longer matches what its layer's input needs after an edit.
public struct WeightMisfit: Sendable {
    /// The layer owning the tensor.
    public var layer: String
    /// The tensor's index in the layer.
    public var index: Int
    /// The tensor as it is.
    public var tensor: Tensor
    /// The shape it needs (nil: a size the architecture leaves open).
    public var expected: [Int?]
    /// The layer's new input shape.
    public var input: FeatureShape

    /// A misfit.
    public init(layer: String, index: Int, tensor: Tensor, expected: [Int?], input: FeatureShape) {
        self.layer = layer
        self.index = index
        self.tensor = tensor
        self.expected = expected
        self.input = input
    }

    /// The kernel's fan-in axis: PyTorch (out, in) -> 1, Keras (in, out) -> 0.
    public var fanInAxis: Int { tensor.layout == .torch ? 1 : 0 }

    /// `'fc/kernel' is (1568, 10) but its input (None, 2048) needs (2048, 10)`.
    public var description: String {
        "'\(tensor.name)' is \(ShapeText.python(tensor.shape)) but its input \(ShapeText.python(input)) needs \(ShapeText.python(expected))"
    }
}

/// A Dense kernel whose fan-in is a flattened feature map, so it follows the input size.
public struct FanInChange: Sendable {
    /// The kernel that no longer fits.
    public var misfit: WeightMisfit
    /// The (height, width, channels) map it read and the (height, width) it reads now, when the kernel
    /// reads a Flatten of a channels-last map right before it; else why not.
    public var grid: Result<FlattenedGrid, ArchitectureProblem>
}

/// The spatial grid a Dense kernel's rows stand for.
public struct FlattenedGrid: Sendable, Equatable {
    /// Height, width and channels before the edit.
    public var old: (height: Int, width: Int, channels: Int)
    /// Height and width after it (same channels).
    public var new: (height: Int, width: Int)

    /// Equal grids.
    public static func == (a: FlattenedGrid, b: FlattenedGrid) -> Bool { a.old == b.old && a.new == b.new }
}

/// Why an architecture cannot answer a question (shown to the user as the reason).
public struct ArchitectureProblem: Error, Sendable {
    /// The reason.
    public var reason: String
}

/// An absolute position embedding that follows the input size (ViT `pos_embed`).
public struct PositionEmbeddingChange: Sendable {
    /// The layer owning it.
    public var layer: String
    /// The tensor's index in the layer.
    public var index: Int
    /// The patch grid it was trained at.
    public var oldGrid: (height: Int, width: Int)
    /// The patch grid at the new size.
    public var newGrid: (height: Int, width: Int)
    /// Tokens before the grid (class, distillation) that are kept as they are.
    public var prefixTokens: Int
}

/// One layer's output shape before and after an edit.
public struct LayerOutputShapes: Sendable, Equatable {
    /// The layer.
    public var layer: String
    /// Its output shape before.
    public var old: FeatureShape?
    /// Its output shape after.
    public var new: FeatureShape?
}

/// What `settingInputSize` found.
public struct InputSizeEdit: Sendable {
    /// The architecture at the new size.
    public var edit: ArchitectureEdit
    /// Kernels whose fan-in changes (a Dense after Flatten).
    public var fanInChanges: [FanInChange] = []
    /// Position embeddings to resample.
    public var positionEmbeddings: [PositionEmbeddingChange] = []
    /// Linear layers of an edgeless checkpoint that read a flattened map whose size at the new input
    /// the file does not record (`set-input-shape` asks for it with `flattened-map`).
    public var flattenedMaps: [FlattenedMap] = []
    /// Every layer's output shape before and after, when the architecture records the layers.
    public var layerShapes: [LayerOutputShapes] = []
    /// The global pooling layers, for the note on a fully convolutional model.
    public var globalPooling: [String] = []
}

/// Which layers `removingLayers` removes.
public enum LayerSelection: Sendable, Equatable {
    /// These layers.
    case named([String])
    /// The classifier stack (like `include_top=False`); unless `keepInputShape`, the input's height and
    /// width become free where the rest takes any size, as `include_top=False` builds it.
    case top(keepInputShape: Bool)
}

/// What `removingLayers` found.
public struct LayerRemovalEdit: Sendable {
    /// The architecture without the layers.
    public var edit: ArchitectureEdit
    /// The layers to remove.
    public var removed: [String]
    /// Tensors of the remaining layers that no longer fit.
    public var misfits: [WeightMisfit]
}

/// What `resizingUnits` found.
public struct UnitResizeEdit: Sendable {
    /// The architecture with the new unit count.
    public var edit: ArchitectureEdit
    /// The layers with weights that read the resized layer (nil: the architecture records no edges).
    public var readers: [String]?
}

extension TensorGraph {
    /// The editor for this graph's architecture: its Keras config, its Hugging Face config.json, or the
    /// names and shapes of a bare state dict.
    public var editor: any ArchitectureEditor {
        switch architecture {
        case .keras(let document)?: return KerasArchitecture(document: document)
        case .huggingFace(let document, let preprocessor)?: return HuggingFaceArchitecture(document: document, preprocessor: preprocessor)
        case nil: return StateDictArchitecture()
        }
    }
}
