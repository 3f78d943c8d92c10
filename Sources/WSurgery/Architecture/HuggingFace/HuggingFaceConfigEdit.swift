/// Keeps a Hugging Face (or timm hub) `config.json` in step with edited tensors.
enum HuggingFaceConfigEdit {
    /// `num_channels` (transformers), `in_chans` and `pretrained_cfg.input_size[0]` (timm), where present.
    static func settingChannels(_ document: ConfigDocument, channels: Int) -> (ConfigDocument, [String]) {
        var json = document.json
        var fields: [String] = []
        for key in ["num_channels", "in_chans"] where json[key]?.intValue != nil {
            json.set(key, .int(channels))
            fields.append(key)
        }
        if var pretrained = json["pretrained_cfg"], var size = pretrained["input_size"]?.arrayValue, size.count == 3 {
            size[0] = .int(channels)
            pretrained.set("input_size", .array(size))
            json.set("pretrained_cfg", pretrained)
            fields.append("pretrained_cfg.input_size")
        }
        return (ConfigDocument(json: json, originalText: document.originalText), fields)
    }

    /// The label fields for `classes` classes, where old class `keep[i]` becomes class i: `id2label` /
    /// `label2id` (kept labels carried, new ones `LABEL_i` as transformers names them), `num_labels`,
    /// timm's `num_classes` and `label_names`.
    static func settingClasses(_ document: ConfigDocument, classes: Int, keep: [Int]) -> (ConfigDocument, [String]) {
        var json = document.json
        var fields: [String] = []
        let oldLabels = json["id2label"]?.objectValue ?? []
        func oldLabel(_ i: Int) -> String? { oldLabels.first(where: { $0.0 == String(i) })?.1.stringValue }
        let labels = (0..<classes).map { i in i < keep.count ? oldLabel(keep[i]) ?? "LABEL_\(i)" : "LABEL_\(i)" }
        // transformers derives num_labels from id2label, so it is written whenever the file is a
        // transformers config (it has model_type or architectures) or already had labels.
        if json["id2label"] != nil || json["model_type"] != nil || json["architectures"] != nil {
            json.set("id2label", .object(labels.enumerated().map { (String($0.offset), .string($0.element)) }))
            json.set("label2id", .object(labels.enumerated().map { ($0.element, .int($0.offset)) }))
            fields += ["id2label", "label2id"]
        }
        for key in ["num_labels", "num_classes"] where json[key]?.intValue != nil {
            json.set(key, .int(classes))
            fields.append(key)
        }
        if var pretrained = json["pretrained_cfg"], pretrained["num_classes"]?.intValue != nil {
            pretrained.set("num_classes", .int(classes))
            json.set("pretrained_cfg", pretrained)
            fields.append("pretrained_cfg.num_classes")
        }
        if let names = json["label_names"]?.arrayValue {
            json.set(
                "label_names",
                .array(
                    (0..<classes).map { i in
                        i < keep.count && keep[i] < names.count ? names[keep[i]] : .string("LABEL_\(i)")
                    }))
            fields.append("label_names")
        }
        return (ConfigDocument(json: json, originalText: document.originalText), fields)
    }

    /// `image_size` (transformers; an int when square and it was one), timm's `img_size` and
    /// `pretrained_cfg.input_size[1...]`, where present.
    static func settingImageSize(_ document: ConfigDocument, height: Int, width: Int) -> (ConfigDocument, [String]) {
        var json = document.json
        var fields: [String] = []
        for key in ["image_size", "img_size"] where json[key] != nil {
            json.set(key, json[key]?.intValue != nil && height == width ? .int(height) : .array([.int(height), .int(width)]))
            fields.append(key)
        }
        if var pretrained = json["pretrained_cfg"], var size = pretrained["input_size"]?.arrayValue, size.count == 3 {
            size[1] = .int(height)
            size[2] = .int(width)
            pretrained.set("input_size", .array(size))
            json.set("pretrained_cfg", pretrained)
            fields.append("pretrained_cfg.input_size")
        }
        return (ConfigDocument(json: json, originalText: document.originalText), fields)
    }

    /// How reports name timm's statistics.
    static let timmStatisticsName = "config.json pretrained_cfg"

    /// A per-channel normalisation from `mean`/`std` lists of `json`, when both are there.
    static func statistics(_ json: JSONValue, mean: String, std: String) -> InputPreprocessing.Statistics? {
        guard let m = json[mean]?.arrayValue?.compactMap(\.doubleValue), let s = json[std]?.arrayValue?.compactMap(\.doubleValue),
            !m.isEmpty, m.count == s.count, s.allSatisfy({ $0 > 0 })
        else { return nil }
        return .normalization(mean: m, variance: s.map { $0 * $0 })
    }

    /// A statistic as config files write it: 12 significant digits, so arithmetic noise
    /// (0.48500000000000004) does not show.
    static func number(_ value: Double) -> JSONValue {
        .number(JSONValue.numberText(Double(String(format: "%.12g", value)) ?? value))
    }

    /// The processor's `image_mean`/`image_std`.
    static func settingStatistics(_ document: ConfigDocument, mean: [Double], std: [Double]) -> ConfigDocument {
        var json = document.json
        json.set("image_mean", .array(mean.map(number)))
        json.set("image_std", .array(std.map(number)))
        return ConfigDocument(json: json, originalText: document.originalText)
    }

    /// timm's `pretrained_cfg.mean`/`std`.
    static func settingTimmStatistics(_ document: ConfigDocument, mean: [Double], std: [Double]) -> ConfigDocument {
        var json = document.json
        guard var pretrained = json["pretrained_cfg"] else { return document }
        pretrained.set("mean", .array(mean.map(number)))
        pretrained.set("std", .array(std.map(number)))
        json.set("pretrained_cfg", pretrained)
        return ConfigDocument(json: json, originalText: document.originalText)
    }

    /// The processor's output size: `size` as `{height, width}` or `{shortest_edge}` (a CNN processor
    /// resizes the shortest edge, then crops), and `crop_size`.
    static func settingProcessorSize(_ document: ConfigDocument, height: Int, width: Int) -> (ConfigDocument, [String]) {
        var json = document.json
        var fields: [String] = []
        for key in ["size", "crop_size"] {
            guard var size = json[key] else { continue }
            if size.intValue != nil {
                size = .int(min(height, width))
            } else if size["height"] != nil || size["width"] != nil {
                size.set("height", .int(height))
                size.set("width", .int(width))
            } else if size["shortest_edge"] != nil {
                size.set("shortest_edge", .int(min(height, width)))
            } else {
                continue
            }
            json.set(key, size)
            fields.append(key)
        }
        return (ConfigDocument(json: json, originalText: document.originalText), fields)
    }
}
