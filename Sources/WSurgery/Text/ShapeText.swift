/// Shapes as text, the way Python prints them, for reports, tables and messages.
public enum ShapeText {
    /// `(3, 3, 3, 8)`; a rank-1 shape gets Python's trailing comma, `(8,)`.
    public static func python(_ shape: [Int]) -> String { python(shape.map(Optional.some)) }

    /// `(None, 32, 32, 3)`: a shape with unknown sizes as Keras prints it.
    public static func python(_ shape: [Int?]) -> String {
        "(" + shape.map { $0.map(String.init) ?? "None" }.joined(separator: ", ") + (shape.count == 1 ? ",)" : ")")
    }

    /// `[null, 32, 32, 3]`: a shape as JSON, unknown sizes null.
    public static func json(_ shape: [Int?]) -> JSONValue { .array(shape.map { $0.map(JSONValue.int) ?? .null }) }
}
