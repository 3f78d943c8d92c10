import Foundation

/// What `wsurgery inspect` shows: layers, tensors, totals, format, metadata and the detected layers,
/// as a value that renders to a table or to JSON.
public struct InspectReport: Sendable {
    /// The graph inspected.
    public let graph: TensorGraph
    /// The detected first convolution.
    public let firstConvolution: String?
    /// The detected classifier heads.
    public let heads: [String]
    /// Why detection found nothing, when it did not (the message the surgery commands would give).
    public let firstConvolutionProblem: String?
    /// Why no head was found, when none was.
    public let headProblem: String?
    /// Every layer's output shape, inferred from the Keras config at its recorded input shape.
    public let shapes: ShapeInference.Result?
    /// Why shapes could not be inferred, when they could not.
    public let shapeProblem: String?

    /// The report on `graph`, with detection and shape inference run.
    public init(graph input: TensorGraph) {
        func attempt<T>(_ body: () throws -> T) -> (T?, String?) {
            do { return (try body(), nil) } catch { return (nil, "\(error)") }
        }
        // A PyTorch-layout file carrying its Keras config is inspected as surgery sees it: detection and
        // shapes from the Keras view, its layers in the config's order, under the file's own names.
        var graph = input
        var detectIn = input
        var moduleName: (String) -> String = { $0 }
        if let (view, facts) = KerasConfigRoute.kerasView(of: input) {
            detectIn = view
            moduleName = facts.modulePath(of:)
            let position = Dictionary(view.layers.enumerated().map { (moduleName($0.element.name), $0.offset) }, uniquingKeysWith: { a, _ in a })
            graph.layers = input.layers.enumerated().sorted { a, b in
                (position[a.element.name] ?? Int.max, a.offset) < (position[b.element.name] ?? Int.max, b.offset)
            }.map(\.element)
            graph.layersInModelOrder = true
        }
        self.graph = graph
        let detection = detectIn
        (self.firstConvolution, self.firstConvolutionProblem) = attempt { moduleName(try LayerDetection.firstConvolution(in: detection)) }
        let heads: [String]?
        (heads, self.headProblem) = attempt { try LayerDetection.classifierHeads(in: detection).map(moduleName) }
        self.heads = heads ?? []
        if case .keras(let config)? = detection.architecture {
            (self.shapes, self.shapeProblem) = attempt { try ShapeInference.infer(model: config.json, path: graph.sourcePath) }
        } else {
            (self.shapes, self.shapeProblem) = (nil, nil)
        }
    }

    /// The output shape of `layer` as text, or what blocks it.
    func outputShapeText(_ layer: String) -> String? {
        guard let shapes else { return nil }
        if let blocker = shapes.blockedBy[layer] { return "? (after \(blocker))" }
        return shapes.outputs[layer].map { $0.map(ShapeText.python).joined(separator: ", ") }
    }

    /// Each layer's output shapes (null past a layer whose class blocks inference).
    var outputShapesJSON: JSONValue {
        guard let shapes else { return .null }
        var pairs: [(String, JSONValue)] = []
        for name in shapes.order {
            let outputs: [JSONValue] = (shapes.outputs[name] ?? []).map(ShapeText.json)
            pairs.append((name, shapes.blockedBy[name] != nil ? .null : .array(outputs)))
        }
        return .object(pairs)
    }

    /// Which order the layers are listed (and searched for "first" and "last") in, and why: the model's
    /// where the file or its config records it, else the file's own, said to be so.
    var layerOrder: (kind: String, why: String) {
        if graph.hasEdges { return ("model", "the model's, from its config") }
        if graph.architecture == nil, case .keras? = graph.originalArchitecture, graph.layersInModelOrder {
            return ("model", "the model's, from the Keras config the file carries")
        }
        if graph.layersInModelOrder { return ("model", "the model's, as the file records it") }
        switch graph.sourceFormat {
        case .safetensors, .shardedSafetensors:
            return (
                "recovered",
                "recovered from the names, a guess (safetensors stores tensors sorted by dtype and name and does not record the model's order): numbered modules by number, stem first, head last"
            )
        case .pytorch:
            return ("state-dict", "the state dict's, as torch.save keeps it (the order the model registered its modules)")
        case .kerasWeightsH5, .kerasArchive:
            return ("natural", "natural order of the saveable names (a Keras 3 weights file without its config does not record the model's order)")
        case .kerasLegacyH5:
            return ("file", "the file's")
        }
    }

    /// The report as one JSON object.
    public var json: JSONValue {
        let metadata = graph.fileStates.all.flatMap(\.summaryJSON)
        let architecture: JSONValue
        switch graph.architecture {
        case .keras(let c)?:
            architecture = .object([
                ("kind", .string("keras")), ("class_name", c.json["class_name"] ?? .null), ("name", c.json["config"]?["name"] ?? .null),
            ])
        case .huggingFace(let c, _)?: architecture = .object([("kind", .string("huggingface")), ("model_type", c.json["model_type"] ?? .null)])
        case nil: architecture = .null
        }
        let layers: [JSONValue] = graph.layers.map { layer in
            .object([
                ("name", .string(layer.name)),
                ("kind", .string(layer.kind.rawValue)),
                ("class_name", layer.className.map { .string($0) } ?? .null),
                ("inbound", .array(layer.inbound.map { .string($0) })),
                ("parameters", .int(layer.parameterCount)),
                ("buffers", .int(layer.bufferCount)),
                (
                    "tensors",
                    .array(
                        layer.tensors.map { t in
                            .object([
                                ("name", .string(t.name)),
                                ("dtype", .string(t.dtype.safetensorsName)),
                                ("shape", .array(t.shape.map { .int($0) })),
                                ("layout", .string(t.layout.rawValue)),
                                ("bytes", .number(String(t.data.byteCount))),
                            ])
                        })
                ),
            ])
        }
        let history: JSONValue = graph.provenance?.json ?? .array([])
        return .object([
            ("file", .string(graph.sourcePath)),
            ("format", .string(graph.sourceFormat.rawValue)),
            ("architecture", architecture),
            ("layer_order", .object([("kind", .string(layerOrder.kind)), ("why", .string(layerOrder.why))])),
            ("metadata", .object(metadata)),
            ("layers", .array(layers)),
            (
                "totals",
                .object([
                    ("layers", .int(graph.layers.count)),
                    ("tensors", .int(graph.tensors.count)),
                    ("parameters", .int(graph.parameterCount)),
                    ("buffers", .int(graph.bufferCount)),
                    ("bytes", .number(String(graph.byteCount))),
                ])
            ),
            ("history", history),
            ("reader_notes", .array(graph.readerNotes.map { .string($0) })),
            ("optimizer", graph.optimizer.map { o in .object([("flavor", .string(o.layout.label)), ("tensors", .int(o.tensors.count))]) } ?? .null),
            ("output_shapes", outputShapesJSON),
            ("shape_problem", shapeProblem.map { .string($0) } ?? .null),
            (
                "detected",
                .object([
                    ("first_conv", firstConvolution.map { .string($0) } ?? .null),
                    ("heads", .array(heads.map { .string($0) })),
                    ("first_conv_problem", firstConvolutionProblem.map { .string($0) } ?? .null),
                    ("head_problem", headProblem.map { .string($0) } ?? .null),
                ])
            ),
        ])
    }

    /// The report as an aligned text table.
    public var table: String {
        let withShapes = shapes != nil
        var rows: [[String]] = [["layer", "kind", "tensor", "shape", "dtype", "params"] + (withShapes ? ["output shape"] : [])]
        for layer in graph.layers {
            let output = withShapes ? [outputShapeText(layer.name) ?? ""] : []
            if layer.tensors.isEmpty {
                rows.append([layer.name, layer.kind.rawValue, "-", "", "", "0"] + output)
                continue
            }
            for (i, t) in layer.tensors.enumerated() {
                rows.append(
                    [
                        i == 0 ? layer.name : "", i == 0 ? layer.kind.rawValue : "", t.name, ShapeText.python(t.shape),
                        t.dtype.safetensorsName,
                        i == 0 ? String(layer.parameterCount) + (layer.bufferCount > 0 ? " (+\(layer.bufferCount))" : "") : "",
                    ] + (i == 0 ? output : output.map { _ in "" }))
            }
        }
        var lines: [String] = []
        let flavor = graph.fileStates.all.compactMap(\.flavor).first
        lines.append("\(graph.sourcePath): \(graph.sourceFormat.rawValue)\(flavor.map { " (\($0))" } ?? "")")
        switch graph.architecture {
        case .keras(let c)?:
            lines.append("architecture: Keras \(c.json["class_name"]?.stringValue ?? "?") '\(c.json["config"]?["name"]?.stringValue ?? "?")'")
        case .huggingFace(let c, _)?: lines.append("architecture: Hugging Face config.json (model_type \(c.json["model_type"]?.stringValue ?? "?"))")
        case nil:
            if case .keras(let c)? = graph.originalArchitecture {
                lines.append(
                    "architecture: Keras \(c.json["class_name"]?.stringValue ?? "?") '\(c.json["config"]?["name"]?.stringValue ?? "?")', carried in __metadata__['\(SafetensorsMetadataKey.sourceKerasModelConfig)'] of this PyTorch-layout file (surgery edits it through that config)"
                )
            } else {
                lines.append("architecture: none recorded")
            }
        }
        lines.append("layer order: " + layerOrder.why)
        lines += graph.fileStates.all.flatMap(\.summaryLines)
        lines.append("")
        lines += TextTable.render(rows, rightAligned: [5])
        lines.append("")
        lines.append(
            "totals: \(graph.layers.count) layers, \(graph.tensors.count) tensors, \(graph.parameterCount) parameters"
                + (graph.bufferCount > 0 ? " + \(graph.bufferCount) in buffers (running statistics, counters)" : "") + ", \(graph.byteCount) bytes")
        if let o = graph.optimizer { lines.append("optimizer state: \(o.tensors.count) tensors (\(o.layout.label))") }
        lines.append("first convolution: \(firstConvolution ?? "none found (\(firstConvolutionProblem ?? ""))")")
        lines.append("classifier head: \(heads.isEmpty ? "none found (\(headProblem ?? ""))" : heads.joined(separator: ", "))")
        if let shapeProblem { lines.append("shapes: cannot infer (\(shapeProblem))") }
        if let shapes, !shapes.modelOutputs.isEmpty {
            lines.append("model output: " + shapes.modelOutputs.map(ShapeText.python).joined(separator: ", "))
        }
        for note in graph.readerNotes { lines.append("note: \(note)") }
        if let history = graph.provenance, !history.entries.isEmpty {
            lines.append("history (wsurgery runs that made this file, oldest first):")
            for (i, entry) in history.entries.enumerated() { lines.append("  \(i + 1). \(entry.summary)") }
        }
        return lines.joined(separator: "\n")
    }
}
