import Foundation

/// Reads every output back through this tool's own readers before it gets its name, and compares it
/// with what the pipeline meant to write: the same tensors (names for safetensors, which keeps them;
/// for Keras HDF5 the count and each tensor's dtype and shape), the same dtypes and shapes, an index
/// that maps each tensor to the shard holding it. Only headers, indexes and HDF5 metadata are read,
/// never the bytes of the tensors. A difference is a bug of this tool (exit 70), and nothing is left.
enum OutputCheck {
    /// What a tensor is, as a reader sees it.
    struct Signature: Hashable, Comparable {
        var dtype: String
        var shape: [Int]

        static func < (a: Signature, b: Signature) -> Bool {
            if (a.dtype, a.shape.count) != (b.dtype, b.shape.count) { return (a.dtype, a.shape.count) < (b.dtype, b.shape.count) }
            return a.shape.lexicographicallyPrecedes(b.shape)
        }

        init(dtype: DType, shape: [Int]) {
            self.dtype = dtype.numpyName
            self.shape = shape
        }
    }

    static func failure(_ path: String, _ reason: String) -> WSurgeryError { .outputCheckFailed(path: path, reason: reason) }

    /// Checks the files of `outputs` written for `graph` in `format`.
    static func verify(_ graph: TensorGraph, format: CheckpointFormat, outputs: OutputSet, path: String) throws {
        switch format {
        case .safetensors, .shardedSafetensors: try verifySafetensors(graph, outputs: outputs, path: path)
        case .kerasLegacyH5, .kerasWeightsH5:
            guard let file = outputs.files.first(where: { $0.path == path }) else { throw failure(path, "the file was never created") }
            try verifyKerasH5(graph, at: file.temporaryPath, name: path)
        case .kerasArchive, .pytorch: return  // the archive checks its weights file itself (KerasArchive.write)
        }
    }

    /// The safetensors files of the set hold exactly the graph's tensors, each once; an index maps each
    /// to its shard.
    static func verifySafetensors(_ graph: TensorGraph, outputs: OutputSet, path: String) throws {
        var found: [String: (signature: Signature, file: String)] = [:]
        var shardNames = Set<String>()
        for file in outputs.files where file.path.hasSuffix(".safetensors") {
            let header: SafetensorsHeader
            do { header = try SafetensorsHeader.read(try InputFile(path: file.temporaryPath)) } catch {
                throw failure(file.path, "it does not read as safetensors (\(error))")
            }
            let name = OutputSet.baseName(file.path)
            shardNames.insert(name)
            for entry in header.entries {
                if found[entry.name] != nil { throw failure(file.path, "tensor '\(entry.name)' is written twice") }
                found[entry.name] = (Signature(dtype: entry.dtype, shape: entry.shape), name)
            }
        }
        let expected = graph.tensors
        if expected.count != found.count {
            let missing = expected.first { found[$0.name] == nil }.map { ", '\($0.name)' missing" } ?? ""
            throw failure(path, "\(found.count) tensors written, \(expected.count) meant\(missing)")
        }
        for tensor in expected {
            guard let got = found[tensor.name] else { throw failure(path, "tensor '\(tensor.name)' is missing") }
            let want = Signature(dtype: tensor.dtype, shape: tensor.shape)
            if got.signature != want {
                throw failure(path, "tensor '\(tensor.name)' is \(got.signature.dtype) \(got.signature.shape), meant \(want.dtype) \(want.shape)")
            }
        }
        guard let index = outputs.files.first(where: { $0.path.hasSuffix(ShardedSafetensors.indexSuffix) }) else { return }
        // Read by the reader's own index parser.
        let read: ShardIndex
        do { read = try ShardIndex(path: index.temporaryPath) } catch { throw failure(index.path, "the index does not read back (\(error))") }
        let map = read.shardOf
        if map.count != found.count { throw failure(index.path, "the index maps \(map.count) tensors, the shards hold \(found.count)") }
        for (tensor, shard) in map where !shardNames.contains(shard) || found[tensor]?.file != shard {
            throw failure(index.path, "the index places '\(tensor)' in a shard that does not hold it")
        }
    }

    /// A Keras HDF5 file holds as many tensors as the graph, with the same dtypes and shapes.
    static func verifyKerasH5(_ graph: TensorGraph, at temporaryPath: String, name: String) throws {
        let written: TensorGraph
        do { written = try KerasH5Reader.readOwnOutput(path: temporaryPath, name: name) } catch {
            throw failure(name, "it does not read as a Keras HDF5 file (\(error))")
        }
        let want = graph.tensors.map { Signature(dtype: $0.dtype, shape: $0.shape) }.sorted()
        let got = written.tensors.map { Signature(dtype: $0.dtype, shape: $0.shape) }.sorted()
        if want.count != got.count { throw failure(name, "\(got.count) tensors written, \(want.count) meant") }
        if let i = want.indices.first(where: { want[$0] != got[$0] }) {
            throw failure(name, "a tensor written is \(got[i].dtype) \(got[i].shape) where \(want[i].dtype) \(want[i].shape) was meant")
        }
    }
}
