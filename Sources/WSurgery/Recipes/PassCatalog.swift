/// The kind of value an option takes.
public enum OptionKind: Sendable, Equatable {
    /// Present or not (`top`).
    case flag
    /// A whole number (`classes`).
    case integer
    /// One of these words (`mode`: sum, mean, luma).
    case choice([String])
    /// Text in the form `format` says (`HxW`, an initializer, `3,7,9`).
    case text(format: String)
}

/// One option of a pass: its key (`dense-policy`, written with two dashes on the command line and
/// `dense-policy:` in a recipe), the values it takes and what it does. The command line, recipes, help
/// and shell completion all read the same specification.
public struct OptionSpec: Sendable, Equatable {
    /// The key.
    public var key: String
    /// What values it takes.
    public var kind: OptionKind
    /// Whether it may be given several times (each value, or a comma-separated list).
    public var repeating: Bool
    /// Whether a pass cannot be built without it.
    public var required: Bool
    /// One line of help.
    public var help: String

    /// An option.
    public init(_ key: String, _ kind: OptionKind, repeating: Bool = false, required: Bool = false, help: String) {
        self.key = key
        self.kind = kind
        self.repeating = repeating
        self.required = required
        self.help = help
    }

    /// The allowed values, for a choice.
    public var choices: [String]? {
        if case .choice(let values) = kind { return values }
        return nil
    }
}

/// The options given for one pass, by key, as text (a flag's value is `true`). The command line and
/// recipes both fill one; `PassSpec.passes` reads it through the typed accessors, which check each value
/// against the option's kind.
public struct PassArguments: Sendable, Equatable {
    /// Values by key, in the order given.
    public var values: [String: [String]]

    /// Arguments with these values.
    public init(_ values: [String: [String]] = [:]) { self.values = values }

    /// Sets `key` to `value` when it is given.
    public mutating func set(_ key: String, _ value: String?) {
        if let value { values[key] = [value] }
    }

    /// Sets a flag when it is on.
    public mutating func set(_ key: String, flag: Bool) {
        if flag { values[key] = ["true"] }
    }

    /// Sets a repeatable option's values, when there are any.
    public mutating func set(_ key: String, _ list: [String]) {
        if !list.isEmpty { values[key] = list }
    }

    /// The text given for `key`.
    public func text(_ key: String) -> String? { values[key]?.last }

    /// Every value of a repeatable option, comma-separated lists split (`a,b` and `a`, `b` alike).
    public func list(_ key: String) -> [String] {
        (values[key] ?? []).flatMap { $0.split(separator: ",").map(String.init) }
    }

    /// Whether the flag is on.
    public func flag(_ key: String) -> Bool { text(key) == "true" }

    /// The largest count an option takes (classes, units, channels): 2^24, far above any real model and
    /// far below what would make a single tensor overflow a size.
    public static let maxCount = 1 << 24

    /// The value of `key` as a whole number, at most `maxCount` in magnitude.
    public func integer(_ key: String) throws -> Int? {
        guard let text = text(key) else { return nil }
        guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
            throw WSurgeryError.invalidOption(option: key, reason: "'\(text)' is not a whole number")
        }
        guard abs(value) <= PassArguments.maxCount else {
            throw WSurgeryError.invalidOption(option: key, reason: "\(value) is out of range (at most \(PassArguments.maxCount))")
        }
        return value
    }

    /// The value of a required `key` as a whole number.
    public func requiredInteger(_ key: String) throws -> Int {
        guard let value = try integer(key) else { throw WSurgeryError.invalidOption(option: key, reason: "is required") }
        return value
    }

    /// The value of `key` as a non-negative 64-bit number (a seed).
    public func unsigned(_ key: String) throws -> UInt64? {
        guard let text = text(key) else { return nil }
        guard let value = UInt64(text.trimmingCharacters(in: .whitespaces)) else {
            throw WSurgeryError.invalidOption(option: key, reason: "'\(text)' is not a whole number from 0 to \(UInt64.max)")
        }
        return value
    }

    /// The value of `key` as one of `T`'s cases.
    public func choice<T: RawRepresentable & CaseIterable>(_ key: String, _ type: T.Type) throws -> T? where T.RawValue == String {
        guard let text = text(key) else { return nil }
        guard let value = T(rawValue: text) else {
            throw WSurgeryError.invalidOption(option: key, reason: "'\(text)': expected \(Self.alternatives(T.allCases.map(\.rawValue)))")
        }
        return value
    }

    /// The value of a required `key` as text.
    public func requiredText(_ key: String) throws -> String {
        guard let value = text(key) else { throw WSurgeryError.invalidOption(option: key, reason: "is required") }
        return value
    }

    /// `a, b or c`.
    static func alternatives(_ words: [String]) -> String {
        words.count <= 1 ? words.joined() : words.dropLast().joined(separator: ", ") + " or " + words.last!
    }
}

/// One command that makes passes (`convert` and the surgery commands): its name, help, options and how
/// its arguments become passes. `PassCatalog` lists them; the command line and recipes use the same ones.
public struct PassSpec: Sendable {
    /// The command (and recipe step) name.
    public let command: String
    /// One line of help.
    public let abstract: String
    /// More help; options are mentioned as `discussion(spelling:)` spells them.
    let discussionText: String
    /// The options, in help order.
    public let options: [OptionSpec]
    /// Command lines showing typical uses (without the leading `wsurgery`).
    public let examples: [String]
    let build: @Sendable (PassArguments, _ output: String?) throws -> [any GraphPass]

    /// A spec; `discussion` may mention options with `option(_:)`.
    init(
        command: String, abstract: String, discussion: String, options: [OptionSpec], examples: [String] = [],
        build: @escaping @Sendable (PassArguments, String?) throws -> [any GraphPass]
    ) {
        self.command = command
        self.abstract = abstract
        self.discussionText = discussion
        self.options = options
        self.examples = examples
        self.build = build
    }

    /// More help, with every option spelled by `spelling` (the command line prefixes two dashes).
    public func discussion(spelling: (String) -> String) -> String { OptionMention.render(discussionText, spelling) }

    /// The option with this key.
    public func option(_ key: String) -> OptionSpec? { options.first { $0.key == key } }

    /// The help line of an option.
    public func help(_ key: String) -> String { option(key)?.help ?? "" }

    /// The passes `arguments` ask for, validated. `output` (when known) lets a pass refuse a format it
    /// cannot write. Errors name the option at fault by its key.
    public func passes(_ arguments: PassArguments, output: String?) throws -> [any GraphPass] {
        for spec in options where spec.required && arguments.values[spec.key] == nil {
            throw WSurgeryError.invalidOption(option: spec.key, reason: "is required")
        }
        let passes = try build(arguments, output)
        for pass in passes { try pass.validate() }
        return passes
    }
}

/// Every command a recipe step can name, in the order the command line lists them.
public enum PassCatalog {
    /// All of them.
    public static let all: [PassSpec] = [convert, collapseChannels, adaptChannels, replaceHead, setInputShape, dropLayer, resizeDense]

    /// The command named `name`.
    public static func spec(named name: String) -> PassSpec? { all.first { $0.command == name } }

    static let initializerFormat = "torch-default, kaiming-uniform, kaiming-normal, glorot-uniform, he-normal, uniform:A, trunc-normal:STD or zeros"
    static let initOption = OptionSpec("init", .text(format: "an initializer"), help: "How to initialise new weights: \(initializerFormat).")
    static let seedOption = OptionSpec("seed", .integer, help: "Seed of the initialisation (same seed and input give identical bytes).")

    static func initializer(_ arguments: PassArguments, _ key: String = "init") throws -> Initializer? {
        try arguments.text(key).map { text in
            // A constant other than 0 is a bias's value: as a kernel it makes every new unit the same.
            if key == "init", text.hasPrefix("constant:") {
                throw WSurgeryError.invalidOption(
                    option: key,
                    reason:
                        "'\(text)' is for \(option("bias")): a constant kernel makes every new unit compute the same (training never tells them apart); use \(initializerFormat)"
                )
            }
            return try Initializer(parsing: text, option: key)
        }
    }

    /// `convert`.
    public static let convert = PassSpec(
        command: "convert",
        abstract: "Re-container a checkpoint; with a layout, move it between Keras and PyTorch layouts.",
        discussion:
            "The output format follows OUT's name: .safetensors, .safetensors.index.json or a directory (sharded), .h5/.hdf5 (legacy Keras), .weights.h5 (Keras 3), .keras.",
        options: [
            OptionSpec(
                "layout", .choice(LayoutTarget.allCases.map(\.rawValue)),
                help: "Also move the tensors to another layout: torch (PyTorch names and axes, written as safetensors) or keras.")
        ],
        examples: [
            "convert model.h5 model.safetensors", "convert model.safetensors shards/ --shard-size 2GB",
            "convert model.h5 torch.safetensors --layout torch",
        ],
        build: { arguments, output in
            guard let target = try arguments.choice("layout", LayoutTarget.self) else { return [] }
            if target == .torch, let output, !Checkpoint.isSafetensorsOutput(output) {
                throw WSurgeryError.invalidOption(
                    option: "layout", reason: "a PyTorch-layout state dict is written as .safetensors (Keras files need Keras layout); got \(output)")
            }
            return [LayoutConversion(target: target.layout)]
        })

    /// `collapse-channels`.
    public static let collapseChannels = PassSpec(
        command: "collapse-channels",
        abstract: "Make the first convolution take one channel (RGB -> gray).",
        discussion:
            "\(option("mode")) sum (default, timm) keeps model(gray) == original(gray copied to RGB). \(option("fold-normalization")) folds a per-channel input normalisation into the kernel and bias so the new model takes the raw gray image.",
        options: [
            OptionSpec("layer", .text(format: "a layer name"), repeating: true, help: "The convolution to change (default: detected)."),
            OptionSpec("mode", .choice(ChannelAdaptation.CollapseMode.allCases.map(\.rawValue)), help: "sum (default), mean or luma."),
            OptionSpec(
                "fold-normalization", .text(format: "imagenet or MEAN,MEAN,MEAN/STD,STD,STD"), help: "imagenet, or MEAN,MEAN,MEAN/STD,STD,STD."),
        ],
        examples: [
            "collapse-channels resnet50.h5 gray.h5", "collapse-channels vit.safetensors gray.safetensors --fold-normalization imagenet",
            "collapse-channels model.keras gray.keras --dry-run --graph what.dot",
        ],
        build: { arguments, _ in
            let mode = try arguments.choice("mode", ChannelAdaptation.CollapseMode.self) ?? .sum
            let fold = try arguments.text("fold-normalization").map(ChannelAdaptation.Normalization.init(parsing:))
            return [ChannelAdaptation(rule: .collapse(mode), layers: arguments.list("layer"), foldNormalization: fold)]
        })

    /// `adapt-channels`.
    public static let adaptChannels = PassSpec(
        command: "adapt-channels",
        abstract: "Make the first convolution take N input channels.",
        discussion:
            "Default (timm): repeat the source channels cyclically and scale by source/N (sum for N = 1). \(option("extra")) fills channels beyond the source ones: repeat, zeros, mean or copy:K; the source channels keep their weights and, unless \(option("extra")) zeros or \(option("no-rescale")), everything is scaled by source/N.",
        options: [
            OptionSpec("channels", .integer, required: true, help: "The new number of input channels."),
            OptionSpec("layer", .text(format: "a layer name"), repeating: true, help: "The convolution to change (default: detected)."),
            OptionSpec("extra", .text(format: "repeat, zeros, mean or copy:K"), help: "repeat, zeros, mean or copy:K."),
            OptionSpec("no-rescale", .flag, help: "Do not scale the kernel by source/N."),
        ],
        examples: ["adapt-channels resnet50.h5 rgbn.h5 --channels 4", "adapt-channels model.safetensors ms.safetensors --channels 13 --extra zeros"],
        build: { arguments, _ in
            let fill = try arguments.text("extra").map(ChannelAdaptation.ExtraFill.init(parsing:))
            return [
                ChannelAdaptation(
                    rule: .adapt(channels: try arguments.requiredInteger("channels"), extra: fill, rescale: !arguments.flag("no-rescale")),
                    layers: arguments.list("layer"))
            ]
        })

    /// `replace-head`.
    public static let replaceHead = PassSpec(
        command: "replace-head",
        abstract: "Give the classifier head a new number of classes.",
        discussion:
            "\(option("init")): \(initializerFormat) (default: torch-default for PyTorch layouts, glorot-uniform for Keras). \(option("bias")) takes the same names plus constant:V (default: torch-default after torch-default, else zeros).",
        options: [
            OptionSpec("classes", .integer, required: true, help: "The new number of classes."),
            OptionSpec("layer", .text(format: "a layer name"), repeating: true, help: "A head layer (repeatable; default: detected)."),
            initOption,
            seedOption,
            OptionSpec("bias", .text(format: "an initializer or constant:V"), help: "How to initialise the new bias."),
            OptionSpec(
                "keep-classes", .text(format: "class indices, e.g. 3,7,9"),
                help: "Old classes to keep, in order, as new classes 0, 1, ... (e.g. 3,7,9)."),
        ],
        examples: [
            "replace-head model.h5 five.h5 --classes 5",
            "replace-head vit.safetensors vit10.safetensors --classes 10 --init trunc-normal:0.02 --seed 1",
            "replace-head model.keras subset.keras --classes 4 --keep-classes 3,7,9",
        ],
        build: { arguments, _ in
            let keep = try (arguments.text("keep-classes") ?? "").split(separator: ",").map { text -> Int in
                guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
                    throw WSurgeryError.invalidOption(option: "keep-classes", reason: "'\(text)' is not a class index")
                }
                return value
            }
            return [
                HeadReplacement(
                    classes: try arguments.requiredInteger("classes"), layers: arguments.list("layer"),
                    initializer: try initializer(arguments), bias: try initializer(arguments, "bias"),
                    keepClasses: keep, seed: try arguments.unsigned("seed") ?? 0)
            ]
        })

    /// `set-input-shape`.
    public static let setInputShape = PassSpec(
        command: "set-input-shape",
        abstract: "Move a model to a new input size; fix the Dense layers that no longer fit.",
        discussion:
            "For a Keras model every layer's shapes are inferred at the new size and the report says, per layer, whether its weights transfer unchanged (convolutions always do; a Dense after global pooling does). A Dense fed by Flatten gets a new fan-in: \(option("dense-policy")) reinit (default) draws a new kernel with \(option("init")) (default glorot-uniform), resample resizes the kernel viewed as (H, W, C, units) bilinearly and scales it by HW/H'W', error stops and lists the layers. For a state dict, ViT position embeddings (pos_embed, embeddings.position_embeddings) are resampled like timm (bicubic, antialiased), prefix tokens kept; a Linear whose fan-in is a flattened map (C x k of the convolution before it, not pooled features) is refused unless \(option("flattened-map")) says what that map is at the new size. \(option("channels")) chains adapt-channels.",
        options: [
            OptionSpec("size", .text(format: "HxW or N"), required: true, help: "The new input size, HxW (e.g. 256x320), or N for NxN."),
            OptionSpec("channels", .integer, help: "Also adapt the first convolution to this many input channels."),
            OptionSpec("dense-policy", .choice(InputShapeChange.DensePolicy.allCases.map(\.rawValue)), help: "reinit (default), resample or error."),
            OptionSpec(
                "flattened-map", .text(format: "[LAYER=]HxW|CxHxW|fixed"), repeating: true,
                help:
                    "For a state dict: the map a Linear reading a flattened map reads at the new size (dense4=5x5), or fixed when it pools to a fixed size first."
            ),
            initOption,
            seedOption,
        ],
        examples: [
            "set-input-shape vgg16.h5 vgg16-256.h5 --size 256x256", "set-input-shape vgg16.h5 vgg16-256.h5 --size 256x256 --dense-policy resample",
            "set-input-shape vit.safetensors vit384.safetensors --size 384x384",
        ],
        build: { arguments, _ in
            let size = try ImageSize(parsing: try arguments.requiredText("size"))
            return [
                InputShapeChange(
                    height: size.height, width: size.width, channels: try arguments.integer("channels"),
                    densePolicy: try arguments.choice("dense-policy", InputShapeChange.DensePolicy.self) ?? .reinit,
                    initializer: try initializer(arguments), seed: try arguments.unsigned("seed") ?? 0,
                    flattenedMaps: try arguments.list("flattened-map").map(FlattenedMapChoice.init(parsing:)))
            ]
        })

    /// `drop-layer`.
    public static let dropLayer = PassSpec(
        command: "drop-layer",
        abstract: "Remove layers; the Keras graph is reconnected and its shapes checked.",
        discussion:
            "Each removed layer's readers read what it read. When a later layer's weights no longer fit (a Dense between two Dense layers of other sizes), the command stops unless \(option("reinit-next")) gives that layer new weights (\(option("init")), default glorot-uniform / torch-default). \(option("top")) removes the classifier stack after the last layer with a spatial output, like include_top=False. Without a Keras architecture (a state dict) the layers' tensors are removed and nothing is checked.",
        options: [
            OptionSpec("layer", .text(format: "a layer name"), repeating: true, help: "A layer to remove (repeatable, or comma-separated)."),
            OptionSpec("top", .flag, help: "Remove the classifier stack (include_top=False)."),
            OptionSpec(
                "keep-input-shape", .flag,
                help:
                    "With --top, keep the input's height and width (by default they become None, as include_top=False builds a backbone, when the rest composes at sizes around the trained one)."
            ),
            OptionSpec("reinit-next", .flag, help: "Re-initialise later layers whose weights no longer fit."),
            initOption,
            seedOption,
        ],
        examples: ["drop-layer model.h5 backbone.h5 --top", "drop-layer model.h5 out.h5 --layer fc2 --reinit-next --seed 1"],
        build: { arguments, _ in
            [
                LayerRemoval(
                    layers: arguments.list("layer"), top: arguments.flag("top"), keepInputShape: arguments.flag("keep-input-shape"),
                    reinitNext: arguments.flag("reinit-next"),
                    initializer: try initializer(arguments), seed: try arguments.unsigned("seed") ?? 0)
            ]
        })

    /// `resize-dense`.
    public static let resizeDense = PassSpec(
        command: "resize-dense",
        abstract: "Give a Dense/Linear layer another number of units; the next layer's fan-in follows.",
        discussion:
            "The first min(old, N) units keep their weights; new units get \(option("init")) (default glorot-uniform for Keras, torch-default for PyTorch layouts) and zero biases (torch-default for PyTorch). Normalisation layers in between get scale 1, shift 0, mean 0, variance 1 for new units; the next Dense/Linear layers keep their existing rows and get new ones drawn the same way. A state dict records no edges: name the reading layers with \(option("next")).",
        options: [
            OptionSpec("layer", .text(format: "a layer name"), required: true, help: "The Dense/Linear layer to resize."),
            OptionSpec("units", .integer, required: true, help: "The new number of units."),
            initOption,
            seedOption,
            OptionSpec("next", .text(format: "a layer name"), repeating: true, help: "Layers reading it (state dicts only; repeatable)."),
        ],
        examples: [
            "resize-dense vgg16.h5 small.h5 --layer fc2 --units 1024",
            "resize-dense model.safetensors out.safetensors --layer fc1 --units 256 --next fc2",
        ],
        build: { arguments, _ in
            [
                DenseResize(
                    layer: try arguments.requiredText("layer"), units: try arguments.requiredInteger("units"),
                    initializer: try initializer(arguments), next: arguments.list("next"), seed: try arguments.unsigned("seed") ?? 0)
            ]
        })
}

/// The layouts `convert` moves a checkpoint to.
public enum LayoutTarget: String, Sendable, CaseIterable {
    /// PyTorch names and axes.
    case torch
    /// Keras names and axes.
    case keras

    /// The tensor layout.
    public var layout: Layout { self == .torch ? .torch : .keras }
}

/// An input image size, `HxW` (or one number for a square).
public struct ImageSize: Sendable, Equatable {
    /// Rows.
    public var height: Int
    /// Columns.
    public var width: Int

    /// A size.
    public init(height: Int, width: Int) {
        self.height = height
        self.width = width
    }

    /// The largest side accepted (65,536 pixels).
    public static let maxSide = 1 << 16

    /// `224x224`, or `224` for a square.
    public init(parsing text: String) throws {
        let parts = text.lowercased().split(separator: "x", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 1 || parts.count == 2, let h = parts.first ?? nil, let w = parts.last ?? nil else {
            throw WSurgeryError.invalidOption(option: "size", reason: "'\(text)': expected HxW (e.g. 256x256) or one number for a square")
        }
        guard (1...ImageSize.maxSide).contains(h), (1...ImageSize.maxSide).contains(w) else {
            throw WSurgeryError.invalidOption(option: "size", reason: "'\(text)': each side must be from 1 to \(ImageSize.maxSide)")
        }
        self.init(height: h, width: w)
    }
}
