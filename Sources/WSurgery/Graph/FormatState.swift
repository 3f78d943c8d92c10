/// A change to a graph that may invalidate what a reader recorded for its writer.
public enum GraphChange: Sendable, Equatable {
    /// Layers were removed or added: positions that depend on the layer list no longer hold.
    case layerList
    /// The tensors moved to another framework's names and axes (a layout conversion).
    case layout
}

/// What a reader records about where one tensor came from, so the writer of the same format can write it
/// back without decoding it (an HDF5 dataset to copy, its position in a weight group). Defined and read
/// only by the format that made it; the graph carries it unopened.
public protocol TensorOrigin: Sendable {
    /// What still holds once a pass gave the tensor new values (its place, not its bytes); nil when nothing does.
    func afterNewValues() -> (any TensorOrigin)?
}

/// What a reader records about where one layer's weights live in the file (a Keras weight group, a
/// saveable path), for the writer of the same format. Defined and read only by that format.
public protocol LayerOrigin: Sendable {
    /// What still holds after `change`; nil when nothing does.
    func after(_ change: GraphChange) -> (any LayerOrigin)?
}

/// File-level facts a format keeps for writing the file back (metadata entries, the file's flavour).
/// Defined and read only by the formats that use it; `inspect` shows its summary.
public protocol FileState: Sendable {
    /// What still holds after `change`; nil when nothing does.
    func after(_ change: GraphChange) -> (any FileState)?
    /// A word for the file's flavour, shown after the format name (`legacy-full-model`), when it has one.
    var flavor: String? { get }
    /// Lines for `inspect`'s header.
    var summaryLines: [String] { get }
    /// Entries for the JSON inspection report's `metadata` object.
    var summaryJSON: [(String, JSONValue)] { get }
}

extension FileState {
    /// Most file facts survive any change; formats override what does not.
    public func after(_ change: GraphChange) -> (any FileState)? { self }
    /// No flavour by default.
    public var flavor: String? { nil }
}

/// How optimizer state is laid out in the file it came from; only that format writes it back.
public protocol OptimizerLayout: Sendable {
    /// A word for reports (`legacyH5`).
    var label: String { get }
}

/// The `FileState` values of a graph, at most one of each type, in the order they were added.
public struct FileStates: Sendable {
    private var states: [any FileState] = []

    /// No states.
    public init() {}

    /// The state of type `T`, when a reader recorded one.
    public subscript<T: FileState>(_ type: T.Type) -> T? {
        get { states.lazy.compactMap { $0 as? T }.first }
        set {
            if let i = states.firstIndex(where: { $0 is T }) {
                if let newValue { states[i] = newValue } else { states.remove(at: i) }
            } else if let newValue {
                states.append(newValue)
            }
        }
    }

    /// Every state, in the order added.
    public var all: [any FileState] { states }

    /// Keeps what holds after `change`.
    mutating func apply(_ change: GraphChange) {
        states = states.compactMap { $0.after(change) }
    }
}
