/// Messages mention options by their key (`dense-policy`), never by a command-line spelling: the library
/// is also driven by recipes and Swift code. A mention is marked in the text and spelled when the
/// message is shown (`WSurgeryError.message(spelling:)`), the command line prefixing two dashes.
enum OptionMention {
    static let open: Character = "\u{1}"
    static let close: Character = "\u{2}"

    /// `text` with every marked mention spelled by `spell`.
    static func render(_ text: String, _ spell: (String) -> String) -> String {
        guard text.contains(open) else { return text }
        var result = ""
        var key: String?
        for c in text {
            if c == open {
                key = ""
            } else if c == close, let k = key {
                result += spell(k)
                key = nil
            } else if key != nil {
                key!.append(c)
            } else {
                result.append(c)
            }
        }
        return result
    }
}

/// A mention of the option `key` inside a message.
func option(_ key: String) -> String { "\(OptionMention.open)\(key)\(OptionMention.close)" }
