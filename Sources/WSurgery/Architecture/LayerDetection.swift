/// Finds the layers surgery acts on: the first convolution (which reads the image) and the classifier
/// head(s). With a Keras architecture it follows the graph; for a state dict it uses the names people's
/// checkpoints use (timm, torchvision, Hugging Face) and the shapes. It never guesses: when it finds
/// none or several, the error lists the candidates so the user can name one.
public enum LayerDetection {
    /// Names people's checkpoints use for the stem convolution (timm `first_conv`, torchvision, Hugging Face, Keras applications).
    public static let firstConvNames = [
        "conv1", "conv_stem", "stem.0", "stem.conv", "stem.conv1", "stem_conv", "stem.0.conv", "patch_embed.conv.0", "patch_embed.proj", "features.0",
        "features.conv0", "features.0.0", "embeddings.patch_embeddings.projection", "embedder.convolution",
        "embeddings.embedder.convolution", "conv1_conv", "block1_conv1", "Conv1", "stem_conv1", "Conv2d_1a_3x3.conv",
    ]

    /// Names of classifier layers (timm `classifier`, torchvision, Hugging Face, Keras applications), in priority order.
    public static let headNames = [
        "head", "head.fc", "fc", "classifier", "classifier.fc", "classifier.1", "last_linear", "logits", "predictions",
        "head.l", "classif", "fc8", "conv_preds", "heads.head", "head.fc.fc2", "head.fc2", "head.classifier.linear", "head.linear",
        "head.head.l",
    ]

    /// Second heads that come with a main one (DeiT distillation, Inception auxiliary logits).
    public static let partnerHeads = [
        "head": ["head_dist", "aux_head"], "fc": ["AuxLogits.fc", "aux_logits.fc", "aux1.fc2", "aux2.fc2"], "head.linear": ["head_dist.linear"],
        "head.head.l": ["head.head_dist.l"],
    ]

    /// Wrapper prefixes that do not change what a layer is (`module.` from DataParallel, `model.`).
    static let wrapperPrefixes = ["", "module.", "model.", "_orig_mod."]

    /// The convolution that reads the model input.
    public static func firstConvolution(in graph: TensorGraph) throws -> String {
        let convs = graph.layers.filter(isConvolutionWithKernel)
        let fail = { (reason: String, candidates: [Layer]) in
            WSurgeryError.detectionFailed(
                path: graph.sourcePath, what: "first convolution", reason: reason,
                candidates: candidates.map { describe($0) })
        }
        if let named = try configNamed(graph, \.firstConvolution, what: "first convolution", candidates: convs) { return named[0] }
        if graph.hasEdges {
            let found = firstWeightedLayers(in: graph)
            guard found.count == 1, let layer = graph.layer(named: found[0]) else {
                throw fail(
                    found.isEmpty ? "no layer with weights is reachable from the input" : "several layers read the input",
                    found.compactMap { graph.layer(named: $0) })
            }
            guard isConvolutionWithKernel(layer) else {
                throw fail(
                    "the first layer with weights after the input is '\(layer.name)' (\(layer.className ?? layer.kind.rawValue)), not a convolution",
                    convs)
            }
            return layer.name
        }
        if graph.layersInModelOrder {
            guard let first = graph.layers.first(where: { !$0.tensors.isEmpty }) else { throw fail("the checkpoint has no weights", []) }
            guard isConvolutionWithKernel(first) else {
                throw fail("the first layer with weights is '\(first.name)' (\(first.kind.rawValue)), not a convolution", convs)
            }
            return first.name
        }
        // A state dict: the input of the first convolution is an image of 1 to 4 channels (or as many as
        // the config's `num_channels`). A stem name on a convolution that reads more (an audio model's
        // `conv1` after its `stft_conv`) is not the one reading the input.
        func channels(_ layer: Layer) -> Int? {
            WeightRoles(layer).map { layer.tensors[$0.kernel].shape[$0.inputAxis] }
        }
        let configured = graph.architectureChannels
        let reads = { (layer: Layer) in channels(layer).map { (1...4).contains($0) || $0 == configured } ?? false }
        for name in firstConvNames {
            let matches = convs.filter { layer in wrapperPrefixes.contains { layer.name == $0 + name } }
            if matches.count == 1, reads(matches[0]) { return matches[0].name }
        }
        let rgb = convs.filter { channels($0) == 3 }
        if rgb.count == 1 { return rgb[0].name }
        let images = convs.filter(reads)
        if rgb.isEmpty, images.count == 1 { return images[0].name }
        throw fail(
            rgb.count > 1
                ? "several convolutions have 3 input channels"
                : images.isEmpty
                    ? "no convolution reads an image (1 to 4 input channels\(configured.map { " or \($0), the config's num_channels" } ?? ""))"
                    : "several convolutions read 1 to 4 channels and none has 3 or a known stem name",
            rgb.count > 1 ? rgb : images.isEmpty ? convs : images)
    }

    /// The convolutions of a state dict (no edges, no model order) whose input could be an image: 1 to 4
    /// input channels.
    static func imageReadingConvolutions(in graph: TensorGraph) -> [(name: String, channels: Int)] {
        guard !graph.hasEdges, !graph.layersInModelOrder else { return [] }
        return graph.layers.filter(isConvolutionWithKernel).compactMap { layer in
            guard let roles = WeightRoles(layer) else { return nil }
            let channels = layer.tensors[roles.kernel].shape[roles.inputAxis]
            return (1...4).contains(channels) ? (layer.name, channels) : nil
        }
    }

    /// The layer(s) producing the logits: a Dense/Linear, or a convolution followed by global pooling.
    public static func classifierHeads(in graph: TensorGraph) throws -> [String] {
        let fail = { (reason: String, candidates: [Layer]) in
            WSurgeryError.detectionFailed(
                path: graph.sourcePath, what: "classifier head", reason: reason,
                candidates: candidates.map { describe($0) })
        }
        let dense = graph.layers.filter { $0.kind == .dense && WeightRoles($0) != nil }
        if let named = try configNamed(graph, \.heads, what: "classifier head", candidates: dense) { return named }
        if graph.hasEdges {
            var heads: [String] = []
            for output in outputLayers(of: graph) {
                heads.append(try headBehind(output, in: graph, fail: fail))
            }
            guard !heads.isEmpty else { throw fail("the architecture names no output layer", dense) }
            return heads
        }
        if graph.layersInModelOrder {
            guard let last = graph.layers.last(where: { !$0.tensors.isEmpty }) else { throw fail("the checkpoint has no weights", []) }
            guard (last.kind == .dense || isConvolutionWithKernel(last)) && WeightRoles(last) != nil else {
                throw fail("the last layer with weights is '\(last.name)' (\(last.kind.rawValue)), not a Dense layer or a convolution", dense)
            }
            return [last.name]
        }
        let weighted = graph.layers.filter { ($0.kind == .dense || isConvolutionWithKernel($0)) && WeightRoles($0) != nil }
        func find(_ name: String) -> Layer? {
            let matches = weighted.filter { layer in wrapperPrefixes.contains { layer.name == $0 + name } }
            return matches.count == 1 ? matches[0] : nil
        }
        // `classifier.0`, `classifier.3`, `classifier.6` (VGG): the last Linear of the Sequential.
        for stem in ["classifier", "head", "fc", "head.classifier"] {
            let numbered = dense.compactMap { layer -> (Int, Layer)? in
                for prefix in wrapperPrefixes where layer.name.hasPrefix(prefix + stem + ".") {
                    if let index = Int(layer.name.dropFirst(prefix.count + stem.count + 1)) { return (index, layer) }
                }
                return nil
            }
            if !numbered.isEmpty, find(stem) == nil, let last = numbered.max(by: { $0.0 < $1.0 }) { return [last.1.name] }
        }
        for name in headNames {
            guard let layer = find(name) else { continue }
            return [layer.name] + (partnerHeads[name] ?? []).compactMap { find($0)?.name }
        }
        if dense.count == 1 { return [dense[0].name] }
        if graph.sourceFormat == .pytorch, let head = try lastLinear(in: graph, fail: fail) { return [head] }
        throw fail(
            dense.isEmpty ? "no Dense/Linear layer and no known head name" : "several Dense/Linear layers and none has a known head name", dense)
    }

    /// The head of a `.pth` state dict (the order the model registered its modules) that no name gives:
    /// the last layer with weights, when it is a Linear. Nil when the model ends otherwise (a norm: a
    /// backbone without its head). Refused when several Linears at the end read the same features
    /// (facenet's RNet: `dense5_1`, `dense5_2`), or when it has as many outputs as inputs after other
    /// Linears (a projection, not a classifier).
    static func lastLinear(in graph: TensorGraph, fail: (String, [Layer]) -> WSurgeryError) throws -> String? {
        guard let last = graph.layers.last(where: { !$0.tensors.isEmpty }), last.kind == .dense, let roles = WeightRoles(last) else { return nil }
        let linears = graph.layers.filter { $0.kind == .dense && WeightRoles($0) != nil }
        let kernel = last.tensors[roles.kernel].shape
        let fanIn = kernel[roles.inputAxis]
        // The Linears at the end reading as many features as the last one: heads side by side.
        var trailing: [Layer] = []
        for layer in graph.layers.reversed() where WeightRoles(layer) != nil {
            guard layer.kind == .dense, let r = WeightRoles(layer), layer.tensors[r.kernel].shape[r.inputAxis] == fanIn else { break }
            trailing.insert(layer, at: 0)
        }
        if trailing.count > 1 {
            throw fail("several Linear layers at the end of the state dict read the same \(fanIn) features (heads side by side)", trailing)
        }
        guard readsConvolutionFeatures(from: last, in: graph) else { return nil }
        if kernel[roles.outputAxis] == fanIn, linears.count > 1 {
            throw fail(
                "the last Linear '\(last.name)' has as many outputs as inputs (\(fanIn)) after other Linear layers: a projection, not a classifier",
                linears)
        }
        return last.name
    }

    /// Whether the Linear chain ending in `last` (Linears one after another, activations between)
    /// starts on the features of a convolution, directly or through one norm (ResNet's `bn3`, DenseNet's
    /// `norm5`): a classifier on pooled or flattened features, not the MLP of a transformer block.
    static func readsConvolutionFeatures(from last: Layer, in graph: TensorGraph) -> Bool {
        guard let end = graph.layers.firstIndex(where: { $0.name == last.name }) else { return false }
        var passedNorm = false
        for layer in graph.layers[..<end].reversed() where !layer.tensors.isEmpty {
            if isConvolutionWithKernel(layer) { return true }
            if layer.kind == .dense, WeightRoles(layer) != nil {
                if passedNorm { return false }
                continue
            }
            if [.batchNorm, .layerNorm].contains(layer.kind) {
                if passedNorm { return false }
                passedNorm = true
            }
        }
        return false
    }

    /// The layers a config.json names: by transformers' `model_type`, or timm's `pretrained_cfg`
    /// (`first_conv`, `classifier`). Nil when the graph has no such config; an error when it names layers
    /// the checkpoint does not hold.
    static func configNamed(_ graph: TensorGraph, _ role: KeyPath<ConfigNames, [String]>, what: String, candidates: [Layer]) throws -> [String]? {
        guard case .huggingFace(let config, _)? = graph.architecture, let names = ConfigNames(config, graph: graph) else { return nil }
        let wanted = names[keyPath: role]
        guard !wanted.isEmpty else { return nil }
        let found = wanted.filter { graph.layer(named: $0).map { WeightRoles($0) != nil } ?? false }
        guard !found.isEmpty else {
            throw WSurgeryError.detectionFailed(
                path: graph.sourcePath, what: what,
                reason: "\(names.source) puts it at \(wanted.map { "'\($0)'" }.joined(separator: " or ")), which the checkpoint does not hold",
                candidates: candidates.map { describe($0) })
        }
        return found
    }

    /// The first convolution and heads a config.json names.
    struct ConfigNames {
        /// Where the names come from, for errors.
        let source: String
        /// The first convolution (one name, or none when the config does not say).
        let firstConvolution: [String]
        /// The classifier layers (every one held is a head).
        let heads: [String]

        init?(_ config: ConfigDocument, graph: TensorGraph) {
            if let type = HuggingFaceModelType.of(config) {
                source = "config.json's model_type '\(type.name)'"
                let conv = type.layer(type.firstConvolution, in: graph)?.name ?? type.prefix + "." + type.firstConvolution
                firstConvolution = [conv]
                let head = type.heads.first { graph.layer(named: $0) != nil } ?? type.heads[0]
                heads = [head] + (head == type.heads[0] ? [] : type.partners)
                return
            }
            guard let pretrained = config.json["pretrained_cfg"] else { return nil }
            func names(_ key: String) -> [String] {
                pretrained[key]?.stringValue.map { [$0] } ?? pretrained[key]?.arrayValue?.compactMap(\.stringValue) ?? []
            }
            guard !names("first_conv").isEmpty || !names("classifier").isEmpty else { return nil }
            source = "config.json's pretrained_cfg (timm)"
            firstConvolution = Array(names("first_conv").prefix(1))
            heads = names("classifier")
        }
    }

    /// Walks back from an output layer past layers without weights to the layer that produces the logits.
    static func headBehind(_ output: String, in graph: TensorGraph, fail: (String, [Layer]) -> WSurgeryError) throws -> String {
        var name = output
        var pooled = false
        var visited = Set<String>()
        while let layer = graph.layer(named: name), visited.insert(name).inserted {
            if layer.kind == .dense, WeightRoles(layer) != nil { return layer.name }
            if isConvolutionWithKernel(layer) {
                guard pooled || globallyPooled(before: layer, in: graph) else {
                    throw fail("'\(layer.name)' feeds the output without global pooling, so it is not a classifier", [layer])
                }
                return layer.name
            }
            if !layer.tensors.isEmpty {
                throw fail(
                    "the layer before output '\(output)' is '\(layer.name)' (\(layer.className ?? layer.kind.rawValue)), not a Dense layer or a convolution",
                    [layer])
            }
            if let className = layer.className, className.hasPrefix("Global") { pooled = true }
            if layer.kind == .model, case .keras(let config)? = graph.architecture,
                let inner = KerasConfig.outputs(of: config.json, nested: layer.name).first
            {
                name = inner
                continue
            }
            guard layer.inbound.count == 1 else {
                throw fail("output '\(output)' is reached through '\(layer.name)', which has \(layer.inbound.count) inputs", [])
            }
            name = layer.inbound[0]
        }
        throw fail("no layer with weights feeds output '\(output)'", [])
    }

    /// Whether a global pooling feeds `layer` through layers that act on each position alone: layers
    /// without weights and 1x1 convolutions (MobileNet's `conv_preds` and MobileNetV3's `logits` classify
    /// the pooled map kept as (1, 1, C)).
    static func globallyPooled(before layer: Layer, in graph: TensorGraph) -> Bool {
        var current = layer
        var seen = Set<String>()
        while current.inbound.count == 1, seen.insert(current.name).inserted, let source = graph.layer(named: current.inbound[0]) {
            if source.className?.hasPrefix("Global") == true { return true }
            guard source.kind != .model, source.tensors.isEmpty || isPointwiseConvolution(source) else { return false }
            current = source
        }
        return false
    }

    /// A convolution whose kernel covers one position (1x1).
    static func isPointwiseConvolution(_ layer: Layer) -> Bool {
        guard isConvolutionWithKernel(layer), let roles = WeightRoles(layer) else { return false }
        let shape = layer.tensors[roles.kernel].shape
        let spatial = roles.layout == .torch ? shape.dropFirst(2) : shape.dropLast(2)
        return spatial.allSatisfy { $0 == 1 }
    }

    /// The first layers with weights on every path from the inputs (not walking past them). A nested
    /// model's own input layers are starting points too, so its first convolution is found inside it.
    static func firstWeightedLayers(in graph: TensorGraph) -> [String] {
        let consumers = graph.consumers
        // Input layers, and layers fed only by names that are not layers (a Keras 2 Sequential's first
        // layer refers to an implicit `input_1`).
        let names = Set(graph.layers.map(\.name))
        // The model's own inputs; a nested model's inputs are reached through the model.
        var nested: [String: String] = [:]
        var sublayers: [String: [KerasLayerConfig]] = [:]
        if case .keras(let config)? = graph.architecture {
            let top = KerasConfig.layers(of: config.json)
            nested = KerasConfig.parentModels(top)
            for (layer, _) in KerasConfig.flattened(top) where !layer.sublayers.isEmpty { sublayers[layer.name] = layer.sublayers }
        }
        var queue = graph.layers.filter { $0.kind == .input && nested[$0.name] == nil }.map(\.name)
        if queue.isEmpty {
            queue = graph.layers.filter { $0.kind != .model && $0.inbound.allSatisfy { !names.contains($0) } }.prefix(1).map(\.name)
        }
        var seen = Set(queue)
        var found: [String] = []
        while !queue.isEmpty {
            let name = queue.removeFirst()
            guard let layer = graph.layer(named: name) else { continue }
            // Input preprocessing (per-channel normalisation, rescaling) is adapted with the first
            // convolution, not taken for it.
            if !layer.tensors.isEmpty, !inputPreprocessingClasses.contains(layer.className ?? "") {
                if !found.contains(name) { found.append(name) }
                continue
            }
            if layer.kind == .model {
                // A nested model is entered through its input layers, or at its first layer when the
                // weights file lists none (a Keras 3 Sequential stem).
                let inner = sublayers[name] ?? []
                let inputs = inner.filter { $0.className == "InputLayer" && names.contains($0.name) }.map(\.name)
                let entries = inputs.isEmpty ? inner.first(where: { $0.className != "InputLayer" }).map { [$0.name] } ?? [] : inputs
                for entry in entries where seen.insert(entry).inserted { queue.append(entry) }
                continue
            }
            for next in consumers[name, default: []] where seen.insert(next).inserted { queue.append(next) }
        }
        return found
    }

    /// Layer classes that prepare the input image channel by channel and may stand before the first
    /// convolution (keras.applications' EfficientNet, EfficientNetV2, ConvNeXt, MobileNetV3).
    public static let inputPreprocessingClasses: Set<String> = ["Normalization", "Rescaling"]

    /// The model's output layers from its Keras config, or the one layer nothing consumes.
    static func outputLayers(of graph: TensorGraph) -> [String] {
        guard case .keras(let config)? = graph.architecture else {
            let consumed = Set(graph.layers.flatMap(\.inbound))
            return graph.layers.filter { !consumed.contains($0.name) && $0.kind != .input }.suffix(1).map(\.name)
        }
        return KerasConfig.outputs(of: config.json)
    }

    /// What the layer is, for candidate lists: `conv1 (conv2d, weight (64, 3, 7, 7))`.
    static func describe(_ layer: Layer) -> String {
        guard let roles = WeightRoles(layer) else { return "\(layer.name) (\(layer.kind.rawValue))" }
        let kernel = layer.tensors[roles.kernel]
        return "\(layer.name) (\(layer.kind.rawValue) \(ShapeText.python(kernel.shape)))"
    }

    static func isConvolutionWithKernel(_ layer: Layer) -> Bool {
        [.conv1d, .conv2d, .conv3d].contains(layer.kind) && WeightRoles(layer) != nil
    }

    /// The BatchNorm layer the conv feeds: from the recorded edges, the model order, or the usual names
    /// (`conv1` -> `bn1`, `stem.conv` -> `stem.bn`, `features.0.0` -> `features.0.1`).
    static func batchNorm(after conv: Layer, in graph: TensorGraph, channels: Int) -> Layer? {
        func fits(_ layer: Layer?) -> Layer? {
            guard let layer, layer.kind == .batchNorm,
                let m = WeightRoles.tensorIndex(in: layer, named: ["moving_mean", "running_mean"]),
                layer.tensors[m].shape == [channels]
            else { return nil }
            return layer
        }
        if graph.hasEdges {
            let consumers = graph.consumers[conv.name] ?? []
            return consumers.count == 1 ? fits(graph.layer(named: consumers[0])) : nil
        }
        if graph.layersInModelOrder, let i = graph.layers.firstIndex(where: { $0.name == conv.name }) {
            return fits(graph.layers.dropFirst(i + 1).first(where: { !$0.tensors.isEmpty }))
        }
        var parts = conv.name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard let last = parts.popLast() else { return nil }
        var names: [String] = []
        if let index = Int(last) { names.append(String(index + 1)) }
        if last.hasPrefix("conv") {
            names.append("bn" + last.dropFirst(4))
            names.append("norm" + last.dropFirst(4))
        }
        if last == "conv_stem" { names.append("bn1") }
        // transformers: `embedder.convolution` -> `embedder.normalization`, `embeddings.convolution` -> `embeddings.batchnorm`.
        if last == "convolution" { names += ["normalization", "batchnorm"] }
        for candidate in names {
            if let layer = fits(graph.layer(named: (parts + [candidate]).joined(separator: "."))) { return layer }
        }
        return nil
    }
}

extension TensorGraph {
    /// The image channels a Hugging Face or timm config says the model takes (`num_channels`,
    /// `in_chans`), nil when none does.
    var architectureChannels: Int? {
        guard case .huggingFace(let config, _)? = architecture else { return nil }
        return config.json["num_channels"]?.intValue ?? config.json["in_chans"]?.intValue
    }
}
