import ArgumentParser
import WSurgery

/// Arguments every command that writes a checkpoint shares (`convert` and the surgery commands).
struct SurgeryOptions: ParsableArguments {
    @Argument(help: "The input checkpoint.")
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

    @Flag(name: [.short, .long], help: "No progress line (there is none anyway when stdout is not a terminal).")
    var quiet = false

    /// Builds the passes, runs them and prints their reports (stdout) and the writer's notes (stderr).
    func run(_ makePasses: () throws -> [any GraphPass]) throws {
        try reportingFailures {
            let passes = try makePasses()
            guard dryRun || output != nil else {
                throw WSurgeryError.invalidOption(option: "OUT", reason: "an output path is needed (or --dry-run)")
            }
            let shard = try shardSize.map(ShardedSafetensors.parseSize)
            // Bytes written, on a terminal, for outputs large enough to take a while.
            let line = ProgressLine(quiet: quiet)
            defer { line.finish() }
            let progress = WriteProgress { done, total, file in
                if total >= 16_000_000 { line.bytes(done, of: total, file: file) }
            }
            let result = try WriteProgress.$current.withValue(line.enabled ? progress : nil) {
                try Pipeline.run(passes, input: input, output: dryRun ? nil : output, options: .init(force: force, shardSize: shard))
            }
            if json {
                let object: JSONValue = .object([
                    ("input", .string(input)),
                    ("output", dryRun ? .null : .string(output ?? "")),
                    ("dry_run", .bool(dryRun)),
                    ("passes", .array(result.reports.map(\.json))),
                    ("writer_notes", .array(result.writerNotes.map { .string($0) })),
                ])
                print(object.serialized(.pretty))
            } else {
                for report in result.reports { print(report.table) }
                let size = "\(result.tensorCount) tensors, \(result.byteCount) bytes, from \(input) (\(result.sourceFormat.rawValue))"
                print(dryRun ? "dry run: nothing written (\(size))" : "wrote \(output ?? ""): \(size)")
            }
            for note in result.writerNotes { FileHandleOutput.standardError("note: \(note)\n") }
        }
    }
}

/// `--init` and `--seed`, for every command that draws new weights.
struct InitOptions: ParsableArguments {
    @Option(name: .customLong("init"), help: "How to initialise new weights: torch-default, kaiming-uniform, kaiming-normal, glorot-uniform, he-normal, uniform:A, trunc-normal:STD, zeros.")
    var initKind: String?

    @Option(help: "Seed of the initialisation (same seed and input give identical bytes).")
    var seed: UInt64 = 0

    func initializer() throws -> Initializer? { try initKind.map { try Initializer(parsing: $0, option: "--init") } }
}

/// `--layer a --layer b` and `--layer a,b` alike.
func parseLayers(_ layers: [String]) -> [String] {
    layers.flatMap { $0.split(separator: ",").map(String.init) }
}

/// The options of one pass-making command. The command line and recipes (`run`) both parse them with
/// this type, so a recipe step takes exactly the options its command takes.
protocol PassOptions: ParsableArguments {
    /// The command's name (also the step name in recipes) and help.
    static var command: CommandConfiguration { get }
    /// The passes these options ask for; `output` (when known) lets a pass refuse a format it cannot write.
    func passes(output: String?) throws -> [any GraphPass]
}

extension PassOptions {
    static var commandName: String { command.commandName ?? "" }
}

/// `convert` and every surgery command: IN, OUT and the shared options, then one `PassOptions` type's passes.
struct PassCommand<Options: PassOptions>: ParsableCommand {
    static var configuration: CommandConfiguration { Options.command }

    @OptionGroup var common: SurgeryOptions
    @OptionGroup var options: Options

    func run() throws { try common.run { try options.passes(output: common.output) } }
}

/// Every command a recipe step can name, in the order `wsurgery --help` lists them.
enum PassCatalog {
    static let all: [any PassOptions.Type] = [
        ConvertOptions.self, CollapseChannelsOptions.self, AdaptChannelsOptions.self, ReplaceHeadOptions.self,
        SetInputShapeOptions.self, DropLayerOptions.self, ResizeDenseOptions.self,
    ]

    static func options(named name: String) -> (any PassOptions.Type)? { all.first { $0.commandName == name } }
}

struct CollapseChannelsOptions: PassOptions {
    static let command = CommandConfiguration(
        commandName: "collapse-channels",
        abstract: "Make the first convolution take one channel (RGB -> gray).",
        discussion: "--mode sum (default, timm) keeps model(gray) == original(gray copied to RGB). --fold-normalization folds a per-channel input normalisation into the kernel and bias so the new model takes the raw gray image."
    )

    @Option(help: "The convolution to change (default: detected).")
    var layer: [String] = []

    @Option(help: "sum, mean or luma.")
    var mode: String = "sum"

    @Option(help: "imagenet, or MEAN,MEAN,MEAN/STD,STD,STD.")
    var foldNormalization: String?

    func passes(output: String?) throws -> [any GraphPass] {
        guard let mode = ChannelAdaptation.CollapseMode(rawValue: mode) else {
            throw WSurgeryError.invalidOption(option: "--mode", reason: "'\(mode)': expected sum, mean or luma")
        }
        let fold = try foldNormalization.map(ChannelAdaptation.Normalization.init(parsing:))
        return [ChannelAdaptation(rule: .collapse(mode), layers: parseLayers(layer), foldNormalization: fold)]
    }
}

struct AdaptChannelsOptions: PassOptions {
    static let command = CommandConfiguration(
        commandName: "adapt-channels",
        abstract: "Make the first convolution take N input channels.",
        discussion: "Default (timm): repeat the source channels cyclically and scale by source/N (sum for N = 1). --extra fills channels beyond the source ones: repeat, zeros, mean or copy:K; the source channels keep their weights and, unless --extra zeros or --no-rescale, everything is scaled by source/N."
    )

    @Option(help: "The new number of input channels.")
    var channels: Int

    @Option(help: "The convolution to change (default: detected).")
    var layer: [String] = []

    @Option(help: "repeat, zeros, mean or copy:K.")
    var extra: String?

    @Flag(help: "Do not scale the kernel by source/N.")
    var noRescale = false

    func passes(output: String?) throws -> [any GraphPass] {
        let fill = try extra.map(ChannelAdaptation.ExtraFill.init(parsing:))
        return [ChannelAdaptation(rule: .adapt(channels: channels, extra: fill, rescale: !noRescale), layers: parseLayers(layer))]
    }
}

struct ReplaceHeadOptions: PassOptions {
    static let command = CommandConfiguration(
        commandName: "replace-head",
        abstract: "Give the classifier head a new number of classes.",
        discussion: "--init: torch-default, kaiming-uniform, kaiming-normal, glorot-uniform, he-normal, uniform:A, trunc-normal:STD, zeros (default: torch-default for PyTorch layouts, glorot-uniform for Keras). --bias takes the same names plus constant:V (default: torch-default after torch-default, else zeros)."
    )

    @Option(help: "The new number of classes.")
    var classes: Int

    @Option(help: "A head layer (repeatable; default: detected).")
    var layer: [String] = []

    @OptionGroup var initOptions: InitOptions

    @Option(help: "How to initialise the new bias.")
    var bias: String?

    @Option(help: "Old classes to keep, in order, as new classes 0, 1, ... (e.g. 3,7,9).")
    var keepClasses: String?

    func passes(output: String?) throws -> [any GraphPass] {
        let keep = try (keepClasses ?? "").split(separator: ",").map { text -> Int in
            guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
                throw WSurgeryError.invalidOption(option: "--keep-classes", reason: "'\(text)' is not a class index")
            }
            return value
        }
        return [HeadReplacement(classes: classes, layers: parseLayers(layer),
                                initializer: try initOptions.initializer(),
                                bias: try bias.map { try Initializer(parsing: $0, option: "--bias") },
                                keepClasses: keep, seed: initOptions.seed)]
    }
}

struct SetInputShapeOptions: PassOptions {
    static let command = CommandConfiguration(
        commandName: "set-input-shape",
        abstract: "Move a model to a new input size; fix the Dense layers that no longer fit.",
        discussion: "For a Keras model every layer's shapes are inferred at the new size and the report says, per layer, whether its weights transfer unchanged (convolutions always do; a Dense after global pooling does). A Dense fed by Flatten gets a new fan-in: --dense-policy reinit (default) draws a new kernel with --init (default glorot-uniform), resample resizes the kernel viewed as (H, W, C, units) bilinearly and scales it by HW/H'W', error stops and lists the layers. For a state dict, ViT position embeddings (pos_embed, embeddings.position_embeddings) are resampled like timm (bicubic, antialiased), prefix tokens kept. --channels chains adapt-channels."
    )

    @Option(help: "The new input size, HxW (e.g. 256x256).")
    var size: String

    @Option(help: "Also adapt the first convolution to this many input channels.")
    var channels: Int?

    @Option(help: "reinit, resample or error.")
    var densePolicy: String = "reinit"

    @OptionGroup var initOptions: InitOptions

    func passes(output: String?) throws -> [any GraphPass] {
        let (height, width) = try InputShapeChange.parseSize(size)
        guard let policy = InputShapeChange.DensePolicy(rawValue: densePolicy) else {
            throw WSurgeryError.invalidOption(option: "--dense-policy", reason: "'\(densePolicy)': expected reinit, resample or error")
        }
        return [InputShapeChange(height: height, width: width, channels: channels, densePolicy: policy,
                                 initializer: try initOptions.initializer(), seed: initOptions.seed)]
    }
}

struct DropLayerOptions: PassOptions {
    static let command = CommandConfiguration(
        commandName: "drop-layer",
        abstract: "Remove layers; the Keras graph is reconnected and its shapes checked.",
        discussion: "Each removed layer's readers read what it read. When a later layer's weights no longer fit (a Dense between two Dense layers of other sizes), the command stops unless --reinit-next gives that layer new weights (--init, default glorot-uniform / torch-default). --top removes the classifier stack after the last layer with a spatial output, like include_top=False. Without a Keras architecture (a state dict) the layers' tensors are removed and nothing is checked."
    )

    @Option(help: "A layer to remove (repeatable, or comma-separated).")
    var layer: [String] = []

    @Flag(help: "Remove the classifier stack (include_top=False).")
    var top = false

    @Flag(help: "Re-initialise later layers whose weights no longer fit.")
    var reinitNext = false

    @OptionGroup var initOptions: InitOptions

    func passes(output: String?) throws -> [any GraphPass] {
        return [LayerRemoval(layers: parseLayers(layer), top: top, reinitNext: reinitNext,
                      initializer: try initOptions.initializer(), seed: initOptions.seed)]
    }
}

struct ResizeDenseOptions: PassOptions {
    static let command = CommandConfiguration(
        commandName: "resize-dense",
        abstract: "Give a Dense/Linear layer another number of units; the next layer's fan-in follows.",
        discussion: "The first min(old, N) units keep their weights; new units get --init (default glorot-uniform for Keras, torch-default for PyTorch layouts) and zero biases (torch-default for PyTorch). Normalisation layers in between get scale 1, shift 0, mean 0, variance 1 for new units; the next Dense/Linear layers keep their existing rows and get new ones drawn the same way. A state dict records no edges: name the reading layers with --next."
    )

    @Option(help: "The Dense/Linear layer to resize.")
    var layer: String

    @Option(help: "The new number of units.")
    var units: Int

    @OptionGroup var initOptions: InitOptions

    @Option(help: "Layers reading it (state dicts only; repeatable).")
    var next: [String] = []

    func passes(output: String?) throws -> [any GraphPass] {
        return [DenseResize(layer: layer, units: units, initializer: try initOptions.initializer(),
                     next: parseLayers(next), seed: initOptions.seed)]
    }
}
