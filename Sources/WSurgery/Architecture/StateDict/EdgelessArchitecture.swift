/// An architecture that records no edges between layers (a state dict, with or without a config.json):
/// convolution padding is unknown, layers are removed by name or as the detected head and nothing is
/// reconnected, the readers of a resized layer are unknown, and no weight can be checked against shapes.
protocol EdgelessArchitectureEditor: ArchitectureEditor {}

extension EdgelessArchitectureEditor {
    func padding(ofConvolution layer: String) -> String? { nil }

    /// A config.json describes no preprocessing layers.
    func inputPreprocessing(before conv: String, in graph: TensorGraph) throws -> [InputPreprocessing] { [] }

    /// The layers' tensors go (the classifier stack: the detected head, like timm's `reset_classifier(0)`);
    /// nothing records the edges, so nothing is reconnected or checked.
    func removingLayers(_ selection: LayerSelection, in graph: TensorGraph) throws -> LayerRemovalEdit {
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
        return LayerRemovalEdit(edit: ArchitectureEdit(architecture: graph.architecture, notes: [note]), removed: names, misfits: [])
    }

    func resizingUnits(of layer: String, to units: Int, in graph: TensorGraph) throws -> UnitResizeEdit {
        UnitResizeEdit(edit: ArchitectureEdit(architecture: graph.architecture), readers: nil)
    }

    func checkWeights(of graph: TensorGraph, before: TensorGraph) throws {}

    /// Without edges there is nothing to check the tensors against.
    func checkConsistency(of graph: TensorGraph) throws {}
}
