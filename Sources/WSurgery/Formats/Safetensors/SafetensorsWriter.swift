/// Writes graphs as safetensors the way the reference writer does: tensors sorted by dtype alignment
/// (largest first) then name, the header padded with spaces to a multiple of 8 so every tensor is
/// aligned, and the data streamed tensor by tensor.
public enum SafetensorsWriter {
    /// The `__metadata__` to write: the entries read, the declared layout (`format: pt` for PyTorch), a
    /// Keras architecture when the graph has one and the Keras config a PyTorch-layout graph came from
    /// (safetensors has no other place for them), and the provenance record. Warnings go to `notes`.
    static func metadata(for graph: TensorGraph, notes: inout [String]) -> [(String, String)]? {
        typealias Key = SafetensorsMetadataKey
        var entries = graph.fileStates[SafetensorsFileState.self]?.metadata ?? []
        switch graph.declaredLayout {
        case .torch?:
            entries.removeAll { $0.0 == Key.format }
            entries.insert((Key.format, "pt"), at: 0)
        case .keras?:
            entries.removeAll { $0.0 == Key.format }
        case .unknown?, nil:
            break
        }
        if case .keras(let config)? = graph.architecture {
            let savedBy = graph.fileStates[KerasSavedBy.self]
            entries.removeAll { Key.kerasModel.contains($0.0) }
            entries.append((Key.kerasModelConfig, config.text(style: .python)))
            if let v = savedBy?.version { entries.append((Key.kerasVersion, v)) }
            if let v = savedBy?.backend { entries.append((Key.kerasBackend, v)) }
            if let v = savedBy?.trainingConfig { entries.append((Key.kerasTrainingConfig, v)) }
            notes.append("the Keras model config is kept in __metadata__['\(Key.kerasModelConfig)']")
        }
        if case .keras(let config)? = graph.originalArchitecture {
            entries.removeAll { $0.0 == Key.sourceKerasModelConfig }
            entries.append((Key.sourceKerasModelConfig, config.text(style: .python)))
            notes.append(
                "the Keras model config is kept in __metadata__['\(Key.sourceKerasModelConfig)'], so converting back to the Keras layout restores the Keras model"
            )
        }
        if let provenance = graph.provenance {
            entries.removeAll { $0.0 == Provenance.key }
            entries.append((Provenance.key, provenance.text))
        }
        if let optimizer = graph.optimizer {
            notes.append("optimizer state (\(optimizer.tensors.count) tensors) dropped: safetensors holds model weights only")
        }
        return entries.isEmpty ? nil : entries
    }

    /// The tensors in the order the reference writer lays them out.
    static func sortedForWriting(_ tensors: [Tensor]) -> [Tensor] {
        tensors.sorted { a, b in
            if a.dtype.safetensorsRank != b.dtype.safetensorsRank { return a.dtype.safetensorsRank > b.dtype.safetensorsRank }
            return Array(a.name.utf8).lexicographicallyPrecedes(Array(b.name.utf8))
        }
    }

    /// Checks that every tensor can be expressed: unique names, a safetensors dtype, bytes matching the shape.
    static func validate(_ tensors: [Tensor]) throws {
        var seen = Set<String>()
        for t in tensors {
            if !seen.insert(t.name).inserted {
                throw WSurgeryError.cannotExpress(
                    format: "safetensors", tensor: t.name, reason: "two tensors have this name; safetensors keys must be unique")
            }
            if case .opaque(let name, let bytes?) = t.dtype {
                throw WSurgeryError.cannotExpress(
                    format: "safetensors", tensor: t.name,
                    reason:
                        "its element type is an HDF5 opaque type '\(name)' of \(bytes) bytes with no known meaning; safetensors needs a named dtype")
            }
            if let needed = t.dtype.byteCount(elements: UInt64(t.elementCount)), needed != t.data.byteCount {
                throw WSurgeryError.cannotExpress(
                    format: "safetensors", tensor: t.name,
                    reason: "\(t.dtype.safetensorsName) \(t.shape) needs \(needed) bytes but the tensor holds \(t.data.byteCount)")
            }
        }
    }

    /// The header bytes (length prefix excluded) for tensors already in write order.
    static func headerBytes(_ tensors: [Tensor], metadata: [(String, String)]?) -> [UInt8] {
        var pairs: [(String, JSONValue)] = []
        if let metadata { pairs.append(("__metadata__", .object(metadata.map { ($0.0, .string($0.1)) }))) }
        var offset: UInt64 = 0
        for t in tensors {
            let end = offset + t.data.byteCount
            pairs.append(
                (
                    t.name,
                    .object([
                        ("dtype", .string(t.dtype.safetensorsName)),
                        ("shape", .array(t.shape.map { .int($0) })),
                        ("data_offsets", .array([.number(String(offset)), .number(String(end))])),
                    ])
                ))
            offset = end
        }
        var bytes = Array(JSONValue.object(pairs).serialized(.compact).utf8)
        while bytes.count % 8 != 0 { bytes.append(UInt8(ascii: " ")) }
        return bytes
    }

    /// Writes `tensors` as one safetensors file into `output`; a pending input digest in the metadata is
    /// filled in after the data (it is hashed meanwhile: `InputDigest`).
    static func writeFile(_ tensors: [Tensor], metadata: [(String, String)]?, digest: InputDigest? = nil, to output: OutputFile) throws {
        let ordered = sortedForWriting(tensors)
        var sources = coalesced(ordered.map(\.data))
        let header = aligned(headerBytes(ordered, metadata: metadata), to: sources.first?.fileRegion)
        var prefix = [UInt8](repeating: 0, count: 8)
        for i in 0..<8 { prefix[i] = UInt8((UInt64(header.count) >> (8 * UInt64(i))) & 0xFF) }
        if let whole = unchangedFile(prefix + header, sources) {
            sources = [whole]
        } else {
            try output.write(prefix + header)
        }
        for source in sources {
            try output.write(from: source)
            WriteProgress.advance(source.byteCount)
        }
        if let digest, let at = lastRange(of: Array(digest.placeholder.utf8), in: header) {
            try output.overwrite(Array(try digest.value().utf8), at: UInt64(prefix.count + at))
        }
    }

    /// `header` padded with spaces (as the format allows) so the data starts at the same offset within a
    /// page as the input region it begins with, so the kernel's copy has source and target on the same page
    /// boundaries (its effect was not measured apart; see the README, Benchmark). Unchanged when they
    /// already agree.
    static func aligned(_ header: [UInt8], to region: FileRegion?) -> [UInt8] {
        guard let region, region.offset % 8 == 0 else { return header }
        let page = 4096
        let want = Int(region.offset % UInt64(page))
        let have = (8 + header.count) % page
        return header + [UInt8](repeating: UInt8(ascii: " "), count: (want - have + page) % page)
    }

    /// Where `needle` last occurs in `bytes`.
    static func lastRange(of needle: [UInt8], in bytes: [UInt8]) -> Int? {
        guard bytes.count >= needle.count else { return nil }
        return stride(from: bytes.count - needle.count, through: 0, by: -1).first { start in
            bytes[start] == needle[0] && Array(bytes[start..<start + needle.count]) == needle
        }
    }

    /// When the new header equals the input's and the data is the input's data region in one piece, the
    /// output is the input byte for byte: copy it from offset 0. The kernel's page-cache copy is markedly
    /// faster from folio-aligned offsets than from the data start (8 + header length); see the README, Benchmark.
    static func unchangedFile(_ head: [UInt8], _ sources: [any TensorSource]) -> (any TensorSource)? {
        guard sources.count == 1, let region = sources[0].fileRegion, region.offset == UInt64(head.count),
            (try? region.file.read(count: head.count, at: 0)) == head
        else { return nil }
        return FileRegionSource(region: FileRegion(file: region.file, offset: 0, length: region.offset + region.length))
    }

    /// Merges runs of sources that are adjacent regions of one input file (the usual case when a
    /// safetensors file is rewritten in its own order), so the kernel copies each run in one call.
    static func coalesced(_ sources: [any TensorSource]) -> [any TensorSource] {
        var result: [any TensorSource] = []
        var run: FileRegion?
        for source in sources {
            if let region = source.fileRegion {
                if let current = run, current.file === region.file, current.offset + current.length == region.offset {
                    run = FileRegion(file: current.file, offset: current.offset, length: current.length + region.length)
                    continue
                }
                if let current = run { result.append(FileRegionSource(region: current)) }
                run = region
            } else {
                if let current = run {
                    result.append(FileRegionSource(region: current))
                    run = nil
                }
                result.append(source)
            }
        }
        if let current = run { result.append(FileRegionSource(region: current)) }
        return result
    }

    /// Writes the graph as a single `.safetensors` file.
    public static func write(_ graph: TensorGraph, to path: String, outputs: OutputSet) throws -> [String] {
        var notes: [String] = []
        let tensors = graph.tensors
        try validate(tensors)
        let meta = metadata(for: graph, notes: &notes)
        try writeFile(tensors, metadata: meta, digest: graph.pendingDigest, to: try outputs.create(path))
        try HuggingFaceFolder.writeFiles(graph, besideOutput: path, folderOutput: false, outputs: outputs, notes: &notes)
        return notes
    }

    /// Writes the graph as shards of at most `maxShardBytes` of tensor data (a larger tensor gets a shard
    /// of its own) plus the index, following Hugging Face's split: tensors in graph order, a new shard
    /// when the next tensor would overflow the current one.
    public static func writeSharded(_ graph: TensorGraph, to path: String, maxShardBytes: UInt64, outputs: OutputSet) throws -> [String] {
        var notes: [String] = []
        let tensors = graph.tensors
        try validate(tensors)
        let meta = metadata(for: graph, notes: &notes)
        var shards: [[Tensor]] = [[]]
        var current: UInt64 = 0
        for t in tensors {
            if current + t.data.byteCount > maxShardBytes, !shards[shards.count - 1].isEmpty {
                shards.append([])
                current = 0
            }
            shards[shards.count - 1].append(t)
            current += t.data.byteCount
        }
        let names = ShardedSafetensors.outputNames(for: path)
        let folder = ShardedSafetensors.isDirectoryOutput(path)
        if folder {
            try outputs.makeDirectory(names.directory)
            // A folder holds one model: the other form of it (an index and its shards, or one
            // model.safetensors) is refused without --force and removed with it.
            let single = names.directory + "/" + ShardedSafetensors.singleFileName
            let other = shards.count == 1 ? names.index : single
            if outputs.exists(other) {
                guard outputs.allowOverwrite else { throw WSurgeryError.outputExists(path: other) }
                outputs.removeOnCommit(other)
                if other == names.index, let listed = (try? ShardIndex(path: other))?.shards {
                    for shard in listed where !shard.contains("/") { outputs.removeOnCommit(names.directory + "/" + shard) }
                }
            }
            // Weights that fit in one shard are one model.safetensors, as save_pretrained writes them.
            if shards.count == 1 {
                try writeFile(tensors, metadata: meta, digest: graph.pendingDigest, to: try outputs.create(single))
                try HuggingFaceFolder.writeFiles(graph, besideOutput: single, folderOutput: true, outputs: outputs, notes: &notes)
                outputs.commitLast(single)
                notes.append("one file \(single) (the weights fit in one shard)")
                return notes
            }
        }
        var weightMap: [(String, JSONValue)] = []
        for (i, shard) in shards.enumerated() {
            let name = ShardedSafetensors.shardName(stem: names.stem, index: i + 1, count: shards.count)
            try writeFile(shard, metadata: meta, digest: graph.pendingDigest, to: try outputs.create(names.directory + "/" + name))
            weightMap += shard.map { ($0.name, .string(name)) }
        }
        weightMap.sort { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }
        let total = tensors.reduce(UInt64(0)) { $0 + $1.data.byteCount }
        let index = JSONValue.object([
            ("metadata", .object([("total_size", .number(String(total)))] + (graph.fileStates[SafetensorsFileState.self]?.indexMetadata ?? []))),
            ("weight_map", .object(weightMap)),
        ])
        try HuggingFaceFolder.writeFiles(
            graph, besideOutput: names.index, folderOutput: folder, outputs: outputs, notes: &notes)
        try outputs.create(names.index).write(Array((index.serialized(.pretty) + "\n").utf8))
        notes.append("\(shards.count) shard(s) and index \(names.index)")
        return notes
    }
}
