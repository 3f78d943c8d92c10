/// Keras layers built out of sublayers that Keras 3 saves under attribute groups of the layer's own
/// saveable (`layers/multi_head_attention/query_dense/vars`, `layers/lstm/cell/vars`,
/// `layers/bidirectional/forward_layer/cell/vars`), while a legacy `.h5` keeps all their weights in the
/// layer's one group, named by variable path (`mha/query/kernel`, `bi/forward_lstm/lstm_cell/kernel`).
/// The graph holds such a layer as one layer whose tensors carry the Keras 3 variable path; this table
/// turns the path's sublayer names into the attribute groups and back.
enum KerasComposites {
    /// Whether Keras saves layers of this class with their sublayers under attribute groups.
    static func isComposite(_ className: String?) -> Bool {
        guard let className else { return false }
        return attentionGroups[className] != nil || recurrent.contains(className) || wrappers.contains(className)
    }

    /// The attribute groups, under the owner's saveable, of the sublayers named `chain` (the names in
    /// the tensor's variable path between the layer and the variable), or nil when the table does not
    /// know where Keras keeps them. `ownerConfig` is the layer's `config` object, when there is one.
    static func groups(ownerClass: String?, ownerConfig: JSONValue?, chain: ArraySlice<String>) -> [String]? {
        guard let first = chain.first, let ownerClass else { return chain.isEmpty ? [] : nil }
        let rest = chain.dropFirst()
        if let table = attentionGroups[ownerClass] {
            guard rest.isEmpty, let group = table.first(where: { $0.sublayer == first })?.group else { return nil }
            return [group]
        }
        if recurrent.contains(ownerClass) {
            return rest.isEmpty && first.hasSuffix("_cell") ? ["cell"] : nil
        }
        if wrappers.contains(ownerClass) {
            let group: String
            if ownerClass == "TimeDistributed" {
                group = "layer"
            } else if first.hasPrefix("forward_") {
                group = "forward_layer"
            } else if first.hasPrefix("backward_") {
                group = "backward_layer"
            } else {
                return nil
            }
            let wrapped = ownerConfig?["layer"]
            let wrappedClass = wrapped?["class_name"]?.stringValue ?? (rest.first?.hasSuffix("_cell") == true ? "LSTM" : nil)
            if rest.isEmpty { return [group] }
            return groups(ownerClass: wrappedClass, ownerConfig: wrapped?["config"], chain: rest).map { [group] + $0 }
        }
        return nil
    }

    /// The position of an attribute group among its siblings in Keras's weight order (queries before
    /// keys, the forward layer before the backward one); groups the table does not know come after.
    static func rank(ofGroup group: String) -> Int {
        let order = ["query_dense", "key_dense", "value_dense", "output_dense", "forward_layer", "backward_layer", "cell", "layer"]
        let bare = group.hasPrefix("_") ? String(group.dropFirst()) : group
        return order.firstIndex(of: bare) ?? order.count
    }

    /// The names Keras gives the variables of the sublayer kept in `group` (relative to its owner),
    /// when their number is `count`; nil when the table does not know them.
    static func variableNames(ownerClass: String?, ownerConfig: JSONValue?, groups: [String], count: Int) -> [String]? {
        guard let last = groups.last else { return nil }
        var candidates: [String]
        switch last {
        case "cell": candidates = ["kernel", "recurrent_kernel", "bias"]
        case _ where last.hasSuffix("_dense") && ownerClass.map({ attentionGroups[$0] != nil }) == true: candidates = ["kernel", "bias"]
        case "layer", "forward_layer", "backward_layer":
            guard let wrapped = ownerConfig?["layer"], let className = wrapped["class_name"]?.stringValue,
                let names = KerasConfig.variableNames(className: className, config: wrapped["config"] ?? .object([]))
            else { return nil }
            candidates = names
        default: return nil
        }
        if count == candidates.count - 1, candidates.last == "bias" { candidates.removeLast() }
        return candidates.count == count ? candidates : nil
    }

    /// The sublayer names of a tensor's variable path: the components between the layer's name and the
    /// variable's (`mha/query/kernel` in layer `mha`: `query`; `seqcnn/c1/kernel` in `c1`: none).
    static func chain(ofTensor name: String, inLayer layer: String) -> ArraySlice<String> {
        let components = name.split(separator: "/").map(String.init)
        guard components.count > 1, let i = components.dropLast().firstIndex(of: layer) else { return [] }
        var chain = components[(i + 1)..<(components.count - 1)]
        // A variable read without its name (`vars/N`) ends in the two components `vars`, `N`.
        if chain.last == "vars", Int(components.last!) != nil { chain = chain.dropLast() }
        return chain
    }

    /// Where a tensor of a composite layer comes in Keras's weight order: the ranks of its attribute
    /// groups, then of its variable name (`kernel` before `recurrent_kernel` before `bias`), so that a
    /// state dict read in file (alphabetical) order is arranged as Keras creates the variables. Nil when
    /// the owner is not a composite or the table does not know the tensor's sublayer.
    static func weightOrder(ofTensor name: String, inLayer layer: String, ownerClass: String, ownerConfig: JSONValue?) -> [Int]? {
        guard isComposite(ownerClass),
            let groups = groups(ownerClass: ownerClass, ownerConfig: ownerConfig, chain: chain(ofTensor: name, inLayer: layer))
        else { return nil }
        var variable = String(name.split(separator: "/").last ?? "")
        if variable.hasSuffix(":0") { variable = String(variable.dropLast(2)) }
        return groups.map(rank(ofGroup:)) + [variableOrder.firstIndex(of: variable) ?? variableOrder.count]
    }

    private static let variableOrder = [
        "kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance",
        "embeddings",
    ]

    private static let attentionGroups: [String: [(sublayer: String, group: String)]] = {
        let grouped: [(sublayer: String, group: String)] = [
            ("query", "_query_dense"), ("key", "_key_dense"), ("value", "_value_dense"), ("attention_output", "_output_dense"),
        ]
        return [
            "MultiHeadAttention": [
                ("query", "query_dense"), ("key", "key_dense"), ("value", "value_dense"), ("attention_output", "output_dense"),
            ],
            // Configs name the class `GroupQueryAttention` (its `keras.layers` name); the Python class is `GroupedQueryAttention`.
            "GroupQueryAttention": grouped, "GroupedQueryAttention": grouped,
        ]
    }()
    private static let recurrent: Set<String> = ["LSTM", "GRU", "SimpleRNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"]
    private static let wrappers: Set<String> = ["Bidirectional", "TimeDistributed"]
}
