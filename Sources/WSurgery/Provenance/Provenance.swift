/// What wsurgery did to make a file: one entry per wsurgery run, oldest first, carried from input to
/// output so a chain of runs keeps its whole history. Stored as JSON text in the file's own metadata:
/// safetensors `__metadata__['wsurgery_provenance']`, the HDF5 root attribute `wsurgery_provenance`
/// (Keras reads neither). Nothing in it depends on time, paths or the machine, so the same input,
/// passes and seed give the same bytes.
public struct Provenance: Sendable, Equatable {
    /// The metadata key / attribute name.
    public static let key = "wsurgery_provenance"
    /// The tool version written into new entries.
    public static let toolVersion = "0.1.0"

    /// One run of wsurgery.
    public struct Entry: Sendable, Equatable {
        /// Always `wsurgery`.
        public var tool: String
        /// The version of wsurgery that made the file.
        public var version: String
        /// Each pass with its options as resolved (defaults included, seeds included).
        public var passes: [(name: String, options: [(String, String)])]
        /// The input's file name (not its path: the same file elsewhere gives the same bytes).
        public var inputName: String
        /// The input's format (`keras-legacy-h5`).
        public var inputFormat: String
        /// The input file's digest (for a sharded input, of its index file), hex as `digestAlgorithm`'s
        /// command prints it.
        public var inputDigest: String
        /// How `inputDigest` was computed.
        public var digestAlgorithm: DigestAlgorithm

        /// An entry for one run.
        public init(
            passes: [(name: String, options: [(String, String)])], inputName: String, inputFormat: String, inputDigest: String,
            digestAlgorithm: DigestAlgorithm = .xxh128, tool: String = "wsurgery", version: String = Provenance.toolVersion
        ) {
            self.tool = tool
            self.version = version
            self.passes = passes
            self.inputName = inputName
            self.inputFormat = inputFormat
            self.inputDigest = inputDigest
            self.digestAlgorithm = digestAlgorithm
        }

        /// Entries are equal when they record the same JSON.
        public static func == (a: Entry, b: Entry) -> Bool { a.json == b.json }

        /// The seeds the passes used (a `seed` option), in pass order.
        public var seeds: [String] { passes.compactMap { pass in pass.options.first { $0.0 == "seed" }?.1 } }

        /// The entry as stored.
        public var json: JSONValue {
            var fields: [(String, JSONValue)] = [
                ("tool", .string(tool)),
                ("version", .string(version)),
                (
                    "passes",
                    .array(
                        passes.map { pass in
                            .object([("pass", .string(pass.name)), ("options", .object(pass.options.map { ($0.0, .string($0.1)) }))])
                        })
                ),
            ]
            if let seed = seeds.first, Set(seeds).count == 1 { fields.append(("seed", .string(seed))) }
            fields.append(
                (
                    "input",
                    .object([
                        ("name", .string(inputName)),
                        ("format", .string(inputFormat)),
                        (digestAlgorithm.rawValue, .string(inputDigest)),
                    ])
                ))
            return .object(fields)
        }

        init?(json: JSONValue) {
            guard let tool = json["tool"]?.stringValue, let version = json["version"]?.stringValue,
                case .array(let passList)? = json["passes"], let input = json["input"]
            else { return nil }
            var passes: [(name: String, options: [(String, String)])] = []
            for pass in passList {
                guard let name = pass["pass"]?.stringValue else { return nil }
                var options: [(String, String)] = []
                if case .object(let pairs)? = pass["options"] {
                    for (key, value) in pairs { options.append((key, value.stringValue ?? value.serialized(.compact))) }
                }
                passes.append((name, options))
            }
            // The digest under its algorithm's name (records before XXH3-128 all hold `sha256`).
            let algorithm = DigestAlgorithm.allCases.first { input[$0.rawValue]?.stringValue != nil } ?? .sha256
            self.init(
                passes: passes, inputName: input["name"]?.stringValue ?? "?", inputFormat: input["format"]?.stringValue ?? "?",
                inputDigest: input[algorithm.rawValue]?.stringValue ?? "?", digestAlgorithm: algorithm, tool: tool, version: version)
        }

        /// One line: `wsurgery 0.1.0: collapse-channels (mode=sum), replace-head (classes=5, seed=1) on a.h5 (keras-legacy-h5, xxh128 0123abcd…)`.
        public var summary: String {
            let steps =
                passes.isEmpty
                ? "convert"
                : passes.map { pass in
                    pass.name + (pass.options.isEmpty ? "" : " (" + pass.options.map { "\($0.0)=\($0.1)" }.joined(separator: ", ") + ")")
                }.joined(separator: ", ")
            return "\(tool) \(version): \(steps) on \(inputName) (\(inputFormat), \(digestAlgorithm.rawValue) \(inputDigest.prefix(16))…)"
        }
    }

    /// One entry per run, oldest first.
    public var entries: [Entry]

    /// A history of `entries`.
    public init(entries: [Entry] = []) { self.entries = entries }

    /// The stored text: a JSON array of entries, compact.
    public var text: String { json.serialized(.compact) }

    /// Parses stored text; nil when it is not a provenance record (kept as ordinary metadata then).
    public init?(text: String) {
        guard case .array(let items)? = try? JSONParser.parse(text) else { return nil }
        var entries: [Entry] = []
        for item in items {
            guard let entry = Entry(json: item) else { return nil }
            entries.append(entry)
        }
        self.entries = entries
    }

    /// The history as stored: a JSON list.
    public var json: JSONValue { .array(entries.map(\.json)) }
}

extension Provenance {
    /// Appends this run to the graph's history: the passes with their resolved options and the input's
    /// name (as given), format and SHA-256 (of the file the graph was read from: the index of a sharded
    /// checkpoint).
    /// The digest is `digest`'s, filled in by the writer when it is known (`InputDigest`).
    static func record(_ passes: [any GraphPass], input: String, digest: InputDigest, in graph: inout TensorGraph) {
        let name = input.split(separator: "/").last.map(String.init) ?? input
        let entry = Entry(
            passes: passes.map { ($0.name, $0.options) }, inputName: name, inputFormat: graph.sourceFormat.rawValue,
            inputDigest: digest.placeholder, digestAlgorithm: digest.algorithm)
        graph.provenance = Provenance(entries: (graph.provenance?.entries ?? []) + [entry])
        graph.pendingDigest = digest
    }
}
