import ArgumentParser
import Foundation
import WSurgery

#if canImport(Glibc)
    import Glibc
#endif

/// The `wsurgery` command line: parses arguments, runs the library, prints reports. Exit codes come from
/// one place, `ExitStatus`.
@main
struct WSurgeryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wsurgery",
        abstract: "Weight surgery on pretrained checkpoints (Keras .h5/.keras, safetensors, torch.save, Hugging Face folders).",
        version: "0.1.0",
        subcommands: [
            Inspect.self, PassCommand<ConvertOptions>.self, Run.self, Diff.self,
            PassCommand<CollapseChannelsOptions>.self, PassCommand<AdaptChannelsOptions>.self, PassCommand<ReplaceHeadOptions>.self,
            PassCommand<SetInputShapeOptions>.self, PassCommand<DropLayerOptions>.self, PassCommand<ResizeDenseOptions>.self,
        ]
    )

    /// Parses and runs the command. One error style for everything: `wsurgery: error: ...` on stderr,
    /// whether the library or the argument parser found the problem (usage errors exit 64); `-V` is
    /// `--version`. Options are mentioned in messages as the command line spells them.
    static func main() {
        MessageStyle.optionSpelling = { "--" + $0 }
        var arguments = Array(CommandLine.arguments.dropFirst())
        // The child that reads an HDF5 file before this process trusts it (see HDF5Probe).
        if arguments.count == 2, arguments[0] == HDF5Probe.subcommand { Glibc.exit(HDF5Probe.runChild(path: arguments[1])) }
        HDF5Probe.executable = WorkerProcess.executable
        ProcessGuard.install()
        do { Limits.current = try Limits.parse(ProcessInfo.processInfo.environment[Limits.environmentKey] ?? "") } catch {
            FileHandleOutput.standardError("wsurgery: error: \(error)\n")
            exit(withError: ExitCode(64))
        }
        if arguments == ["-V"] { arguments = ["--version"] }
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch let code as ExitCode {
            // A failure ends at once, without the libraries' exit handlers: after a failed write libhdf5
            // may hold a half-closed file it would crash on while shutting down.
            if code != .success {
                fflush(nil)
                _exit(code.rawValue)
            }
            exit(withError: code)
        } catch {
            // --help and --version are "errors" that exit 0: the parser prints them as it does.
            if exitCode(for: error) == .success { exit(withError: error) }
            let text = message(for: error).trimmingCharacters(in: .whitespacesAndNewlines)
            let subcommand = arguments.first { !$0.hasPrefix("-") }.flatMap { name in
                configuration.subcommands.first { $0._commandName == name }.map { _ in name }
            }
            FileHandleOutput.standardError(
                "wsurgery: error: \(text)\n(see 'wsurgery \(subcommand.map { "\($0) " } ?? "")--help')\n")
            exit(withError: ExitCode(64))
        }
    }
}

/// Runs `body`, turning library errors into a message on stderr and a sysexits-style exit code.
func reportingFailures(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as WSurgeryError {
        FileHandleOutput.standardError("wsurgery: error: \(error.description)\n")
        throw ExitStatus.failure(error.category).exitCode
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List layers, tensors, totals, format metadata and the detected first convolution and head.",
        discussion: """
            Parameters are counted as torch's parameters() and Keras's trainable weights are; buffers (running \
            statistics, counters) apart.

            Examples:
              wsurgery inspect model.h5
              wsurgery inspect checkpoint/ --json
              wsurgery inspect model.keras --graph model.dot

            \(ExitCodeHelp.text)
            """)

    @Argument(
        help: """
            A checkpoint: .h5, .weights.h5, .keras, .safetensors, a torch.save file (.pth, .pt, .bin, .ckpt; FILE#KEY \
            picks an entry), a sharded index (*.safetensors.index.json, pytorch_model.bin.index.json) or a Hugging \
            Face model folder.
            """)
    var input: String

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    @Option(help: "Also write the layer graph as Graphviz DOT to this file ('-': stdout instead of the table).")
    var graph: String?

    func run() throws {
        try reportingFailures {
            // Reading can take a while (a multi-GB .keras is extracted first): a progress line on a terminal.
            let line = ProgressLine(quiet: false)
            let progress = WriteProgress { done, total, task in
                if total >= 16_000_000 { line.bytes(done, of: total, task: task) }
            }
            let checkpoint = try WriteProgress.$current.withValue(line.enabled ? progress : nil) { try Checkpoint.read(input) }
            line.finish()
            if let graph { try writeText(GraphPicture.dot(checkpoint, title: input), to: graph) }
            if graph == "-" { return }
            let report = InspectReport(graph: checkpoint)
            FileHandleOutput.standardOutput(json ? report.json.serialized(.pretty) : report.table)
        }
    }
}

struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare two checkpoints tensor by tensor, across formats.",
        discussion:
            """
            Tensors are matched by layer/name. Lists tensors only in A or only in B, shape and dtype changes, and for the \
            rest whether they are bit-identical or their max absolute and relative differences.

            Examples:
              wsurgery diff model.h5 model.safetensors
              wsurgery diff before.safetensors after.safetensors --atol 1e-6 --json

            Exit codes: 0 equal within --atol; 1 they differ; 64, 65, 66, 74 as for every command (usage, bad data, \
            cannot open, I/O).
            """
    )

    @Argument(help: "The first checkpoint.")
    var a: String

    @Argument(help: "The second checkpoint.")
    var b: String

    @Option(help: "Values within this absolute difference count as equal (default 0: identical values).")
    var atol: Double = 0

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func run() throws {
        var equal = true
        try reportingFailures {
            guard atol >= 0, atol.isFinite else { throw WSurgeryError.invalidOption(option: "atol", reason: "must be a finite number >= 0") }
            let diff = try CheckpointDiff.compare(a, b, atol: atol)
            FileHandleOutput.standardOutput(json ? diff.json.serialized(.pretty) : diff.table)
            equal = diff.equal
        }
        if !equal { throw ExitStatus.differ.exitCode }
    }
}

/// Writes to the standard streams.
enum FileHandleOutput {
    /// Prints `text` on stdout with every control character inside its lines shown escaped, so a name
    /// from a file cannot drive the terminal (JSON escapes its own).
    static func standardOutput(_ text: String) {
        print(text.split(separator: "\n", omittingEmptySubsequences: false).map { TextSafety.escaped(String($0)) }.joined(separator: "\n"))
    }

    /// Writes `text`; control characters inside its lines (from a file's names) are shown escaped.
    /// `control` (the terminal codes of our own progress line) goes first, as it is.
    static func standardError(_ text: String, control: String = "") {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { TextSafety.escaped(String($0)) }
        let bytes = Array(control.utf8) + Array(lines.joined(separator: "\n").utf8)
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }
}
