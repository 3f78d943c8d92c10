import ArgumentParser
import Foundation
import WSurgery

/// Arguments every command that writes a checkpoint shares (`convert` and the surgery commands).
struct SurgeryOptions: ParsableArguments {
    @Argument(help: "The input checkpoint (any format `inspect` reads).")
    var input: String

    @Argument(help: "The output path (its name picks the format); not needed with --dry-run.")
    var output: String?

    @Flag(help: "Write nothing; print what would change.")
    var dryRun = false

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Flag(help: "Replace OUT if it exists.")
    var force = false

    @Option(help: "Write sharded safetensors with shards of at most this size (e.g. 5GB).")
    var shardSize: String?

    @Option(help: "How the provenance record fingerprints the input: xxh128 (checked with 'xxhsum -H2') or sha256 ('sha256sum').")
    var digest: DigestAlgorithm = .xxh128

    @Option(help: "Also write the input's layer graph as Graphviz DOT to this file, each layer coloured by what the command does to it.")
    var graph: String?

    @Flag(name: [.short, .long], help: "No progress line (there is none anyway when stdout is not a terminal).")
    var quiet = false

    /// Builds the passes, runs them and prints their reports (stdout) and the writer's notes (stderr).
    func run(_ makePasses: () throws -> [any GraphPass]) throws {
        try reportingFailures {
            let passes = try makePasses()
            guard dryRun || output != nil else {
                throw WSurgeryError.invalidArguments(reason: "OUT: an output path is needed (or --dry-run)")
            }
            let shard = try shardSize.map(ShardedSafetensors.parseSize)
            // Bytes written, on a terminal, for outputs large enough to take a while.
            let line = ProgressLine(quiet: quiet)
            defer { line.finish() }
            let progress = WriteProgress { done, total, task in
                if total >= 16_000_000 { line.bytes(done, of: total, task: task) }
            }
            let result = try WriteProgress.$current.withValue(line.enabled ? progress : nil) {
                try Pipeline.run(passes, input: input, output: dryRun ? nil : output, options: .init(force: force, shardSize: shard, digest: digest))
            }
            let written = dryRun ? nil : output.map(OutputSize.bytes(of:))
            if json {
                let object: JSONValue = .object([
                    ("input", .string(input)),
                    ("output", dryRun ? .null : .string(output ?? "")),
                    ("output_bytes", written.map { .int(Int($0)) } ?? .null),
                    ("tensor_bytes", .int(Int(result.byteCount))),
                    ("dry_run", .bool(dryRun)),
                    ("passes", .array(result.reports.map(\.json))),
                    ("reader_notes", .array(result.readerNotes.map { .string($0) })),
                    ("writer_notes", .array(result.writerNotes.map { .string($0) })),
                ])
                print(object.serialized(.pretty))
            } else {
                for report in result.reports { FileHandleOutput.standardOutput(report.table) }
                let tensors = "\(result.tensorCount) tensors (\(result.byteCount) bytes of tensor data)"
                let source = "from \(input) (\(result.sourceFormat.rawValue))"
                FileHandleOutput.standardOutput(
                    dryRun
                        ? "dry run: nothing written (\(tensors), \(source))"
                        : "wrote \(output ?? ""): \(written ?? 0) bytes, \(tensors), \(source)")
            }
            if let graph {
                let original = try Checkpoint.read(input)
                let fates = GraphPicture.fates(reports: result.reports, input: original, output: result.graph)
                let steps = result.reports.map { report in
                    report.pass + (report.options.isEmpty ? "" : " (" + report.options.map { "\($0.0)=\($0.1)" }.joined(separator: ", ") + ")")
                }
                let title = "\(input): " + (steps.joined(separator: ", ").nilIfEmpty ?? "convert")
                try writeText(GraphPicture.dot(original, fates: fates, title: title), to: graph)
            }
            for note in result.readerNotes + result.writerNotes { FileHandleOutput.standardError("note: \(note)\n") }
        }
    }
}

/// `--init` and `--seed`, for every command that draws new weights (`PassCatalog.initOption`, `seedOption`).
struct InitOptions: ParsableArguments {
    @Option(name: .customLong("init"), help: ArgumentHelp(PassCatalog.replaceHead.help("init")), completion: .list(Initializer.spellings))
    var initKind: String?

    @Option(parsing: .unconditional, help: ArgumentHelp(PassCatalog.replaceHead.help("seed")))
    var seed: UInt64?

    func fill(_ arguments: inout PassArguments) {
        arguments.set("init", initKind)
        arguments.set("seed", seed.map(String.init))
    }
}

/// The command-line face of one `PassSpec` from the library's `PassCatalog`: its options declared for the
/// argument parser (help text and allowed values from the spec), handed to the spec as `PassArguments`.
/// Recipes go through the same spec, so both accept the same options and give the same errors; a test
/// checks that each type declares exactly its spec's options.
protocol PassOptions: ParsableArguments {
    /// The specification this command line stands for.
    static var spec: PassSpec { get }
    /// The options given, by key.
    var arguments: PassArguments { get }
}

extension PassOptions {
    static var command: CommandConfiguration {
        CommandConfiguration(
            commandName: spec.command, abstract: spec.abstract,
            discussion: spec.discussion(spelling: { "--" + $0 }) + "\n\nExamples:\n"
                + ExampleLines.text(spec.examples.map { "wsurgery " + $0 })
                + "\n\n" + ExitCodeHelp.text)
    }
}

/// `convert` and every surgery command: IN, OUT and the shared options, then one spec's passes.
struct PassCommand<Options: PassOptions>: ParsableCommand {
    static var configuration: CommandConfiguration { Options.command }

    @OptionGroup var common: SurgeryOptions
    @OptionGroup var options: Options

    func run() throws { try common.run { try Options.spec.passes(options.arguments, output: common.output) } }
}

/// Every pass command, in the order `wsurgery --help` lists them.
enum PassCommands {
    static let all: [any PassOptions.Type] = [
        ConvertOptions.self, CollapseChannelsOptions.self, AdaptChannelsOptions.self, ReplaceHeadOptions.self,
        SetInputShapeOptions.self, DropLayerOptions.self, ResizeDenseOptions.self,
    ]
}

extension ChannelAdaptation.CollapseMode: ExpressibleByArgument {}
extension InputShapeChange.DensePolicy: ExpressibleByArgument {}
extension LayoutTarget: ExpressibleByArgument {}
extension DigestAlgorithm: ExpressibleByArgument {}

struct ConvertOptions: PassOptions {
    static let spec = PassCatalog.convert

    @Option(help: ArgumentHelp(spec.help("layout")))
    var layout: LayoutTarget?

    var arguments: PassArguments {
        var a = PassArguments()
        a.set("layout", layout?.rawValue)
        return a
    }
}

struct CollapseChannelsOptions: PassOptions {
    static let spec = PassCatalog.collapseChannels

    @Option(help: ArgumentHelp(spec.help("layer")))
    var layer: [String] = []

    @Option(help: ArgumentHelp(spec.help("mode")))
    var mode: ChannelAdaptation.CollapseMode?

    @Option(help: ArgumentHelp(spec.help("fold-normalization")))
    var foldNormalization: String?

    var arguments: PassArguments {
        var a = PassArguments()
        a.set("layer", layer)
        a.set("mode", mode?.rawValue)
        a.set("fold-normalization", foldNormalization)
        return a
    }
}

struct AdaptChannelsOptions: PassOptions {
    static let spec = PassCatalog.adaptChannels

    @Option(parsing: .unconditional, help: ArgumentHelp(spec.help("channels")))
    var channels: Int

    @Option(help: ArgumentHelp(spec.help("layer")))
    var layer: [String] = []

    @Option(help: ArgumentHelp(spec.help("extra")))
    var extra: String?

    @Flag(help: ArgumentHelp(spec.help("no-rescale")))
    var noRescale = false

    var arguments: PassArguments {
        var a = PassArguments()
        a.set("channels", String(channels))
        a.set("layer", layer)
        a.set("extra", extra)
        a.set("no-rescale", flag: noRescale)
        return a
    }
}

struct ReplaceHeadOptions: PassOptions {
    static let spec = PassCatalog.replaceHead

    @Option(parsing: .unconditional, help: ArgumentHelp(spec.help("classes")))
    var classes: Int

    @Option(help: ArgumentHelp(spec.help("layer")))
    var layer: [String] = []

    @OptionGroup var initOptions: InitOptions

    @Option(help: ArgumentHelp(spec.help("bias")), completion: .list(Initializer.spellings))
    var bias: String?

    @Option(help: ArgumentHelp(spec.help("keep-classes")))
    var keepClasses: String?

    var arguments: PassArguments {
        var a = PassArguments()
        a.set("classes", String(classes))
        a.set("layer", layer)
        initOptions.fill(&a)
        a.set("bias", bias)
        a.set("keep-classes", keepClasses)
        return a
    }
}

struct SetInputShapeOptions: PassOptions {
    static let spec = PassCatalog.setInputShape

    @Option(help: ArgumentHelp(spec.help("size")))
    var size: String

    @Option(parsing: .unconditional, help: ArgumentHelp(spec.help("channels")))
    var channels: Int?

    @Option(help: ArgumentHelp(spec.help("dense-policy")))
    var densePolicy: InputShapeChange.DensePolicy?

    @Option(help: ArgumentHelp(spec.help("flattened-map")))
    var flattenedMap: [String] = []

    @OptionGroup var initOptions: InitOptions

    var arguments: PassArguments {
        var a = PassArguments()
        a.set("size", size)
        a.set("channels", channels.map(String.init))
        a.set("dense-policy", densePolicy?.rawValue)
        a.set("flattened-map", flattenedMap)
        initOptions.fill(&a)
        return a
    }
}

struct DropLayerOptions: PassOptions {
    static let spec = PassCatalog.dropLayer

    @Option(help: ArgumentHelp(spec.help("layer")))
    var layer: [String] = []

    @Flag(help: ArgumentHelp(spec.help("top")))
    var top = false

    @Flag(help: ArgumentHelp(spec.help("keep-input-shape")))
    var keepInputShape = false

    @Flag(help: ArgumentHelp(spec.help("reinit-next")))
    var reinitNext = false

    @OptionGroup var initOptions: InitOptions

    var arguments: PassArguments {
        var a = PassArguments()
        a.set("layer", layer)
        a.set("top", flag: top)
        a.set("keep-input-shape", flag: keepInputShape)
        a.set("reinit-next", flag: reinitNext)
        initOptions.fill(&a)
        return a
    }
}

struct ResizeDenseOptions: PassOptions {
    static let spec = PassCatalog.resizeDense

    @Option(help: ArgumentHelp(spec.help("layer")))
    var layer: String

    @Option(parsing: .unconditional, help: ArgumentHelp(spec.help("units")))
    var units: Int

    @OptionGroup var initOptions: InitOptions

    @Option(help: ArgumentHelp(spec.help("next")))
    var next: [String] = []

    var arguments: PassArguments {
        var a = PassArguments()
        a.set("layer", layer)
        a.set("units", String(units))
        initOptions.fill(&a)
        a.set("next", next)
        return a
    }
}

/// The bytes an output occupies on disk: a file's size; for a directory (a model folder, shards) the
/// files in it; for a shard index the index and the shards it names.
enum OutputSize {
    static func bytes(of path: String) -> UInt64 {
        let manager = FileManager.default
        func size(_ file: String) -> UInt64 { ((try? manager.attributesOfItem(atPath: file))?[.size] as? NSNumber)?.uint64Value ?? 0 }
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: path, isDirectory: &isDirectory) else { return 0 }
        if isDirectory.boolValue {
            let names = (try? manager.contentsOfDirectory(atPath: path)) ?? []
            return names.reduce(0) { $0 + size(path + "/" + $1) }
        }
        if path.hasSuffix(ShardedSafetensors.indexSuffix), let text = try? String(contentsOfFile: path, encoding: .utf8),
            case .object(let map)? = (try? JSONParser.parse(text))?["weight_map"]
        {
            let directory = OutputFile.directory(of: path)
            return Set(map.compactMap { $0.1.stringValue }).reduce(size(path)) { $0 + size(directory + "/" + $1) }
        }
        return size(path)
    }
}

extension String {
    /// nil for the empty string.
    var nilIfEmpty: String? { isEmpty ? nil : self }
}

/// Writes a text file atomically (`-` for stdout).
func writeText(_ text: String, to path: String) throws {
    if path == "-" {
        print(text, terminator: "")
        return
    }
    let file = try OutputFile(path: path)
    try file.write(Array(text.utf8))
    try file.commit()
}

/// Help examples that stay whole for copy and paste: a line longer than the help's 80 columns would be
/// wrapped by the help formatter, so a long one is broken between words with a shell continuation (` \\`).
enum ExampleLines {
    static let width = 78

    static func text(_ examples: [String]) -> String {
        examples.map(lines).joined(separator: "\n")
    }

    /// One example as indented lines of at most `width` columns, never breaking inside quotes.
    static func lines(_ example: String) -> String {
        var words: [String] = []
        var quoted = false
        for character in example {
            if character == " ", !quoted {
                words.append("")
                continue
            }
            if character == "'" { quoted.toggle() }
            if words.isEmpty { words.append("") }
            words[words.count - 1].append(character)
        }
        // Lines of words; an option moves to the next line with its value.
        var lines: [[String]] = [[]]
        func length(_ line: [String], first: Bool) -> Int { (first ? 2 : 6) + line.joined(separator: " ").count + 2 }
        for word in words where !word.isEmpty {
            let last = lines.count - 1
            if !lines[last].isEmpty, length(lines[last] + [word], first: last == 0) > width {
                let option = lines[last].lastIndex { $0.hasPrefix("-") }.flatMap { $0 > 0 ? $0 : nil }
                let moved = option.map { Array(lines[last][$0...]) } ?? []
                if let option, length(moved + [word], first: false) <= width {
                    lines[last].removeSubrange(option...)
                    lines.append(moved)
                } else {
                    lines.append([])
                }
            }
            lines[lines.count - 1].append(word)
        }
        return lines.enumerated().map { index, line in
            (index == 0 ? "  " : "      ") + line.joined(separator: " ") + (index == lines.count - 1 ? "" : " \\")
        }
        .joined(separator: "\n")
    }
}

/// The exit codes, as every command's help lists them (the README's table, shorter).
enum ExitCodeHelp {
    static let text = """
        Exit codes: 0 success; 64 usage (a bad option, an unknown layer or output extension, OUT is IN); \
        65 bad input data (not a checkpoint, corrupt, or surgery cannot apply to this model); \
        66 an input cannot be opened; 70 a bug (the output read back did not hold what was meant; nothing written); \
        73 the output cannot be created (exists: use --force); 74 I/O error.
        """
}
