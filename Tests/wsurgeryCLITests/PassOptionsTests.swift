import ArgumentParser
import Testing
import WSurgery

@testable import wsurgery

/// The command line declares exactly the options of each library `PassSpec`, with the same kinds, so a
/// recipe step and a command take the same options.
@Suite("Command-line options follow the library's pass specifications")
struct PassOptionsTests {
    /// Options every writing command has besides its spec's (`SurgeryOptions`).
    static let shared: Set<String> = ["dry-run", "json", "force", "shard-size", "quiet", "help"]

    @Test("each command's help lists exactly its spec's options", arguments: PassCommands.all.map { ObjectIdentifier($0) })
    func helpListsTheSpecOptions(_ id: ObjectIdentifier) throws {
        let type = try #require(PassCommands.all.first { ObjectIdentifier($0) == id })
        let help = type.helpMessage(columns: 400)
        let declared = Set(help.matches(of: /--([a-z][a-z-]*)/).map { String($0.1) }).subtracting(Self.shared)
        #expect(declared == Set(type.spec.options.map(\.key)), "\(type.spec.command)")
        for option in type.spec.options {
            for value in option.choices ?? [] { #expect(help.contains(value), "\(type.spec.command) --\(option.key) lists \(value)") }
        }
    }

    @Test("a value of every option reaches the spec unchanged", arguments: PassCommands.all.map { ObjectIdentifier($0) })
    func valuesRoundTrip(_ id: ObjectIdentifier) throws {
        let type = try #require(PassCommands.all.first { ObjectIdentifier($0) == id })
        var words: [String] = []
        var expected: [String: [String]] = [:]
        for option in type.spec.options {
            let samples: [String]
            switch option.kind {
            case .flag:
                words.append("--\(option.key)")
                expected[option.key] = ["true"]
                continue
            case .integer: samples = option.repeating ? ["3", "4"] : ["3"]
            case .choice(let values): samples = [values.last!]
            case .text: samples = option.repeating ? ["a", "b"] : ["a"]
            }
            for sample in samples { words += ["--\(option.key)", sample] }
            expected[option.key] = samples
        }
        let parsed = try type.parse(words)
        #expect(parsed.arguments == PassArguments(expected), "\(type.spec.command) \(words)")
    }

    @Test func everySpecHasACommand() {
        let commands = PassCommands.all.map { type in type.spec.command }
        #expect(commands == PassCatalog.all.map(\.command))
    }
}
