/// Serialises `JSONValue`s. Two styles: `.compact` (no spaces, what Rust's serde_json and the safetensors
/// writer produce) and `.python` (`", "` and `": "` separators, non-ASCII escaped: what Python's
/// `json.dumps` produces, and so what Keras writes for its configs).
public enum JSONStyle: Sendable {
    case compact
    case python
    /// Indented by two spaces, for human-facing JSON output.
    case pretty
}

extension JSONValue {
    /// The value as JSON text in the given style.
    public func serialized(_ style: JSONStyle = .compact) -> String {
        var out = ""
        write(into: &out, style: style, indent: 0)
        return out
    }

    private func write(into out: inout String, style: JSONStyle, indent: Int) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let text): out += text
        case .string(let s): JSONValue.writeString(s, into: &out, asciiOnly: style == .python)
        case .array(let items):
            if items.isEmpty {
                out += "[]"
                return
            }
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += style == .python ? ", " : "," }
                if style == .pretty { out += "\n" + String(repeating: "  ", count: indent + 1) }
                item.write(into: &out, style: style, indent: indent + 1)
            }
            if style == .pretty { out += "\n" + String(repeating: "  ", count: indent) }
            out += "]"
        case .object(let pairs):
            if pairs.isEmpty {
                out += "{}"
                return
            }
            out += "{"
            for (i, (key, value)) in pairs.enumerated() {
                if i > 0 { out += style == .python ? ", " : "," }
                if style == .pretty { out += "\n" + String(repeating: "  ", count: indent + 1) }
                JSONValue.writeString(key, into: &out, asciiOnly: style == .python)
                out += style == .compact ? ":" : ": "
                value.write(into: &out, style: style, indent: indent + 1)
            }
            if style == .pretty { out += "\n" + String(repeating: "  ", count: indent) }
            out += "}"
        }
    }

    private static func writeString(_ s: String, into out: inout String, asciiOnly: Bool) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 || (asciiOnly && scalar.value > 0x7F) {
                    for unit in String(scalar).utf16 {
                        let hex = String(unit, radix: 16)
                        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                    }
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}
