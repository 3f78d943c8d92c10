/// The Keras file flavour a graph was read from; decides defaults when it is written back.
public enum KerasFlavor: String, Sendable {
    /// A legacy `.h5` with `model_config` and `model_weights`.
    case legacyFullModel = "legacy-full-model"
    /// A legacy `.h5` with `layer_names` at the root.
    case legacyWeightsOnly = "legacy-weights-only"
    /// A Keras 3 `.weights.h5`.
    case keras3Weights = "keras3-weights"
    /// The weights inside a Keras 3 `.keras` archive.
    case kerasArchive = "keras-archive"
}

/// What the Keras HDF5 reader records about a file for the HDF5 writers: its flavour, the Keras 3 model's
/// name and whether it had a `top_level_model_weights` group.
public struct KerasH5FileState: FileState {
    /// The flavour read.
    public var kerasFlavor: KerasFlavor
    /// The Keras 3 model's own `vars` group name attribute (the model name).
    public var keras3ModelName: String?
    /// Keras 3 legacy files have a `top_level_model_weights` group outside `layer_names`.
    public var topLevelWeights = false

    /// Facts about a Keras file of this flavour.
    public init(kerasFlavor: KerasFlavor) { self.kerasFlavor = kerasFlavor }

    /// A PyTorch-layout graph is no Keras file any more.
    public func after(_ change: GraphChange) -> (any FileState)? { change == .layout ? nil : self }
    /// The flavour's name.
    public var flavor: String? { kerasFlavor.rawValue }
    /// Nothing beyond the flavour.
    public var summaryLines: [String] { [] }
    /// The flavour.
    public var summaryJSON: [(String, JSONValue)] { [("keras_flavor", .string(kerasFlavor.rawValue))] }
}

/// The HDF5 dataset a tensor was read from, so an HDF5 writer can copy it without decoding, and its
/// position within its Keras legacy weight group (Keras lists a nested model's weights trainable-first,
/// so a group's order is not the order of its layers' tensors).
public struct HDF5TensorOrigin: TensorOrigin, @unchecked Sendable {
    /// The dataset holding the bytes as read (nil once a pass changed them).
    let dataset: (file: HDF5File, path: String)?
    /// Position within its legacy weight group, when read from one.
    let legacyIndex: Int?

    /// New values keep the tensor's place in its weight group, not its dataset.
    public func afterNewValues() -> (any TensorOrigin)? {
        legacyIndex.map { HDF5TensorOrigin(dataset: nil, legacyIndex: $0) }
    }
}

/// Where a layer's weights live in the Keras weight files, kept so a Keras file is written back the way
/// Keras reads it.
public struct KerasWeightPlacement: LayerOrigin, Equatable {
    /// Legacy HDF5: the `layer_names` entry whose group holds the weights (the enclosing model for a layer
    /// of a nested model).
    public var legacyGroup: String?
    /// Keras 3 `.weights.h5`: the saveable's path, e.g. `layers/conv2d` or `layers/functional/layers/dense`.
    public var saveablePath: String?

    /// Keras 3: the sublayers of a composite layer (`KerasComposites`) as read, with the ones holding no
    /// variables (an attention layer's softmax and dropout), so they are written back as they were.
    public var sublayers: [KerasSublayer]

    /// The group `top_level_model_weights` of a Keras 3 legacy file holds the model's own variables.
    static let topLevelGroup = "top_level_model_weights"

    /// A placement as read.
    public init(legacyGroup: String? = nil, saveablePath: String? = nil, sublayers: [KerasSublayer] = []) {
        self.legacyGroup = legacyGroup
        self.saveablePath = saveablePath
        self.sublayers = sublayers
    }

    /// Keras 3 names saveables by class and position, so a changed layer list re-derives the paths (a
    /// composite's sublayers stay where they are under it); the legacy groups hold. Nothing holds after a
    /// layout change.
    public func after(_ change: GraphChange) -> (any LayerOrigin)? {
        switch change {
        case .layerList:
            return saveablePath == nil ? self : KerasWeightPlacement(legacyGroup: legacyGroup, sublayers: sublayers)
        case .layout: return nil
        }
    }
}

/// A sublayer of a composite Keras layer: the names in its variables' paths (`forward_lstm`,
/// `lstm_cell`) and the attribute groups holding it under the layer's saveable (`forward_layer`, `cell`).
public struct KerasSublayer: Equatable, Sendable {
    /// The sublayer names, outermost first.
    public var chain: [String]
    /// The attribute groups, outermost first (as many as `chain`).
    public var groups: [String]
}

/// Keras optimizer state: a legacy `optimizer_weights` group with `weight_names`, or Keras 3's
/// `optimizer/vars/N` with the optimizer's name as an attribute.
public enum KerasOptimizerLayout: OptimizerLayout, Equatable {
    /// Legacy HDF5 `optimizer_weights`.
    case legacyH5
    /// Keras 3 `optimizer/vars`, named.
    case keras3(name: String?)

    /// `legacyH5` or `keras3`.
    public var label: String {
        switch self {
        case .legacyH5: return "legacyH5"
        case .keras3: return "keras3"
        }
    }
}

extension TensorGraph {
    /// The Keras placement of each layer, as the HDF5 reader recorded it.
    func kerasPlacement(_ layer: Layer) -> KerasWeightPlacement? { layer.origin as? KerasWeightPlacement }
}

/// The names of the attributes and groups of Keras HDF5 files, defined once for the reader and the writers.
enum KerasH5Key {
    /// Root attribute: the Keras version that wrote the file.
    static let kerasVersion = "keras_version"
    /// Root attribute: the Keras backend.
    static let backend = "backend"
    /// Root attribute: the model config (JSON).
    static let modelConfig = "model_config"
    /// Root attribute: the training config (JSON).
    static let trainingConfig = "training_config"
    /// Attribute listing the weight groups of a legacy file, in order.
    static let layerNames = "layer_names"
    /// Attribute listing a weight group's datasets, in order.
    static let weightNames = "weight_names"
    /// The group holding a legacy full model's weights.
    static let modelWeights = "model_weights"
    /// The group holding a legacy file's optimizer state.
    static let optimizerWeights = "optimizer_weights"
}
