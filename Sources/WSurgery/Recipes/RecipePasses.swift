/// Turns a recipe's steps into passes with the same option specifications the command line uses
/// (`PassCatalog`): every key is checked against its command's options, every value against the
/// option's kind, and every error names the step's or the key's line.
extension Recipe {
    /// Every step's passes, checked up front. `output` is the output pattern, for passes that depend on
    /// the output format.
    public func passes(output: String?) throws -> [any GraphPass] {
        try steps.flatMap { try $0.passes(output: output) }
    }
}

extension RecipeStep {
    /// This step's passes, validated.
    public func passes(output: String?) throws -> [any GraphPass] {
        guard let spec = PassCatalog.spec(named: command) else {
            throw error(key: nil, "unknown command '\(command)'; a step is one of \(PassCatalog.all.map(\.command).joined(separator: ", "))")
        }
        var arguments = PassArguments()
        for option in options {
            guard let optionSpec = spec.option(option.key) else {
                throw error(key: option.key, "\(command) has no option '\(option.key)'; it takes \(spec.options.map(\.key).joined(separator: ", "))")
            }
            arguments.values[option.key] = try values(option, optionSpec)
        }
        do {
            return try spec.passes(arguments, output: output)
        } catch let failure as WSurgeryError {
            let recipeSpelling: (String) -> String = { "'\($0)'" }
            if case let .invalidOption(key, reason) = failure {
                throw error(key: spec.option(key) != nil ? key : nil, OptionMention.render(reason, recipeSpelling))
            }
            throw error(key: nil, failure.message(spelling: recipeSpelling))
        }
    }

    /// The texts of one option's value, checked against its kind.
    func values(_ option: RecipeOption, _ spec: OptionSpec) throws -> [String] {
        if spec.kind == .flag {
            switch option.value {
            case .bool(true), .text("true"): return ["true"]
            case .bool(false), .text("false"): return []
            default: throw error(key: option.key, "a flag: expected true or false, got \(option.value.kindName) '\(option.value.text)'")
            }
        }
        let texts: [String]
        switch option.value {
        case .text(let text): texts = [text]
        case .bool(let value): texts = [value ? "true" : "false"]
        case .list(let items):
            guard spec.repeating else { throw error(key: option.key, "takes one value, got a list") }
            texts = try items.map { item in
                guard case .text(let text) = item else { throw error(key: option.key, "list items must be plain values, got \(item.kindName)") }
                return text
            }
        case .null: throw error(key: option.key, "needs a value")
        case .mapping: throw error(key: option.key, "expected a value, got a mapping")
        }
        for text in texts {
            switch spec.kind {
            case .integer where Int(text) == nil && UInt64(text) == nil:
                throw error(key: option.key, "'\(text)' is not a whole number")
            case .choice(let allowed) where !allowed.contains(text):
                throw error(key: option.key, "'\(text)': expected \(PassArguments.alternatives(allowed))")
            default: break
            }
        }
        return texts
    }
}
