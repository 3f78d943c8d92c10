/// The index of a sharded checkpoint (`model.safetensors.index.json`, `pytorch_model.bin.index.json`):
/// which shard holds each tensor, checked the same way for every format.
struct ShardIndex {
    /// The index file.
    let file: InputFile
    /// The parsed index (its `metadata` is kept by the safetensors reader).
    let json: JSONValue
    /// Tensor name -> shard file name.
    let shardOf: [String: String]
    /// The shard file names, sorted by their bytes.
    let shards: [String]

    /// Reads and checks `path`: a `weight_map` object of plain file names in the index's directory.
    init(path: String) throws {
        file = try InputFile(path: path)
        try Limits.current.checkConfig(bytes: file.size, path: path, what: "the index")
        do { json = try JSONParser.parse(try file.read(count: Int(file.size), at: 0), rejectDuplicateKeys: true) } catch let error as JSONParseError {
            throw WSurgeryError.invalidIndex(path: path, reason: "\(error)")
        }
        guard let weightMap = json["weight_map"]?.objectValue else {
            throw WSurgeryError.invalidIndex(path: path, reason: "no 'weight_map' object")
        }
        var shardOf: [String: String] = [:]
        for (tensor, value) in weightMap {
            guard let name = value.stringValue else {
                throw WSurgeryError.invalidIndex(path: path, reason: "weight_map entry '\(tensor)' is not a file name")
            }
            let control = name.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
            if name.contains("/") || name == "." || name == ".." || name.isEmpty || control {
                throw WSurgeryError.invalidIndex(path: path, reason: "shard '\(name)' is not a plain file name in the index's directory")
            }
            shardOf[tensor] = name
        }
        self.shardOf = shardOf
        shards = Set(shardOf.values).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }

    /// The path of a shard.
    func path(of shard: String) -> String { OutputFile.directory(of: file.path) + "/" + shard }

    /// Refuses a tensor found in a shard the index does not place it in.
    func check(tensor: String, inShard shard: String) throws {
        guard shardOf[tensor] == shard else {
            let reason = shardOf[tensor].map { "the index places it in '\($0)'" } ?? "the index does not list it"
            throw WSurgeryError.invalidIndex(path: file.path, reason: "tensor '\(tensor)' is in shard '\(shard)' but \(reason)")
        }
    }

    /// Refuses an index that lists a tensor no shard held.
    func checkComplete(found: Set<String>) throws {
        if let missing = shardOf.keys.sorted().first(where: { !found.contains($0) }) {
            throw WSurgeryError.invalidIndex(
                path: file.path, reason: "tensor '\(missing)' is listed for shard '\(shardOf[missing]!)' but that shard does not hold it")
        }
    }
}
