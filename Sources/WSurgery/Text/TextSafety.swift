/// Text from a file shown on a terminal: control characters (a newline in a tensor name, an escape
/// sequence in a dtype) are shown escaped, so a file cannot forge lines of output or move the cursor.
public enum TextSafety {
    /// `text` with every control character (C0, DEL, C1) written as `\n`, `\t` or `\u{1B}`.
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where isControl(scalar): result += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// `'text'`, escaped and cut to 80 characters.
    public static func quoted(_ text: String) -> String {
        let shown = escaped(text)
        return "'" + (shown.count > 80 ? String(shown.prefix(80)) + "..." : shown) + "'"
    }

    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }
}
