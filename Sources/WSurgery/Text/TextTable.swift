import Foundation

/// Renders rows as aligned columns with a rule under the header row.
public enum TextTable {
    /// `rows[0]` is the header; columns listed in `rightAligned` are padded on the left (numbers).
    public static func render(_ rows: [[String]], rightAligned: Set<Int> = []) -> [String] {
        guard let columns = rows.first?.count else { return [] }
        let rows = rows.map { $0.map(TextSafety.escaped) }
        let widths = (0..<columns).map { c in rows.map { $0[c].count }.max() ?? 0 }
        var lines: [String] = []
        for (r, row) in rows.enumerated() {
            let cells = row.enumerated().map { c, cell in
                rightAligned.contains(c)
                    ? String(repeating: " ", count: widths[c] - cell.count) + cell
                    : cell.padding(toLength: widths[c], withPad: " ", startingAt: 0)
            }
            var line = cells.joined(separator: "  ")
            while line.hasSuffix(" ") { line.removeLast() }
            lines.append(line)
            if r == 0 { lines.append(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")) }
        }
        return lines
    }
}
