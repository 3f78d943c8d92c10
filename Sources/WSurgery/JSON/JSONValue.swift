/// A JSON value that keeps what the standard decoders lose: the order of object keys and the exact
/// text of numbers. Model configs and safetensors headers are written back as they were read, so a
/// config that no pass touched comes out byte-for-byte the same, and a pass that edits one field
/// changes only that field.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// The number's literal text as it appeared (or will appear) in the document.
    case number(String)
    case string(String)
    case array([JSONValue])
    /// Key/value pairs in document order.
    case object([(String, JSONValue)])

    /// Equal values; numbers compare by value, objects by their pairs in order.
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.number(a), .number(b)): return a == b
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// An integer number value.
    public static func int(_ value: Int) -> JSONValue { .number(String(value)) }

    /// The value stored under `key` when this is an object.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let pairs) = self else { return nil }
        return pairs.first(where: { $0.0 == key })?.1
    }

    /// The string, when this is one.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The elements, when this is an array.
    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The pairs in order, when this is an object.
    public var objectValue: [(String, JSONValue)]? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// The boolean, when this is one.
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The value as an integer when it is a number written without fraction or exponent.
    public var intValue: Int? {
        if case .number(let text) = self { return Int(text) }
        return nil
    }

    /// The value as an Int64 when it is an integral number.
    public var int64Value: Int64? {
        if case .number(let text) = self { return Int64(text) }
        return nil
    }

    /// The number as a Double, when this is a number.
    public var doubleValue: Double? {
        if case .number(let text) = self { return Double(text) }
        return nil
    }

    /// Whether this is null.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// Sets `key` to `value` in an object, keeping the key's position when it exists and appending it otherwise.
    public mutating func set(_ key: String, _ value: JSONValue) {
        guard case .object(var pairs) = self else { return }
        if let index = pairs.firstIndex(where: { $0.0 == key }) {
            pairs[index].1 = value
        } else {
            pairs.append((key, value))
        }
        self = .object(pairs)
    }

    /// Removes `key` from an object.
    public mutating func remove(_ key: String) {
        guard case .object(let pairs) = self else { return }
        self = .object(pairs.filter { $0.0 != key })
    }

    /// A number's JSON text as Python prints a float (`0.5`, `1.0`, `1e-06`): shortest round-trip digits.
    public static func numberText(_ value: Double) -> String { "\(value)" }
}
