/// The model graph as Graphviz DOT: one box per layer (name, class, parameters), an arrow per connection
/// the architecture records, each layer filled by what a surgery does to it. `inspect --graph` draws the
/// checkpoint as it is; a surgery command's `--graph` draws its input coloured by the command's effect.
public enum GraphPicture {
    /// What a command does to a layer.
    public enum Fate: String, Sendable, CaseIterable {
        case unchanged
        case reinitialised = "re-initialised"
        case resampled
        case adapted
        case changed
        case removed

        /// The fill colour (a colour-blind-safe palette) and whether the box is dashed.
        var style: (fill: String, dashed: Bool) {
            switch self {
            case .unchanged: return ("#f0f0f0", false)
            case .reinitialised: return ("#e69f00", false)
            case .resampled: return ("#56b4e9", false)
            case .adapted: return ("#009e73", false)
            case .changed: return ("#f0e442", false)
            case .removed: return ("#d55e00", true)
            }
        }
    }

    /// Each layer's fate from the reports of the passes that turned `input` into `output`: a layer of the
    /// input missing from the output is removed; otherwise its tensor changes say how it changed.
    public static func fates(reports: [PassReport], input: TensorGraph, output: TensorGraph) -> [String: Fate] {
        var fates: [String: Fate] = [:]
        let order: [Fate] = [.unchanged, .changed, .adapted, .resampled, .reinitialised, .removed]
        func mark(_ layer: String, _ fate: Fate) {
            if order.firstIndex(of: fate)! > order.firstIndex(of: fates[layer] ?? .unchanged)! { fates[layer] = fate }
        }
        let kept = Set(output.layers.map(\.name))
        for layer in input.layers where !kept.contains(layer.name) { mark(layer.name, .removed) }
        for change in reports.flatMap(\.changes) {
            let action = change.action.lowercased()
            let fate: Fate =
                change.newShape == nil
                ? .removed
                : action.hasPrefix("new ") || action.contains(" new (")
                    ? .reinitialised
                    : action.contains("resampled")
                        ? .resampled
                        : action.contains("channel") || action.contains("sum") || action.contains("repeat") ? .adapted : .changed
            mark(change.layer, fate)
        }
        return fates
    }

    /// The DOT text for `graph`, layers filled by `fates` (unchanged when absent), with a legend of the
    /// fates that occur.
    public static func dot(_ graph: TensorGraph, fates: [String: Fate] = [:], title: String) -> String {
        func escaped(_ text: String) -> String {
            text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        }
        func quoted(_ text: String) -> String { "\"" + escaped(text) + "\"" }
        /// Lines of a label, each escaped, joined by DOT's line break.
        func label(_ parts: [String]) -> String { "\"" + parts.map(escaped).joined(separator: "\\n") + "\"" }
        let heading = graph.hasEdges ? [title] : [title, "(no connections recorded: layers in file order)"]
        var lines = [
            "digraph model {",
            "  graph [rankdir=TB, fontname=\"Helvetica\", labelloc=t, label=\(label(heading))];",
            "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10];",
            "  edge [color=\"#555555\"];",
        ]
        let names = Set(graph.layers.map(\.name))
        for layer in graph.layers {
            let fate = fates[layer.name] ?? .unchanged
            var parts = [layer.name, layer.className ?? layer.kind.rawValue]
            if layer.parameterCount > 0 { parts.append("\(layer.parameterCount) params") }
            if fate != .unchanged { parts.append(fate.rawValue) }
            let style = fate.style.dashed ? "\"rounded,filled,dashed\"" : "\"rounded,filled\""
            lines.append("  \(quoted(layer.name)) [label=\(label(parts)), fillcolor=\"\(fate.style.fill)\", style=\(style)];")
        }
        if graph.hasEdges {
            for layer in graph.layers {
                for source in layer.inbound where names.contains(source) { lines.append("  \(quoted(source)) -> \(quoted(layer.name));") }
            }
        } else {
            // A state dict records no connections: the layers in file order, dotted.
            for (a, b) in zip(graph.layers, graph.layers.dropFirst()) { lines.append("  \(quoted(a.name)) -> \(quoted(b.name)) [style=dotted];") }
        }
        let used = Fate.allCases.filter { fate in fate == .unchanged || fates.values.contains(fate) }
        if used.count > 1 {
            lines.append("  subgraph cluster_legend {")
            lines.append("    label=\"what the command does\"; fontsize=10; style=rounded; color=\"#999999\";")
            for fate in used {
                let style = fate.style.dashed ? "\"rounded,filled,dashed\"" : "\"rounded,filled\""
                lines.append(
                    "    \(quoted("legend: " + fate.rawValue)) [label=\(quoted(fate.rawValue)), fillcolor=\"\(fate.style.fill)\", style=\(style)];")
            }
            lines.append("  }")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }
}
