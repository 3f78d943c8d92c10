/// Surgery on a PyTorch-layout checkpoint that carries the Keras model it came from (`convert --layout
/// torch` keeps the config in `__metadata__['source_keras_model_config']`): the passes run on the Keras
/// view of it, so detection, shape inference and the config edit follow the architecture the file
/// carries, and the result goes back to the PyTorch layout with the edited config. Tensors the passes
/// did not change are taken from the input as they were (bit-identical, never moved twice), and the
/// reports speak of the file's own (PyTorch) tensor names and shapes.
enum KerasConfigRoute {
    /// Whether `graph` is such a checkpoint and `passes` are surgery (a layout conversion is not routed).
    static func applies(to graph: TensorGraph, passes: [any GraphPass]) -> Bool {
        guard graph.architecture == nil, case .keras? = graph.originalArchitecture, !passes.isEmpty else { return false }
        guard !passes.contains(where: { $0 is LayoutConversion }) else { return false }
        return graph.tensors.contains { $0.layout == .torch }
    }

    /// The Keras view of a PyTorch-layout graph carrying its Keras config, and the facts that map its
    /// layers to the file's module names; nil for any other graph or when the view cannot be made.
    static func kerasView(of graph: TensorGraph) -> (TensorGraph, any LayoutFacts)? {
        guard graph.architecture == nil, case .keras? = graph.originalArchitecture, graph.tensors.contains(where: { $0.layout == .torch }),
            let facts = try? graph.originalArchitecture?.layoutFacts(path: graph.sourcePath)
        else { return nil }
        var report = PassReport(pass: "convert", options: [])
        guard let view = try? LayoutConversion(target: .keras).toKeras(graph, &report) else { return nil }
        return (view, facts)
    }

    /// Runs `passes` on the Keras view of `input` and returns the PyTorch-layout result and the reports.
    static func run(_ passes: [any GraphPass], on input: TensorGraph) throws -> (TensorGraph, [PassReport]) {
        var toKerasReport = PassReport(pass: "convert", options: [])
        var graph = try LayoutConversion(target: .keras).toKeras(input, &toKerasReport)
        var reports: [PassReport] = []
        for pass in passes {
            let (next, report) = try pass.apply(to: graph)
            graph = next
            reports.append(report)
        }
        try graph.editor.checkConsistency(of: graph)
        var toTorchReport = PassReport(pass: "convert", options: [])
        var result = try LayoutConversion(target: .torch).toTorch(graph, &toTorchReport)
        // Keras name -> PyTorch name, from both moves ("torch -> keras" on the way in, "keras -> torch" out).
        var torchName: [String: String] = [:]
        for (change, kerasFirst) in toKerasReport.changes.map({ ($0, false) }) + toTorchReport.changes.map({ ($0, true) }) {
            let parts = change.tensor.components(separatedBy: " -> ")
            guard parts.count == 2 else { continue }
            if kerasFirst { torchName[parts[0]] = parts[1] } else { torchName[parts[1]] = parts[0] }
        }
        let changed = Set(reports.flatMap(\.changes).map { torchName[$0.tensor] ?? $0.tensor })
        let original = Dictionary(input.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for l in result.layers.indices {
            for t in result.layers[l].tensors.indices {
                let tensor = result.layers[l].tensors[t]
                guard let before = original[tensor.name], before.shape == tensor.shape, before.dtype == tensor.dtype else { continue }
                // A BatchNorm's counter is no weight of the Keras view: the input's is kept.
                if !changed.contains(tensor.name) || StateDictGrouping.localName(tensor.name) == "num_batches_tracked" {
                    result.layers[l].tensors[t] = before
                }
            }
        }
        let shapes = Dictionary(result.tensors.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
        for r in reports.indices {
            reports[r].changes = reports[r].changes.map { change in
                guard let name = torchName[change.tensor] else { return change }
                var moved = change
                moved.tensor = name
                moved.layer = StateDictGrouping.split(name).layer
                if change.oldShape != nil { moved.oldShape = original[name]?.shape ?? change.oldShape }
                if change.newShape != nil { moved.newShape = shapes[name] ?? change.newShape }
                return moved
            }
        }
        if !reports.isEmpty {
            reports[0].notes.insert(
                "edited through the Keras model config the file carries (__metadata__['\(SafetensorsMetadataKey.sourceKerasModelConfig)']), which is rewritten with the edit; --layout keras of the output restores the edited Keras model",
                at: 0)
        }
        result.provenance = graph.provenance
        return (result, reports)
    }
}
