import Foundation
import Yams

/// Where a recipe entry came from, for error messages: a line of a recipe file or a step given on its own.
public struct RecipeLocation: Sendable, Equatable, CustomStringConvertible {
    /// The recipe file, or nil for a step given on its own.
    public var file: String?
    /// The 1-based line in the file, or the 1-based position of the step given on its own.
    public var line: Int

    /// A location.
    public init(file: String?, line: Int) {
        self.file = file
        self.line = line
    }

    /// `recipe.yaml:7`, or the `pass` option and its position.
    public var description: String { file.map { "\($0):\(line)" } ?? "\(option("pass")) \(line)" }
}

/// An option value as a recipe wrote it. Numbers stay text: the command's own parser reads them, so a
/// recipe accepts exactly what the command line accepts.
public enum RecipeValue: Sendable, Equatable {
    case text(String)
    case bool(Bool)
    case list([RecipeValue])
    case null
    /// A mapping where a value was expected (always an error, kept to say so).
    case mapping

    /// The value as written on a command line (`a,b` for a list).
    public var text: String {
        switch self {
        case .text(let s): return s
        case .bool(let b): return b ? "true" : "false"
        case .list(let items): return items.map(\.text).joined(separator: ",")
        case .null: return "null"
        case .mapping: return "{...}"
        }
    }

    /// What kind of value this is, for messages.
    public var kindName: String {
        switch self {
        case .text: return "a value"
        case .bool: return "a boolean"
        case .list: return "a list"
        case .null: return "nothing (null)"
        case .mapping: return "a mapping"
        }
    }
}

/// One option of a step: `classes: 5`.
public struct RecipeOption: Sendable, Equatable {
    /// The option's key (`classes`).
    public var key: String
    /// Its value as written.
    public var value: RecipeValue
    /// Where the key was written.
    public var location: RecipeLocation

    /// An option of a step.
    public init(key: String, value: RecipeValue, location: RecipeLocation) {
        self.key = key
        self.value = value
        self.location = location
    }
}

/// One step: a command name (`replace-head`) and its options, in the order written.
public struct RecipeStep: Sendable, Equatable {
    /// The command (`replace-head`).
    public var command: String
    /// Its options in the order written.
    public var options: [RecipeOption]
    /// Where the step was written.
    public var location: RecipeLocation

    /// A step.
    public init(command: String, options: [RecipeOption], location: RecipeLocation) {
        self.command = command
        self.options = options
        self.location = location
    }

    /// The error for this step, pointing at `key`'s line when the step has that key.
    public func error(key: String?, _ reason: String) -> WSurgeryError {
        let at = key.flatMap { k in options.first { $0.key == k }?.location } ?? location
        return .invalidRecipe(location: at.description, key: key, reason: reason)
    }

    /// The one-line form of a step, used on the command line and in reports: `replace-head classes=5 seed=1`.
    public var text: String {
        ([command] + options.map { "\($0.key)=\($0.value.text)" }).joined(separator: " ")
    }

    /// Parses a step in its one-line form: `COMMAND [KEY=VALUE | FLAG]...`. A bare key is a flag set to true.
    public static func parse(passArgument: String, position: Int) throws -> RecipeStep {
        let location = RecipeLocation(file: nil, line: position)
        let words = passArgument.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let command = words.first else {
            throw WSurgeryError.invalidRecipe(
                location: location.description, key: nil, reason: "empty \(option("pass")); expected 'COMMAND key=value ...'")
        }
        var options: [RecipeOption] = []
        let specs = PassCatalog.spec(named: command)?.options ?? []
        let known = Set(specs.map(\.key))
        let takesValue = Set(specs.filter { $0.kind != .flag }.map(\.key))
        var previous: (word: String, key: String)?
        for word in words.dropFirst() {
            let key: String
            let value: RecipeValue
            // `--classes 5`, written as on the command line: the value after a bare key.
            if !word.contains("="), let (flagWord, flagKey) = previous, !known.contains(word.hasPrefix("--") ? String(word.dropFirst(2)) : word),
                takesValue.contains(flagKey)
            {
                throw WSurgeryError.invalidRecipe(
                    location: location.description, key: flagKey,
                    reason: "'\(flagWord) \(word)': a step's options are key=value; write \(flagKey)=\(word)")
            }
            previous = nil
            if let eq = word.firstIndex(of: "=") {
                key = String(word[..<eq])
                value = .text(String(word[word.index(after: eq)...]))
            } else {
                key = word
                value = .bool(true)
            }
            let bare = key.hasPrefix("--") ? String(key.dropFirst(2)) : key
            if bare.isEmpty {
                throw WSurgeryError.invalidRecipe(location: location.description, key: nil, reason: "'\(word)' has no key; expected key=value")
            }
            if options.contains(where: { $0.key == bare }) {
                throw WSurgeryError.invalidRecipe(location: location.description, key: bare, reason: "given twice")
            }
            options.append(RecipeOption(key: bare, value: value, location: location))
            if case .bool = value { previous = (word, bare) }
        }
        return RecipeStep(command: command, options: options, location: location)
    }
}

/// A recipe: passes applied in order to every input, and how outputs are named.
///
///     passes:
///       - collapse-channels: {mode: sum}
///       - replace-head: {classes: 5, seed: 1}
///     output: "{stem}-gray5.h5"
///
/// YAML or JSON (JSON is read as YAML). Structural errors (unknown keys, wrong kinds of values) are
/// reported here with their line; whether each step's options make sense is for the command parser
/// the caller supplies.
public struct Recipe: Sendable {
    /// The steps, applied in order.
    public var steps: [RecipeStep]
    /// The output name pattern (see `OutputPattern`), when the recipe gives one.
    public var output: String?
    /// Where the output pattern was written.
    public var outputLocation: RecipeLocation?
    /// `shard-size` for sharded safetensors outputs, in bytes, when given.
    public var shardSize: UInt64?
    /// The recipe file, or nil for a chain of one-line steps.
    public var path: String?

    /// A recipe.
    public init(steps: [RecipeStep], output: String? = nil, outputLocation: RecipeLocation? = nil, shardSize: UInt64? = nil, path: String? = nil) {
        self.steps = steps
        self.output = output
        self.outputLocation = outputLocation
        self.shardSize = shardSize
        self.path = path
    }

    /// The keys a recipe's top level may have.
    public static let topLevelKeys = ["passes", "output", "shard-size"]

    /// Reads and parses a recipe file.
    public static func load(path: String) throws -> Recipe {
        guard let text = try InputFile.text(path: path, what: "the recipe") else {
            throw WSurgeryError.invalidRecipe(location: path, key: nil, reason: "not UTF-8 text")
        }
        return try parse(text, path: path)
    }

    /// Parses recipe text; `path` names it in errors.
    public static func parse(_ text: String, path: String) throws -> Recipe {
        func at(_ node: Node?) -> RecipeLocation { RecipeLocation(file: path, line: node?.mark?.line ?? 1) }
        func fail(_ node: Node?, _ key: String?, _ reason: String) -> WSurgeryError {
            .invalidRecipe(location: at(node).description, key: key, reason: reason)
        }
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch let error as YamlError {
            throw WSurgeryError.invalidRecipe(
                location: path + (Recipe.line(of: error).map { ":\($0)" } ?? ""), key: nil,
                reason: "not valid YAML or JSON: \(Recipe.problem(of: error))")
        } catch {
            throw WSurgeryError.invalidRecipe(location: path, key: nil, reason: "not valid YAML or JSON: \(error)")
        }
        guard let root, case .mapping(let top) = root else {
            throw fail(root, nil, "a recipe is a mapping with 'passes' (a list of steps) and optionally 'output'")
        }
        var recipe = Recipe(steps: [], path: path)
        var passesNode: Node?
        for (keyNode, value) in top {
            guard let key = keyNode.string else { throw fail(keyNode, nil, "keys must be text") }
            switch key {
            case "passes": passesNode = value
            case "output":
                guard case .scalar = value, let pattern = value.string, value.null == nil, !pattern.isEmpty else {
                    throw fail(value, key, "expected a file name pattern such as \"{stem}-gray.h5\", got \(kind(value))")
                }
                recipe.output = pattern
                recipe.outputLocation = at(value)
            case "shard-size":
                guard case .scalar = value, let size = value.string, value.null == nil else {
                    throw fail(value, key, "expected a size such as 5GB, got \(kind(value))")
                }
                do { recipe.shardSize = try ShardedSafetensors.parseSize(size) } catch let error as WSurgeryError {
                    guard case let .invalidOption(_, reason) = error else { throw error }
                    throw fail(value, key, reason)
                }
            default:
                throw fail(keyNode, key, "unknown key; a recipe has \(topLevelKeys.joined(separator: ", "))")
            }
        }
        guard let passesNode else { throw fail(root, "passes", "missing; list the steps to apply, e.g. '- collapse-channels: {mode: sum}'") }
        guard case .sequence(let items) = passesNode, !items.isEmpty else {
            throw fail(passesNode, "passes", "expected a non-empty list of steps, got \(kind(passesNode))")
        }
        for item in items {
            switch item {
            case .scalar:
                // A bare command name: `- collapse-channels`.
                guard let command = item.string, item.null == nil else { throw fail(item, "passes", "a step cannot be empty") }
                recipe.steps.append(RecipeStep(command: command, options: [], location: at(item)))
            case .mapping(let mapping):
                guard mapping.count == 1, let (commandNode, body) = mapping.first, let command = commandNode.string else {
                    let keys = mapping.compactMap { $0.key.string }.joined(separator: ", ")
                    throw fail(
                        item, nil,
                        "a step is one command with its options (e.g. '- replace-head: {classes: 5}'); this one has \(mapping.count) keys: \(keys) - check the indentation"
                    )
                }
                var options: [RecipeOption] = []
                switch body {
                case .mapping(let optionNodes):
                    for (optionKey, optionValue) in optionNodes {
                        guard let key = optionKey.string else { throw fail(optionKey, nil, "option names must be text") }
                        options.append(RecipeOption(key: key, value: value(optionValue), location: at(optionKey)))
                    }
                case .scalar where body.null != nil:
                    break
                default:
                    throw fail(body, command, "expected the options as a mapping (e.g. {classes: 5}), got \(kind(body))")
                }
                recipe.steps.append(RecipeStep(command: command, options: options, location: at(commandNode)))
            default:
                throw fail(item, "passes", "expected a step such as '- replace-head: {classes: 5}', got \(kind(item))")
            }
        }
        return recipe
    }

    static func value(_ node: Node) -> RecipeValue {
        switch node {
        case .scalar(let scalar):
            if node.null != nil { return .null }
            if scalar.style == .plain, let b = node.bool { return .bool(b) }
            return .text(scalar.string)
        case .sequence(let items): return .list(items.map(value))
        case .mapping: return .mapping
        case .alias: return .text(node.string ?? "")
        }
    }

    static func kind(_ node: Node) -> String {
        switch node {
        case .scalar: return node.null != nil ? "nothing (null)" : "'\(node.string ?? "")'"
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        case .alias: return "an alias"
        }
    }

    /// The line a Yams error points at.
    static func line(of error: YamlError) -> Int? {
        switch error {
        case let .scanner(_, _, mark, _), let .parser(_, _, mark, _), let .composer(_, _, mark, _):
            return mark.line
        case let .duplicatedKeysInMapping(_, context):
            return context.mark.line
        default:
            return nil
        }
    }

    static func problem(of error: YamlError) -> String {
        switch error {
        case let .scanner(_, problem, _, _), let .parser(_, problem, _, _), let .composer(_, problem, _, _):
            return problem
        case let .duplicatedKeysInMapping(duplicates, _):
            return "duplicate key(s) " + duplicates.map { "'\($0)'" }.joined(separator: ", ")
        default:
            return "\(error)"
        }
    }
}
