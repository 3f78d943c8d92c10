/// Dense/Linear layers of a checkpoint without edges (a state dict, Keras weights without their config)
/// whose fan-in is a flattened feature map rather than pooled features: `nn.Flatten()` of facenet's RNet
/// `conv3` (64 channels, 3 x 3) into `dense4` (576 inputs). Such a layer's fan-in follows the input size,
/// and nothing in the file says what the map is at another size, so `set-input-shape` asks.
///
/// The rule: the fan-in F is C x k, k > 1, where C is the output channel count of the convolution the
/// Linear reads. In a file that records the model's (or state dict's) order, that is the last
/// convolution before it, past BatchNorm, PReLU and other layers without a kernel; a Linear that follows
/// another Linear reads its features. Where the order is not recorded (a bare safetensors file, a Keras 3
/// weights file), a Linear is flagged when some convolution's C gives a square k, no layer has exactly F
/// channels or units (pooled features or an MLP), and C is the largest such. Classifiers that pool first
/// (every torchvision and timm classifier) have F = C and are not flagged.
public struct FlattenedMap: Sendable, Equatable {
    /// The Dense/Linear layer.
    public var layer: String
    /// Its kernel's index in the layer.
    public var index: Int
    /// The convolution whose output it reads.
    public var convolution: String
    /// That convolution's output channels.
    public var channels: Int
    /// Positions of the flattened map (F / C).
    public var positions: Int
    /// The map's side when it is square (3 for 3 x 3).
    public var side: Int?
    /// The kernel's layout: PyTorch flattens (C, H, W), Keras (H, W, C).
    public var layout: Layout
    /// Whether the convolution was found by the file's layer order (else guessed from the shapes).
    public var byOrder: Bool
    /// Why the map keeps its size at any input (adaptive pooling in a known model family), nil when
    /// nothing says so.
    public var fixedBecause: String?

    /// `64 x 3 x 3` (channels first, as PyTorch flattens), `3 x 3 x 64` (Keras), or `64 x 9 positions`.
    public var mapText: String {
        guard let side else { return "\(channels) x \(positions) positions" }
        return layout == .keras ? "\(side) x \(side) x \(channels)" : "\(channels) x \(side) x \(side)"
    }
}

/// What the user says about a flattened map at the new size (`--flattened-map [LAYER=]HxW|CxHxW|fixed`).
public struct FlattenedMapChoice: Sendable, Equatable {
    /// The layer it is for; nil: every flagged layer.
    public var layer: String?
    /// The map's size at the new input, nil when it keeps its size (adaptive pooling).
    public var size: (height: Int, width: Int)?
    /// The map's channels when the user gives them (`64x5x5`), else the detected convolution's.
    public var channels: Int?

    /// A choice.
    public init(layer: String?, size: (height: Int, width: Int)?, channels: Int? = nil) {
        self.layer = layer
        self.size = size
        self.channels = channels
    }

    /// `dense4=5x5`, `5x5`, `fc.0=128x2x15`, `fixed`.
    public init(parsing text: String) throws {
        let bad = { (why: String) in WSurgeryError.invalidOption(option: "flattened-map", reason: "'\(text)': \(why)") }
        var value = Substring(text)
        if let eq = text.lastIndex(of: "=") {
            layer = String(text[..<eq])
            value = text[text.index(after: eq)...]
            guard !(layer ?? "").isEmpty else { throw bad("the layer name before '=' is empty") }
        }
        if value.lowercased() == "fixed" {
            size = nil
            return
        }
        let parts = value.lowercased().split(separator: "x", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 2 || parts.count == 3, parts.allSatisfy({ $0 != nil }) else {
            throw bad("expected [LAYER=]HxW (the map the layer reads at the new size), [LAYER=]CxHxW, or [LAYER=]fixed")
        }
        let numbers = parts.map { $0! }
        guard numbers.allSatisfy({ (1...PassArguments.maxCount).contains($0) }) else {
            throw bad("each number must be from 1 to \(PassArguments.maxCount)")
        }
        channels = numbers.count == 3 ? numbers[0] : nil
        size = (numbers[numbers.count - 2], numbers[numbers.count - 1])
    }

    /// The text form.
    public var description: String {
        let value = size.map { (channels.map { "\($0)x" } ?? "") + "\($0.height)x\($0.width)" } ?? "fixed"
        return (layer.map { $0 + "=" } ?? "") + value
    }

    /// Equal choices.
    public static func == (a: FlattenedMapChoice, b: FlattenedMapChoice) -> Bool {
        a.layer == b.layer && a.channels == b.channels && a.size?.height == b.size?.height && a.size?.width == b.size?.width
    }
}

enum FlattenedMaps {
    /// The Linear layers of `graph` that read a flattened map (see `FlattenedMap`).
    static func find(in graph: TensorGraph) -> [FlattenedMap] {
        let ordered = graph.layersInModelOrder || graph.sourceFormat == .pytorch
        let weighted = graph.layers.filter { WeightRoles($0) != nil }
        var found: [FlattenedMap] = []
        for (position, layer) in graph.layers.enumerated() where layer.kind == .dense {
            guard let roles = WeightRoles(layer), pooledConcatenation(layer.name, in: graph) == nil else { continue }
            let fanIn = layer.tensors[roles.kernel].shape[roles.inputAxis]
            let reading: (conv: Layer, channels: Int)?
            if ordered {
                reading = convolution(readBy: position, fanIn: fanIn, in: graph.layers)
            } else {
                reading = likelyConvolution(for: layer, fanIn: fanIn, in: weighted, norms: graph.layers)
            }
            guard let (conv, channels) = reading, channels > 0, fanIn % channels == 0, fanIn / channels > 1 else { continue }
            let positions = fanIn / channels
            let root = Int(Double(positions).squareRoot().rounded())
            var map = FlattenedMap(
                layer: layer.name, index: roles.kernel, convolution: conv.name, channels: channels, positions: positions,
                side: root * root == positions ? root : nil, layout: roles.layout, byOrder: ordered)
            map.fixedBecause = adaptivePooling(map, in: graph)
            found.append(map)
        }
        return found
    }

    /// The convolution the Linear at `position` reads in model order: the last layer with a kernel
    /// before it, passing BatchNorm and PReLU; nil when that is another Linear, when a norm over the
    /// Linear's F features lies between (DenseNet's `norm5`: pooled features), when the convolution is
    /// not a 2-D one over the image (ECA's Conv1d over channels) or is depthwise (MViT's attention
    /// pooling), or when a convolution comes after the Linear (a Linear inside
    /// a block, not a classifier on the final map).
    static func convolution(readBy position: Int, fanIn: Int, in layers: [Layer]) -> (Layer, Int)? {
        if layers[(position + 1)...].contains(where: LayerDetection.isConvolutionWithKernel) { return nil }
        for layer in layers[..<position].reversed() {
            if WeightRoles(layer) == nil {
                if [.batchNorm, .layerNorm].contains(layer.kind), layer.tensors.contains(where: { $0.shape == [fanIn] }) { return nil }
                continue
            }
            guard layer.kind == .conv2d, let c = outputChannels(layer), !isDepthwise(layer) else { return nil }
            return (layer, c)
        }
        return nil
    }

    /// A convolution with one input channel per group and several outputs (depthwise).
    static func isDepthwise(_ layer: Layer) -> Bool {
        guard let roles = WeightRoles(layer) else { return false }
        let shape = layer.tensors[roles.kernel].shape
        return shape[roles.inputAxis] == 1 && shape[roles.outputAxis] > 1
    }

    /// Without the order: the convolution with the most channels C for which F = C x k, k a square > 1,
    /// for a Linear at the top of the module tree (`dense4`, `fc.0`, `classifier.0`; a Linear deeper in
    /// is inside a block), when no layer has exactly F channels or units.
    static func likelyConvolution(for reader: Layer, fanIn: Int, in weighted: [Layer], norms layers: [Layer]) -> (Layer, Int)? {
        let local = LayerDetection.wrapperPrefixes.reversed().first { reader.name.hasPrefix($0) }.map { reader.name.dropFirst($0.count) }
        guard (local ?? Substring(reader.name)).split(separator: ".").count <= 2 else { return nil }
        if weighted.contains(where: { $0.name != reader.name && outputChannels($0) == fanIn }) { return nil }
        // A norm over F features (DenseNet's `norm5` before `classifier`) normalises pooled features.
        let normalises = layers.contains { layer in
            [.batchNorm, .layerNorm].contains(layer.kind) && layer.tensors.contains { $0.shape == [fanIn] }
        }
        if normalises { return nil }
        let candidates = weighted.compactMap { layer -> (Layer, Int)? in
            guard layer.kind == .conv2d, !isDepthwise(layer), let c = outputChannels(layer), c > 0, fanIn % c == 0 else {
                return nil
            }
            let k = fanIn / c
            let root = Int(Double(k).squareRoot().rounded())
            return k > 1 && root * root == k ? (layer, c) : nil
        }
        return candidates.max { $0.1 < $1.1 }
    }

    /// Classifiers of known families that read the pooled concatenation of several branches, whose
    /// fan-in is a multiple of a branch's channels: torchvision Inception v3 (`fc` after `Mixed_7c`) and
    /// GoogLeNet (`fc` after `inception5b`), timm NASNet (`last_linear` after `cell_17`), PNASNet
    /// (after `cell_11`) and Inception v4 (after `features.21`).
    static let pooledConcatenations: [(layer: String, marker: String, family: String)] = [
        ("fc", "Mixed_7c.branch_pool.conv", "torchvision Inception v3"), ("fc", "inception5b.branch4.1.conv", "torchvision GoogLeNet"),
        ("last_linear", "cell_17.conv_prev_1x1.conv", "timm NASNet"), ("last_linear", "cell_11.conv_prev_1x1.conv", "timm PNASNet"),
        ("last_linear", "features.21.branch3.1.conv", "timm Inception v4"),
    ]

    static func pooledConcatenation(_ name: String, in graph: TensorGraph) -> String? {
        for known in pooledConcatenations {
            guard let prefix = LayerDetection.wrapperPrefixes.first(where: { name == $0 + known.layer }) else { continue }
            if graph.layer(named: prefix + known.marker) != nil { return known.family }
        }
        return nil
    }

    /// A layer's output channels or units (a kernel's output axis; a norm's feature count).
    static func outputChannels(_ layer: Layer) -> Int? {
        guard let roles = WeightRoles(layer) else { return nil }
        return layer.tensors[roles.kernel].shape[roles.outputAxis]
    }

    /// torchvision families that pool adaptively to a fixed grid before a Linear: VGG
    /// (`AdaptiveAvgPool2d((7, 7))` before `classifier.0`), AlexNet (`(6, 6)` before `classifier.1`),
    /// GoogLeNet's auxiliary heads (`(4, 4)` before `aux1.fc1`, `aux2.fc1`).
    static let torchvisionAdaptive: [(layer: String, channels: Int, side: Int, family: String)] = [
        ("classifier.0", 512, 7, "torchvision VGG"), ("classifier.1", 256, 6, "torchvision AlexNet"),
        ("aux1.fc1", 128, 4, "torchvision GoogLeNet's auxiliary head"), ("aux2.fc1", 128, 4, "torchvision GoogLeNet's auxiliary head"),
    ]

    static func adaptivePooling(_ map: FlattenedMap, in graph: TensorGraph) -> String? {
        for known in torchvisionAdaptive where map.channels == known.channels && map.side == known.side {
            let prefix = LayerDetection.wrapperPrefixes.first { map.layer == $0 + known.layer }
            guard let prefix else { continue }
            // The family's own layer names around it: VGG/AlexNet `features.0`, GoogLeNet `aux1.conv.conv`.
            let marker = known.layer.hasPrefix("aux") ? known.layer.replacingOccurrences(of: ".fc1", with: ".conv.conv") : "features.0"
            guard graph.layer(named: prefix + marker) != nil else { continue }
            return "\(known.family) pools adaptively to \(known.side) x \(known.side) before '\(map.layer)', so its map keeps its size"
        }
        return nil
    }
}
