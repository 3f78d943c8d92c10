/// The editor of a Hugging Face (or timm hub) `config.json` beside a state dict, with the folder's
/// `preprocessor_config.json`: the fields that describe the tensors (channels, labels, image size) and the
/// processor's statistics and sizes follow the edit. Layers come from `model_type` (or timm's
/// `pretrained_cfg`); edges are not recorded, so the rest is answered from names and shapes.
struct HuggingFaceArchitecture: EdgelessArchitectureEditor {
    let document: ConfigDocument
    let preprocessor: ConfigDocument?

    /// The image processor's per-channel normalisation (or timm's `pretrained_cfg` mean/std), applied
    /// before the first convolution.
    func inputPreprocessing(before conv: String, in graph: TensorGraph) throws -> [InputPreprocessing] {
        guard conv == (try? LayerDetection.firstConvolution(in: graph)) else { return [] }
        if let preprocessor, preprocessor.json["do_normalize"]?.boolValue != false,
            let statistics = HuggingFaceConfigEdit.statistics(preprocessor.json, mean: "image_mean", std: "image_std")
        {
            return [InputPreprocessing(layer: HuggingFaceFolder.preprocessorName, statistics: statistics, storage: .processor)]
        }
        if let pretrained = document.json["pretrained_cfg"], let statistics = HuggingFaceConfigEdit.statistics(pretrained, mean: "mean", std: "std") {
            return [InputPreprocessing(layer: HuggingFaceConfigEdit.timmStatisticsName, statistics: statistics, storage: .processor)]
        }
        return []
    }

    func settingInputChannels(_ channels: Int, convolutions: [String], preprocessing: [InputPreprocessing], in graph: TensorGraph) throws
        -> ArchitectureEdit
    {
        var (edited, fields) = HuggingFaceConfigEdit.settingChannels(document, channels: channels)
        var processor = preprocessor
        var notes: [String] = []
        for step in preprocessing where step.storage == .processor {
            guard case .normalization(let mean, let variance) = step.statistics else { continue }
            let std = variance.map { $0.squareRoot() }
            let widen = { (list: [Double]) in list.count == channels ? list : [Double](repeating: list[0], count: channels) }
            if step.layer == HuggingFaceFolder.preprocessorName, let current = processor {
                processor = HuggingFaceConfigEdit.settingStatistics(current, mean: widen(mean), std: widen(std))
                notes.append("\(HuggingFaceFolder.preprocessorName): image_mean, image_std set for \(channels) channel(s)")
            } else if step.layer == HuggingFaceConfigEdit.timmStatisticsName {
                edited = HuggingFaceConfigEdit.settingTimmStatistics(edited, mean: widen(mean), std: widen(std))
                fields.append("pretrained_cfg.mean/std")
            }
        }
        if !fields.isEmpty { notes.insert("config.json: " + fields.joined(separator: ", ") + " set for \(channels) channel(s)", at: 0) }
        return ArchitectureEdit(architecture: .huggingFace(edited, preprocessor: processor), notes: notes)
    }

    func settingClasses(_ classes: Int, heads: [(layer: String, oldClasses: Int)], keep: [Int], in graph: TensorGraph) throws -> ArchitectureEdit {
        let (edited, fields) = HuggingFaceConfigEdit.settingClasses(document, classes: classes, keep: keep)
        return ArchitectureEdit(
            architecture: .huggingFace(edited, preprocessor: preprocessor),
            notes: fields.isEmpty ? [] : ["config.json: " + fields.joined(separator: ", ") + " updated for \(classes) classes"])
    }

    func settingInputSize(height: Int, width: Int, in graph: TensorGraph) throws -> InputSizeEdit {
        let (edited, fields) = HuggingFaceConfigEdit.settingImageSize(document, height: height, width: width)
        var notes = fields.isEmpty ? [] : ["config.json: " + fields.joined(separator: ", ") + " set to \(height)x\(width)"]
        var processor = preprocessor
        if let current = preprocessor {
            let (resized, processorFields) = HuggingFaceConfigEdit.settingProcessorSize(current, height: height, width: width)
            processor = resized
            if !processorFields.isEmpty {
                notes.append("\(HuggingFaceFolder.preprocessorName): " + processorFields.joined(separator: ", ") + " set for \(height)x\(width)")
            }
        }
        var result = try SizeDependence.changes(in: graph, height: height, width: width, config: document, type: HuggingFaceModelType.of(document))
        result.edit = ArchitectureEdit(architecture: .huggingFace(edited, preprocessor: processor), notes: notes + result.edit.notes)
        return result
    }
}
