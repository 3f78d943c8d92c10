/// The editor of a bare state dict (no architecture recorded): nothing to keep in step, edges unknown,
/// so it answers from tensor names and shapes alone.
struct StateDictArchitecture: EdgelessArchitectureEditor {
    func settingInputChannels(_ channels: Int, convolutions: [String], preprocessing: [InputPreprocessing], in graph: TensorGraph) throws
        -> ArchitectureEdit
    {
        ArchitectureEdit(architecture: nil)
    }

    func settingClasses(_ classes: Int, heads: [(layer: String, oldClasses: Int)], keep: [Int], in graph: TensorGraph) throws -> ArchitectureEdit {
        ArchitectureEdit(architecture: nil)
    }

    /// Only absolute position embeddings depend on the input size of a state dict this tool can read;
    /// tables it cannot resample are refused by name; anything else transfers on the stated assumption.
    func settingInputSize(height: Int, width: Int, in graph: TensorGraph) throws -> InputSizeEdit {
        try SizeDependence.changes(in: graph, height: height, width: width, config: nil, type: nil)
    }
}
