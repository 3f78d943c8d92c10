import Foundation

/// A JSON document (a Keras model config, a Hugging Face config.json) with the text it was read from,
/// so an unchanged document is written back byte-for-byte.
public struct ConfigDocument: Sendable {
    /// The parsed document.
    public var json: JSONValue
    /// The text it was read from, when it was read.
    public let originalText: String?

    /// A document made in memory, or edited from one read as `originalText`.
    public init(json: JSONValue, originalText: String? = nil) {
        self.json = json
        self.originalText = originalText
    }

    /// Parses `text`; the error reason says where it is malformed.
    public init(text: String) throws(JSONParseError) {
        self.json = try JSONParser.parse(text)
        self.originalText = text
    }

    /// The document's text: the original when nothing changed, else serialised in `style`.
    public func text(style: JSONStyle) -> String {
        if let originalText, let parsed = try? JSONParser.parse(originalText), parsed == json { return originalText }
        return json.serialized(style)
    }
}

/// The model's architecture when the file (or its directory) records one.
public enum Architecture: Sendable {
    /// A Keras model config (`model_config` attribute, `config.json` inside `.keras`).
    case keras(ConfigDocument)
    /// A Hugging Face `config.json` found beside the weights, with the `preprocessor_config.json` beside it
    /// when there is one (its per-channel statistics and sizes follow the edits).
    case huggingFace(ConfigDocument, preprocessor: ConfigDocument?)
}
