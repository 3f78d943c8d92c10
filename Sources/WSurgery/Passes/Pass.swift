/// A graph-to-graph transformation. Passes know nothing of files: a reader makes the graph, passes edit
/// it, a writer emits it.
public protocol GraphPass: Sendable {
    /// The command name (`collapse-channels`).
    var name: String { get }
    /// The options as the user gave them (or as defaults resolved them), for reports.
    var options: [(String, String)] { get }
    /// Rejects options that cannot work whatever the input; `Pipeline` calls it before reading any file.
    func validate() throws
    /// The edited graph and what changed. Expects options that passed `validate()`.
    func apply(to graph: TensorGraph) throws -> (TensorGraph, PassReport)
}

/// One tensor whose shape or values a pass changed.
public struct TensorChange: Sendable, Equatable {
    /// The layer owning the tensor.
    public var layer: String
    /// The tensor's name.
    public var tensor: String
    /// Its shape before; nil for a tensor the pass added (`[]` is a scalar).
    public var oldShape: [Int]?
    /// Its shape after; nil for a tensor the pass removed.
    public var newShape: [Int]?
    /// What was done (`summed over input channels`, `new (glorot-uniform, seed 0)`).
    public var action: String

    /// `added`, `removed` or `changed`.
    public var kind: String { oldShape == nil ? "added" : newShape == nil ? "removed" : "changed" }

    /// The tensor's name with its layer, once: `conv1/kernel` when the tensor's name already starts with
    /// its layer (`conv1/kernel`, `fc.weight`), else `layer/tensor`.
    public var qualifiedName: String {
        if tensor == layer || tensor.hasPrefix(layer + "/") || tensor.hasPrefix(layer + ".") || tensor.contains(" -> ") { return tensor }
        return layer + "/" + tensor
    }
}

/// One layer's output shape before and after an edit, and what happened to its weights.
public struct LayerShapeChange: Sendable, Equatable {
    /// The layer.
    public var layer: String
    /// Its output shape before.
    public var oldOutput: FeatureShape?
    /// Its output shape after.
    public var newOutput: FeatureShape?
    /// `unchanged`, `adapted` (its input channels, with `--channels`), `re-initialised`, `resampled`, `-` (no weights).
    public var weights: String
}

/// What a pass did: every tensor whose shape or values changed, and notes (architecture edits, dropped
/// optimizer state). Rendered as a table or as JSON.
public struct PassReport: Sendable {
    /// The pass's name.
    public var pass: String
    /// Its resolved options.
    public var options: [(String, String)]
    /// Every tensor changed.
    public var changes: [TensorChange] = []
    /// What else changed.
    public var notes: [String] = []

    /// The notes with their option mentions spelled as on the command line (`--keep-input-shape`).
    var spelledNotes: [String] { notes.map { OptionMention.render($0, { "--" + $0 }) } }
    /// Per layer, its output shape before and after and what happened to its weights (passes that
    /// change shapes).
    public var layerShapes: [LayerShapeChange] = []

    /// An empty report for `pass`.
    public init(pass: String, options: [(String, String)]) {
        self.pass = pass
        self.options = options
    }

    /// The report as JSON.
    public var json: JSONValue {
        .object([
            ("pass", .string(pass)),
            ("options", .object(options.map { ($0.0, typedValue(of: $0.0, $0.1)) })),
            (
                "changes",
                .array(
                    changes.map { c in
                        .object([
                            ("layer", .string(c.layer)),
                            ("tensor", .string(c.tensor)),
                            ("change", .string(c.kind)),
                            ("old_shape", c.oldShape.map { .array($0.map { .int($0) }) } ?? .null),
                            ("new_shape", c.newShape.map { .array($0.map { .int($0) }) } ?? .null),
                            ("action", .string(c.action)),
                        ])
                    })
            ),
            ("notes", .array(spelledNotes.map { .string($0) })),
            (
                "layers",
                .array(
                    layerShapes.map { l in
                        .object([
                            ("layer", .string(l.layer)),
                            ("old_output", l.oldOutput.map(ShapeText.json) ?? .null),
                            ("new_output", l.newOutput.map(ShapeText.json) ?? .null),
                            ("weights", .string(l.weights)),
                        ])
                    })
            ),
        ])
    }

    /// An option's value as JSON of the kind its specification gives: numbers for whole-number options,
    /// booleans for flags, text otherwise.
    func typedValue(of key: String, _ text: String) -> JSONValue {
        switch PassCatalog.spec(named: pass)?.options.first(where: { $0.key == key })?.kind {
        case .integer? where Int(text) != nil || UInt64(text) != nil: return .number(text)
        case .flag? where text == "true" || text == "false": return .bool(text == "true")
        default: return .string(text)
        }
    }

    /// The report as aligned text.
    public var table: String {
        var rows: [[String]] = [["layer", "tensor", "old shape", "new shape", "action"]]
        for c in changes {
            rows.append([c.layer, c.tensor, c.oldShape.map(ShapeText.python) ?? "(new)", c.newShape.map(ShapeText.python) ?? "(removed)", c.action])
        }
        var lines = ["\(pass)" + (options.isEmpty ? "" : " (" + options.map { "\($0.0)=\($0.1)" }.joined(separator: ", ") + ")")]
        if changes.isEmpty { lines.append("no tensor changed") } else { lines += TextTable.render(rows) }
        if !layerShapes.isEmpty {
            var shapeRows: [[String]] = [["layer", "output before", "output after", "weights"]]
            for l in layerShapes {
                shapeRows.append([l.layer, l.oldOutput.map(ShapeText.python) ?? "-", l.newOutput.map(ShapeText.python) ?? "-", l.weights])
            }
            lines.append("")
            lines += TextTable.render(shapeRows)
        }
        lines += spelledNotes.map { "note: \($0)" }
        return lines.joined(separator: "\n")
    }
}

extension TensorGraph {
    /// Replaces tensor `index` of `layer` with new values and records the change.
    mutating func replaceTensor(layer: String, index: Int, with array: ValueArray, action: String, in report: inout PassReport) {
        guard let l = layers.firstIndex(where: { $0.name == layer }) else { return }
        let old = layers[l].tensors[index]
        layers[l].tensors[index] = TensorValues.replacing(old, with: array)
        report.changes.append(TensorChange(layer: layer, tensor: old.name, oldShape: old.shape, newShape: array.shape, action: action))
    }

    /// Replaces a tensor with values of `shape` produced block by block when the writer asks.
    mutating func replaceTensor(layer: String, index: Int, shape: [Int], with values: any ValueStream, action: String, in report: inout PassReport) {
        guard let l = layers.firstIndex(where: { $0.name == layer }) else { return }
        let old = layers[l].tensors[index]
        layers[l].tensors[index] = TensorValues.replacing(old, shape: shape, with: values)
        report.changes.append(TensorChange(layer: layer, tensor: old.name, oldShape: old.shape, newShape: shape, action: action))
    }

    /// Drops optimizer state, which any change to the weights makes stale, and says so.
    mutating func dropOptimizerState(in report: inout PassReport) {
        guard let optimizer else { return }
        var note = "dropped the optimizer state (\(optimizer.tensors.count) tensors): it no longer matches the weights"
        // A `.keras` config's `compile_config` makes `load_model` compile and build an optimizer whose
        // variables the file no longer holds, and Keras warns that it skips loading them: it goes too, and
        // the model loads uncompiled. (The legacy `.h5` loader compiles from `training_config` with a fresh
        // optimizer and no warning, so that is kept.)
        if case .keras(var document) = architecture, let compile = document.json["compile_config"], compile != .null {
            document.json.remove("compile_config")
            architecture = .keras(document)
            let optimizerName = compile["optimizer"]?["config"]?["name"]?.stringValue ?? compile["optimizer"]?.stringValue
            note +=
                "; with it the compile config\(optimizerName.map { " (optimizer '\($0)')" } ?? ""), so the model loads uncompiled: compile it before training"
        }
        report.notes.append(note)
        self.optimizer = nil
    }

    /// The named layer or an error listing the layers with weights.
    func requireLayer(_ name: String) throws -> Layer {
        guard let layer = layer(named: name) else {
            throw WSurgeryError.unknownLayer(path: sourcePath, layer: name, candidates: layers.filter { !$0.tensors.isEmpty }.map(\.name))
        }
        return layer
    }
}
