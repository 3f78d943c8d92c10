/// Builds layers from a flat list of named tensors (a state dict): tensors sharing a module prefix
/// (`layer1.0.conv1` for `layer1.0.conv1.weight`, `conv1` for `conv1/kernel:0`) form one layer, in order
/// of first appearance; the kind is inferred from the tensor names and shapes.
public enum StateDictGrouping {
    /// The layer name and the local tensor name for a full tensor name.
    public static func split(_ name: String) -> (layer: String, local: String) {
        // Keras-style names ("conv1/kernel:0", "conv1/kernel") use '/', PyTorch-style ones '.'.
        if let slash = name.firstIndex(of: "/") {
            return (String(name[..<slash]), String(name[name.index(after: slash)...]))
        }
        if let dot = name.lastIndex(of: ".") {
            return (String(name[..<dot]), String(name[name.index(after: dot)...]))
        }
        return (name, name)
    }

    /// The last component of a tensor name without `:0` (`conv1/kernel:0` -> `kernel`,
    /// `transfer/classifier/kernel` -> `kernel`, `fc.weight` -> `weight`).
    public static func localName(_ name: String) -> String {
        var local = Substring(name)
        if local.hasSuffix(":0") { local = local.dropLast(2) }
        if let cut = local.lastIndex(where: { $0 == "/" || $0 == "." }) { local = local[local.index(after: cut)...] }
        return String(local)
    }

    /// The axis convention a tensor name implies.
    public static func layout(name: String, shape: [Int]) -> Layout {
        let local = localName(name)
        if ["kernel", "depthwise_kernel", "pointwise_kernel", "embeddings"].contains(local) { return .keras }
        if local == "weight", shape.count >= 2 { return .torch }
        return .unknown
    }

    /// Groups `tensors` into layers.
    public static func layers(from tensors: [Tensor]) -> [Layer] {
        var order: [String] = []
        var byLayer: [String: [Tensor]] = [:]
        for tensor in tensors {
            let layer = split(tensor.name).layer
            if byLayer[layer] == nil { order.append(layer) }
            byLayer[layer, default: []].append(tensor)
        }
        return order.map { name in
            let members = byLayer[name]!
            return Layer(name: name, kind: inferKind(layer: name, tensors: members), tensors: members)
        }
    }

    /// Infers a layer's kind from its tensors' local names and shapes.
    public static func inferKind(layer: String, tensors: [Tensor]) -> LayerKind {
        var locals: [String: [Int]] = [:]
        for t in tensors { locals[localName(t.name)] = t.shape }
        let lowered = layer.lowercased()
        if locals["running_mean"] != nil || locals["moving_mean"] != nil { return .batchNorm }
        if let kernel = locals["depthwise_kernel"], kernel.count == 4 {
            return locals["pointwise_kernel"] != nil ? .separableConv2d : .depthwiseConv2d
        }
        if let embeddings = locals["embeddings"], embeddings.count == 2 { return .embedding }
        // nn.LSTM / nn.GRU / nn.RNN (`weight_ih_l0`, `weight_hh_l0`), nn.MultiheadAttention (`in_proj_weight`).
        if locals.keys.contains(where: { $0.hasPrefix("weight_ih_l") || $0.hasPrefix("weight_hh_l") }) { return .recurrent }
        if locals["in_proj_weight"] != nil { return .attention }
        if let kernel = locals["kernel"] ?? locals["weight"] {
            // An elementwise affine over a map or a row (nn.LayerNorm([1, 264]), nn.LayerNorm([C, H, W])):
            // its bias has the weight's shape; a Linear's or a convolution's bias has one entry per output.
            let last = lowered.split(separator: ".").last.map(String.init) ?? lowered
            if kernel.count >= 2, locals["bias"] == kernel { return .layerNorm }
            switch kernel.count {
            case 3: return .conv1d
            case 4: return .conv2d
            case 5: return .conv3d
            case 2:
                if (lowered.contains("embed") || ["wte", "wpe"].contains(last)) && locals["bias"] == nil { return .embedding }
                return .dense
            case 1:
                if lowered.contains("norm") || lowered.hasPrefix("ln") || lowered.contains(".ln") { return .layerNorm }
                // nn.PReLU: one slope per channel (or one for all).
                if lowered.contains("prelu") && locals.count == 1 { return .activation }
                return .unknown
            default: return .unknown
            }
        }
        if locals["gamma"] != nil, locals["beta"] != nil { return .layerNorm }
        return .unknown
    }
}
