/// The editor of a Hugging Face (or timm hub) `config.json` beside a state dict: the fields that describe
/// the tensors (channels, labels, image size) follow the edit; edges are not recorded, so the rest is
/// answered from names and shapes as for a bare state dict.
struct HuggingFaceArchitecture: EdgelessArchitectureEditor {
    let document: ConfigDocument
    let preprocessor: ConfigDocument?

    func settingInputChannels(_ channels: Int, convolutions: [String], preprocessing: [InputPreprocessing], in graph: TensorGraph) throws
        -> ArchitectureEdit
    {
        let (edited, fields) = HuggingFaceConfigEdit.settingChannels(document, channels: channels)
        return ArchitectureEdit(
            architecture: .huggingFace(edited, preprocessor: preprocessor),
            notes: fields.isEmpty ? [] : ["config.json: " + fields.joined(separator: ", ") + " set to \(channels)"])
    }

    func settingClasses(_ classes: Int, heads: [(layer: String, oldClasses: Int)], keep: [Int], in graph: TensorGraph) throws -> ArchitectureEdit {
        let (edited, fields) = HuggingFaceConfigEdit.settingClasses(document, classes: classes, keep: keep)
        return ArchitectureEdit(
            architecture: .huggingFace(edited, preprocessor: preprocessor),
            notes: fields.isEmpty ? [] : ["config.json: " + fields.joined(separator: ", ") + " updated for \(classes) classes"])
    }

    func settingInputSize(height: Int, width: Int, in graph: TensorGraph) throws -> InputSizeEdit {
        let embeddings = try PositionEmbeddings.changes(in: graph, height: height, width: width, config: document)
        let (edited, fields) = HuggingFaceConfigEdit.settingImageSize(document, height: height, width: width)
        var notes = fields.isEmpty ? [] : ["config.json: " + fields.joined(separator: ", ") + " set to \(height)x\(width)"]
        notes.append(PositionEmbeddings.note)
        var result = InputSizeEdit(edit: ArchitectureEdit(architecture: .huggingFace(edited, preprocessor: preprocessor), notes: notes))
        result.positionEmbeddings = embeddings
        return result
    }
}
