import ArgumentParser
import WSurgery

/// Turns recipe steps into passes with the commands' own option parsers: each option becomes
/// `--key=value` (a flag `--key`), parsed by the command's `PassOptions` type, so a recipe accepts exactly
/// what the command line does. Every error names the step's or the key's line.
enum RecipePasses {
    /// How a command takes one option.
    struct OptionSpec {
        var isFlag: Bool
        var isRepeating: Bool
    }

    /// The long options of a command, read from its argument definitions.
    static func schema(of type: any PassOptions.Type) -> [(name: String, spec: OptionSpec)] {
        guard let json = try? JSONParser.parse(type._dumpHelp()), case .array(let arguments)? = json["command"]?["arguments"] else { return [] }
        var result: [(name: String, spec: OptionSpec)] = []
        for argument in arguments {
            guard let kind = argument["kind"]?.stringValue, kind == "option" || kind == "flag",
                  case .array(let names)? = argument["names"] else { continue }
            for name in names where name["kind"]?.stringValue == "long" {
                guard let long = name["name"]?.stringValue, long != "help" else { continue }
                result.append((long, OptionSpec(isFlag: kind == "flag", isRepeating: argument["isRepeating"]?.boolValue == true)))
            }
        }
        return result
    }

    /// Every step's passes, checked up front. `output` is the output pattern, for passes that depend on
    /// the output format.
    static func passes(for recipe: Recipe, output: String?) throws -> [any GraphPass] {
        try recipe.steps.flatMap { try passes(for: $0, output: output) }
    }

    static func passes(for step: RecipeStep, output: String?) throws -> [any GraphPass] {
        guard let type = PassCatalog.options(named: step.command) else {
            throw step.error(key: nil, "unknown command '\(step.command)'; a step is one of \(PassCatalog.all.map { $0.commandName }.joined(separator: ", "))")
        }
        let schema = schema(of: type)
        var arguments: [String] = []
        for option in step.options {
            guard let spec = schema.first(where: { $0.name == option.key })?.spec else {
                throw step.error(key: option.key, "\(step.command) has no option '\(option.key)'; it takes \(schema.map(\.name).joined(separator: ", "))")
            }
            arguments += try self.arguments(option, spec, step)
        }
        return try build(type, arguments: arguments, step: step, schema: schema.map(\.name), output: output)
    }

    /// Parses the words with the command's own parser and builds its passes (generic over the options
    /// type: the parser's static methods need a concrete type).
    static func build<T: PassOptions>(_ type: T.Type, arguments: [String], step: RecipeStep, schema: [String], output: String?) throws -> [any GraphPass] {
        let options: T
        do { options = try T.parse(arguments) } catch {
            let message = T.message(for: error)
            let key = step.options.first { message.contains("'--\($0.key)") }?.key ?? schema.first { message.contains("'--\($0) ") || message.contains("'--\($0)'") }
            throw step.error(key: key, message)
        }
        do {
            let passes = try options.passes(output: output)
            for pass in passes { try pass.validate() }
            return passes
        } catch let error as WSurgeryError {
            if case let .invalidOption(option, reason) = error {
                let key = option.hasPrefix("--") ? String(option.dropFirst(2)) : option
                throw step.error(key: schema.contains(key) ? key : nil, reason)
            }
            throw step.error(key: nil, error.description)
        }
    }

    /// The command-line words for one option.
    static func arguments(_ option: RecipeOption, _ spec: OptionSpec, _ step: RecipeStep) throws -> [String] {
        let flag = "--" + option.key
        if spec.isFlag {
            switch option.value {
            case .bool(true), .text("true"): return [flag]
            case .bool(false), .text("false"): return []
            default: throw step.error(key: option.key, "a flag: expected true or false, got \(option.value.kindName) '\(option.value.text)'")
            }
        }
        switch option.value {
        case .text(let text): return ["\(flag)=\(text)"]
        case .bool(let value): return ["\(flag)=\(value)"]
        case .list(let items):
            guard spec.isRepeating else {
                throw step.error(key: option.key, "takes one value, got a list")
            }
            return try items.map { item in
                guard case .text(let text) = item else { throw step.error(key: option.key, "list items must be plain values, got \(item.kindName)") }
                return "\(flag)=\(text)"
            }
        case .null: throw step.error(key: option.key, "needs a value")
        case .mapping: throw step.error(key: option.key, "expected a value, got a mapping")
        }
    }
}
