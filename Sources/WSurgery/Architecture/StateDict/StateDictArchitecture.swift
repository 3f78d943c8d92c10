/// The editor of a bare state dict (no architecture recorded): nothing to keep in step, edges unknown,
/// so it answers from tensor names and shapes alone.
struct StateDictArchitecture: ArchitectureEditor {
    func padding(ofConvolution layer: String) -> String? { nil }

    func settingInputChannels(_ channels: Int, convolutions: [String], in graph: TensorGraph) throws -> ArchitectureEdit {
        ArchitectureEdit(architecture: nil)
    }

    func settingClasses(_ classes: Int, heads: [(layer: String, oldClasses: Int)], keep: [Int], in graph: TensorGraph) throws -> ArchitectureEdit {
        ArchitectureEdit(architecture: nil)
    }

    /// Only absolute position embeddings depend on the input size of a state dict this tool can read.
    func settingInputSize(height: Int, width: Int, in graph: TensorGraph) throws -> InputSizeEdit {
        var result = InputSizeEdit(edit: ArchitectureEdit(architecture: nil, notes: [PositionEmbeddings.note]))
        result.positionEmbeddings = try PositionEmbeddings.changes(in: graph, height: height, width: width, config: nil)
        return result
    }

    /// The layers' tensors go (the classifier stack: the detected head, like timm's `reset_classifier(0)`);
    /// nothing records the edges, so nothing is reconnected or checked.
    func removingLayers(_ selection: LayerSelection, in graph: TensorGraph) throws -> LayerRemovalEdit {
        try Self.removal(selection, in: graph, keeping: graph.architecture)
    }

    func resizingUnits(of layer: String, to units: Int, in graph: TensorGraph) throws -> UnitResizeEdit {
        UnitResizeEdit(edit: ArchitectureEdit(architecture: graph.architecture), readers: nil)
    }

    func checkWeights(of graph: TensorGraph, before: TensorGraph) throws {}

    /// Removal by name or detected head, for architectures that record no edges.
    static func removal(_ selection: LayerSelection, in graph: TensorGraph, keeping architecture: Architecture?) throws -> LayerRemovalEdit {
        let names: [String]
        switch selection {
        case .named(let list):
            names = list
            for name in names where graph.layer(named: name) == nil {
                throw WSurgeryError.unknownLayer(
                    path: graph.sourcePath, layer: name, candidates: graph.layers.filter { !$0.tensors.isEmpty }.map(\.name))
            }
        case .top:
            names = try LayerDetection.classifierHeads(in: graph)
        }
        let note = "no architecture recorded: tensors removed, nothing reconnected or checked (the model code decides what reads them)"
        return LayerRemovalEdit(edit: ArchitectureEdit(architecture: architecture, notes: [note]), removed: names, misfits: [])
    }
}
