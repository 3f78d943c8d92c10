import ArgumentParser
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
        abstract: "Weight surgery on pretrained checkpoints (Keras HDF5, .keras, safetensors).",
        version: "0.1.0",
        subcommands: [Inspect.self, Convert.self, CollapseChannels.self, AdaptChannels.self, ReplaceHead.self, SetInputShape.self, DropLayer.self, ResizeDense.self]
    )
}

/// Runs `body`, turning library errors into a message on stderr and a sysexits-style exit code.
func reportingFailures(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as WSurgeryError {
        FileHandleOutput.standardError("wsurgery: error: \(error.description)\n")
        throw ExitCode(ExitStatus.code(for: error.category))
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List layers, tensors, totals, format metadata and the detected first convolution and head.")

    @Argument(help: "A checkpoint: .h5, .weights.h5, .keras, .safetensors, a *.safetensors.index.json or its directory.")
    var input: String

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func run() throws {
        try reportingFailures {
            let report = InspectReport(graph: try Checkpoint.read(input))
            print(json ? report.json.serialized(.pretty) : report.table)
        }
    }
}

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-container a checkpoint; with --layout, move it between Keras and PyTorch layouts.",
        discussion: "The output format follows OUT's name: .safetensors, .safetensors.index.json or a directory (sharded), .h5/.hdf5 (legacy Keras), .weights.h5 (Keras 3), .keras."
    )

    @Argument(help: "The input checkpoint.")
    var input: String

    @Argument(help: "The output path.")
    var output: String

    @Option(help: "Write sharded safetensors with shards of at most this size (e.g. 5GB, 500MB, 2GiB).")
    var shardSize: String?

    @Flag(help: "Replace OUT if it exists.")
    var force = false

    @Option(help: "Also move the tensors to another layout: torch (PyTorch names and axes, written as safetensors) or keras.")
    var layout: String?

    @Flag(help: "Print the report as JSON (with --layout).")
    var json = false

    func run() throws {
        try reportingFailures {
            let shard = try shardSize.map(ShardedSafetensors.parseSize)
            var passes: [any GraphPass] = []
            if let layout {
                guard let target = Layout(rawValue: layout), target != .unknown else {
                    throw WSurgeryError.invalidOption(option: "--layout", reason: "'\(layout)': expected torch or keras")
                }
                let format = try Checkpoint.outputFormat(for: output, shardSize: shard)
                if target == .torch, ![.safetensors, .shardedSafetensors].contains(format) {
                    throw WSurgeryError.invalidOption(option: "--layout", reason: "a PyTorch-layout state dict is written as .safetensors (Keras files need Keras layout); got \(output)")
                }
                passes.append(LayoutConversion(target: target))
            }
            let result = try Pipeline.run(passes, input: input, output: output, options: .init(force: force, shardSize: shard))
            if json {
                print(JSONValue.object([("input", .string(input)), ("output", .string(output)), ("passes", .array(result.reports.map(\.json)))]).serialized(.pretty))
            } else {
                for report in result.reports { print(report.table) }
                print("converted \(input) (\(result.sourceFormat.rawValue)) -> \(output): \(result.tensorCount) tensors, \(result.byteCount) bytes")
            }
            for note in result.writerNotes { FileHandleOutput.standardError("note: \(note)\n") }
        }
    }
}

/// Writes to the standard streams.
enum FileHandleOutput {
    static func standardError(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }
}
