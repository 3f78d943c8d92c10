import Foundation

/// Reads `torch.save` files (`.pth`, `.pt`, `.bin`, `.ckpt`) without Python: the zip format of
/// PyTorch >= 1.6 and the legacy format before it. The pickle is interpreted by `PickleMachine`, which
/// calls nothing; storages stay in the file until a writer asks for them.
public enum TorchCheckpointReader {
    /// The keys under which training checkpoints keep the model's weights, most specific first.
    public static let stateDictKeys = ["state_dict", "model_state_dict", "model_state", "model", "module", "net", "network", "weights"]
    /// The file suffixes read as `torch.save` files.
    public static let suffixes = [".pth", ".pt", ".bin", ".ckpt", ".pth.tar"]
    /// The magic number the legacy format starts its first pickle with.
    static let legacyMagic: [UInt8] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]

    /// Whether `head` (the first bytes of a file) starts a legacy `torch.save` file: a protocol-2 pickle
    /// of the magic number.
    static func isLegacy(_ head: [UInt8]) -> Bool {
        head.count >= 14 && head[0] == 0x80 && head[2] == 0x8A && head[3] == 0x0A && Array(head[4..<14]) == legacyMagic
    }

    /// A storage as a persistent id names it.
    final class Storage: PickleExternal {
        let key: String
        let dtype: DType
        let elementCount: Int64
        init(key: String, dtype: DType, elementCount: Int64) {
            self.key = key
            self.dtype = dtype
            self.elementCount = elementCount
        }
    }

    /// A tensor as a rebuild call describes it: a view of a storage.
    final class TensorRef: PickleExternal {
        let storage: Storage
        let offset: Int64
        let shape: [Int]
        let strides: [Int]
        init(storage: Storage, offset: Int64, shape: [Int], strides: [Int]) {
            self.storage = storage
            self.offset = offset
            self.shape = shape
            self.strides = strides
        }
    }

    /// Reads `path`; `path#KEY` picks the entry `KEY` of a checkpoint that holds tensors in several places.
    public static func read(path: String, selecting key: String? = nil) throws -> TensorGraph {
        let file = try InputFile(path: path)
        let head = try file.read(count: Int(min(file.size, 16)), at: 0)
        var machine = PickleMachine()
        var storages: [String: Storage] = [:]
        machine.persistentLoad = { pid in
            let storage = try Self.storage(from: pid)
            if let known = storages[storage.key], known.dtype != storage.dtype {
                throw PickleError("storage '\(storage.key)' is named with two element types")
            }
            storages[storage.key] = storage
            return .external(storage)
        }
        machine.interpret = Self.interpret
        let root: PickleValue
        var found: [(String, TensorRef)] = []
        var notes: [String] = []
        var regions: [String: FileRegion] = [:]
        // Globals met in the header pickles of the legacy format, which are not called either.
        var headerGlobals: [PickleGlobal] = []
        // A zip's entries are accounted for once its pickle has been read and checked.
        var archive: (StoredZip, String)?
        do {
            if isLegacy(head) {
                var input = PickleFileInput(file: file, offset: 0)
                var header = PickleMachine()
                _ = try header.load(&input)  // magic number
                guard case .int(let version)? = try? header.load(&input), version == 1001 else {
                    throw PickleError("legacy format with an unknown protocol version")
                }
                let info = try header.load(&input)
                headerGlobals += header.unknownGlobals
                if case .dict(let dict) = info, let little = dict.entries.first(where: { $0.key.string == "little_endian" })?.value,
                    case .bool(false) = little
                {
                    throw PickleError("written on a big-endian machine")
                }
                root = try machine.load(&input)
                var keysMachine = PickleMachine()
                let keyList = try keysMachine.load(&input)
                headerGlobals += keysMachine.unknownGlobals
                guard let keys = keyList.elements?.map(\.keyText) else {
                    throw PickleError("the storage key list is not a list")
                }
                try Limits.current.checkTensorCount(keys.count, path: path)
                var at = input.position
                for key in keys {
                    guard let storage = storages[key] else { throw PickleError("storage '\(key)' is stored but no tensor names it") }
                    let countBytes = try file.read(count: 8, at: at)
                    guard countBytes.count == 8 else { throw PickleError("storage '\(key)' runs past the end of the file") }
                    let count = StoredZip.u64(countBytes, 0)
                    guard let bytes = storage.dtype.byteCount(elements: count), at + 8 <= file.size, bytes <= file.size - at - 8 else {
                        throw PickleError("storage '\(key)' runs past the end of the file")
                    }
                    regions[key] = FileRegion(file: file, offset: at + 8, length: bytes)
                    at += 8 + bytes
                }
            } else {
                let zip = try StoredZip(file: file)
                guard let pickle = zip.entries.first(where: { $0.name.hasSuffix("data.pkl") && $0.name.split(separator: "/").count == 2 }) else {
                    throw PickleError("no '<name>/data.pkl' entry: not a torch.save zip file")
                }
                let top = String(pickle.name.dropLast("data.pkl".count))
                if zip.entry(top + "constants.pkl") != nil || zip.entries.contains(where: { $0.name.hasPrefix(top + "code/") }) {
                    // TorchScript: the weights are attributes of scripted modules, whose code says which
                    // tensors are parameters; what torch.jit.load would give is not read here.
                    throw PickleError(
                        "a TorchScript archive (torch.jit.save), not a torch.save state dict; save its state dict with "
                            + "torch.save(torch.jit.load(FILE).state_dict(), 'state_dict.pth') and give wsurgery that file")
                }
                if let order = try zip.entry(top + "byteorder").map(zip.region), order.length < 16,
                    try file.read(count: Int(order.length), at: order.offset) == Array("big".utf8)
                {
                    throw PickleError("written on a big-endian machine")
                }
                let region = try zip.region(of: pickle)
                guard region.length <= 1 << 30 else { throw PickleError("data.pkl is larger than 1 GiB") }
                var input = PickleBytes(try file.read(count: Int(region.length), at: region.offset))
                root = try machine.load(&input)
                for key in storages.keys {
                    guard let entry = zip.entry(top + "data/" + key) else { throw PickleError("storage '\(key)' has no entry '\(top)data/\(key)'") }
                    regions[key] = try zip.region(of: entry)
                }
                archive = (zip, top)
            }
            (found, notes) = try stateDict(in: root, selecting: key, path: path)
            if let (zip, top) = archive { try accountForEveryEntry(of: zip, top: top, storages: storages) }
        } catch let error as PickleError {
            throw WSurgeryError.invalidPyTorch(path: path, reason: error.description)
        }
        try Limits.current.checkTensorCount(found.count, path: path)
        var tensors: [Tensor] = []
        var yielded: UInt64 = 0
        for (name, ref) in found {
            guard let region = regions[ref.storage.key] else {
                throw WSurgeryError.invalidPyTorch(path: path, reason: "tensor '\(name)': storage '\(ref.storage.key)' is missing")
            }
            let source = try Self.source(of: ref, in: region, name: name, path: path)
            // Views and shared storages can make a small file yield many bytes: the HDF5 expansion rule.
            yielded = yielded.addingReportingOverflow(source.byteCount).partialValue
            try Limits.current.checkExpansion(yielded: yielded, fileBytes: file.size, path: path)
            tensors.append(
                Tensor(
                    name: name, dtype: ref.storage.dtype, shape: ref.shape, layout: StateDictGrouping.layout(name: name, shape: ref.shape),
                    data: source))
        }
        var graph = TensorGraph(layers: StateDictGrouping.layers(from: tensors), sourceFormat: .pytorch, sourcePath: path, sourceFiles: [file])
        graph.readerNotes = notes
        var inert: [PickleGlobal] = []
        var listed = Set<PickleGlobal>()
        for global in headerGlobals + machine.unknownGlobals where listed.insert(global).inserted { inert.append(global) }
        if !inert.isEmpty {
            let shown = inert.prefix(50).map(\.description).joined(separator: ", ")
            graph.readerNotes.append(
                "not called (kept as inert placeholders): " + shown + (inert.count > 50 ? " and \(inert.count - 50) more" : ""))
        }
        try HuggingFaceFolder.attachConfig(beside: path, to: &graph)
        return graph
    }

    /// The entries a torch.save zip holds besides its storages: the pickle and the serialization
    /// records torch writes (and, under `.data/`, may add).
    static let metadataEntries: Set<String> = ["data.pkl", "version", ".format_version", "byteorder", ".storage_alignment"]

    /// Every entry of the zip is the pickle, a storage the pickle uses, or metadata torch writes; a
    /// storage no tensor uses, or an entry of another kind, is refused by name rather than dropped.
    static func accountForEveryEntry(of zip: StoredZip, top: String, storages: [String: Storage]) throws {
        for entry in zip.entries {
            guard entry.name.hasPrefix(top) else {
                throw PickleError(
                    "entry '\(entry.name)' lies outside the archive '\(top.dropLast())' that holds data.pkl; refusing rather than dropping it")
            }
            let local = entry.name.dropFirst(top.count)
            if metadataEntries.contains(String(local)) || local.hasPrefix(".data/") || (local.hasSuffix("/") && entry.size == 0) { continue }
            if local.hasPrefix("data/") {
                if storages[String(local.dropFirst("data/".count))] != nil { continue }
                throw PickleError(
                    "entry '\(entry.name)' (\(entry.size) bytes) is a storage no tensor of data.pkl uses (torch.load would drop it); refusing rather than dropping it"
                )
            }
            throw PickleError(
                "entry '\(entry.name)' is not part of a torch.save file (data.pkl, data/N, version, byteorder); refusing rather than dropping it")
        }
    }

    /// Reads `pytorch_model.bin` shards through their `pytorch_model.bin.index.json`.
    public static func readSharded(indexPath: String) throws -> TensorGraph {
        let index = try ShardIndex(path: indexPath)
        var tensors: [Tensor] = []
        var files = [index.file]
        var notes: [String] = []
        var seen = Set<String>()
        for shard in index.shards {
            let graph = try read(path: index.path(of: shard))
            files += graph.sourceFiles
            notes += graph.readerNotes.filter { !notes.contains($0) }
            for tensor in graph.tensors {
                try index.check(tensor: tensor.name, inShard: shard)
                if !seen.insert(tensor.name).inserted { throw WSurgeryError.duplicateTensor(path: index.path(of: shard), tensor: tensor.name) }
                tensors.append(tensor)
            }
        }
        try index.checkComplete(found: seen)
        var graph = TensorGraph(layers: StateDictGrouping.layers(from: tensors), sourceFormat: .pytorch, sourcePath: indexPath, sourceFiles: files)
        graph.readerNotes = notes
        try HuggingFaceFolder.attachConfig(beside: indexPath, to: &graph)
        return graph
    }

    /// The element type a storage class or dtype global names.
    static func dtype(of global: PickleGlobal) -> DType? {
        guard global.module == "torch" else { return nil }
        let name = global.name.hasSuffix("Storage") ? String(global.name.dropLast("Storage".count)) : global.name
        let table: [String: DType] = [
            "Float": .f32, "float32": .f32, "float": .f32, "Double": .f64, "float64": .f64, "double": .f64, "Half": .f16, "float16": .f16,
            "half": .f16, "BFloat16": .bf16, "bfloat16": .bf16, "Long": .i64, "int64": .i64, "long": .i64, "Int": .i32, "int32": .i32,
            "int": .i32, "Short": .i16, "int16": .i16, "short": .i16, "Char": .i8, "int8": .i8, "Byte": .u8, "uint8": .u8, "Bool": .bool,
            "bool": .bool, "ComplexFloat": .c64, "complex64": .c64, "Float8_e4m3fn": .f8e4m3, "float8_e4m3fn": .f8e4m3,
            "Float8_e5m2": .f8e5m2, "float8_e5m2": .f8e5m2, "UInt16": .u16, "uint16": .u16, "UInt32": .u32, "uint32": .u32,
            "UInt64": .u64, "uint64": .u64,
        ]
        return table[name]
    }

    /// `('storage', storage class, key, location, numel[, view])`.
    static func storage(from pid: PickleValue) throws -> Storage {
        guard let items = pid.elements, items.count >= 5, items[0].string == "storage" else {
            throw PickleError("a persistent id that is not a storage")
        }
        guard case .global(let type) = items[1], let dtype = dtype(of: type) else {
            throw PickleError("a storage of an unsupported element type")
        }
        guard items.count == 5 || { if case .none = items[5] { return true } else { return false } }() else {
            throw PickleError("a legacy storage view (torch < 0.4), which is not supported")
        }
        guard let count = items[4].int, count >= 0 else { throw PickleError("a storage with an invalid size") }
        return Storage(key: items[2].keyText, dtype: dtype, elementCount: count)
    }

    /// The calls a state dict is made of, as data.
    static func interpret(_ global: PickleGlobal, _ args: [PickleValue]) throws -> PickleValue? {
        switch (global.module, global.name) {
        case ("collections", "OrderedDict"), ("builtins", "dict"):
            let dict = PickleDict()
            if let pairs = args.first?.elements {
                for pair in pairs {
                    guard let kv = pair.elements, kv.count == 2 else { throw PickleError("an OrderedDict item that is not a pair") }
                    dict.entries.append((kv[0], kv[1]))
                }
            }
            return .dict(dict)
        case ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v3"):
            guard args.count >= 4, case .external(let external) = args[0], let storage = external as? Storage,
                let offset = args[1].int, let size = args[2].elements?.map(\.int), let stride = args[3].elements?.map(\.int),
                offset >= 0, size.allSatisfy({ ($0 ?? -1) >= 0 }), stride.allSatisfy({ $0 != nil }), size.count == stride.count
            else { throw PickleError("\(global) with arguments that do not describe a tensor") }
            return .external(TensorRef(storage: storage, offset: offset, shape: size.map { Int($0!) }, strides: stride.map { Int($0!) }))
        case ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"), ("torch.nn.parameter", "Parameter"):
            guard let tensor = args.first, case .external(let t) = tensor, t is TensorRef else {
                throw PickleError("\(global) of something that is not a tensor")
            }
            return tensor
        case ("torch._tensor", "_rebuild_from_type_v2"):
            // (function, type, args, state): `function(*args)` rebuilds the tensor, its type is a
            // subclass. A rebuild of a rebuild is unwrapped in a loop, a few levels at most.
            var (function, inner) = (PickleGlobal?.none, [PickleValue]())
            var outer = args
            for _ in 0..<8 {
                guard outer.count >= 3, case .global(let next) = outer[0], let nextArgs = outer[2].elements else {
                    throw PickleError("\(global) with arguments that do not describe a tensor")
                }
                (function, inner) = (next, nextArgs)
                guard next == global else { break }
                outer = nextArgs
            }
            guard let function, function != global, let value = try interpret(function, inner) else {
                throw PickleError("\(global) with arguments that do not describe a tensor")
            }
            return value
        case ("torch", "Size"):
            return args.first ?? .tuple(of: [])
        case ("_codecs", "encode"):
            // Protocol 2 pickles bytes as _codecs.encode(text, 'latin1').
            guard let text = args.first?.string else { return .bytes([]) }
            return .bytes(text.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) })
        case ("torch", _) where global.name.hasSuffix("Storage") || dtype(of: global) != nil:
            return .global(global)
        case ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "list"), ("builtins", "tuple"):
            return .list(PickleList(args.first?.elements ?? []))
        default:
            return nil
        }
    }

    /// The state dict in `root`: the tensors of the top-level dictionary, or of the entry a training
    /// checkpoint keeps its weights under. Returns the tensors by name and notes for the report.
    static func stateDict(in root: PickleValue, selecting key: String?, path: String) throws -> ([(String, TensorRef)], [String]) {
        func tensors(of value: PickleValue) -> [(String, TensorRef)] {
            guard case .dict(let dict) = value else { return [] }
            return dict.entries.compactMap { entry in
                guard case .external(let e) = entry.value, let ref = e as? TensorRef else { return nil }
                return (entry.key.keyText, ref)
            }
        }
        func entries(of value: PickleValue) -> [(key: String, value: PickleValue)] {
            guard case .dict(let dict) = value else { return [] }
            return dict.entries.map { ($0.key.keyText, $0.value) }
        }
        /// The keys of `entries` under which tensors are held, at any depth.
        func holders(_ entries: [(key: String, value: PickleValue)]) throws -> [String] {
            let holds = try PickleValue.reach(from: entries.map(\.value)) { value in
                if case .external(let e) = value, e is TensorRef { return true }
                return false
            }
            return zip(entries, holds).filter { $0.1 }.map(\.0.key)
        }
        // The top-level entries, when the checkpoint is a dictionary.
        let top = entries(of: root)
        func value(_ key: String) -> PickleValue? { top.first { $0.key == key }?.value }
        /// The value at `key`: a top-level key, or a path of keys joined by '.' (`model.state_dict`).
        func value(atPath key: String) -> PickleValue? {
            if let found = value(key) { return found }
            var current: PickleValue? = root
            for part in key.split(separator: ".", omittingEmptySubsequences: false) {
                current = current.flatMap { entries(of: $0).first { $0.key == part }?.value }
            }
            return current
        }
        var notes: [String] = []
        // The nesting limit holds for the whole value, not only where tensors are searched for: one walk,
        // each container once.
        try root.walk { _ in true }
        var chosen = tensors(of: root)
        if key == nil, !chosen.isEmpty {
            // A state dict at the top: a value that is not a tensor but holds some (a nested dict) would be dropped.
            let others = top.filter { entry in
                if case .external(let e) = entry.value, e is TensorRef { return false }
                return true
            }
            let holds = try PickleValue.reach(from: others.map(\.value)) { value in
                if case .external(let e) = value, e is TensorRef { return true }
                return false
            }
            if let nested = zip(others, holds).first(where: { $0.1 })?.0.key {
                throw WSurgeryError.invalidPyTorch(
                    path: path,
                    reason:
                        "the state dict's key '\(nested)' is not a tensor but holds tensors (a nested container), which a state dict cannot carry; refusing rather than dropping them (save a flat state dict, or pick it with \(path)#\(nested))"
                )
            }
        }
        if let key {
            guard let entry = value(atPath: key) else {
                throw WSurgeryError.invalidPyTorch(
                    path: path,
                    reason:
                        "no top-level key '\(key)'\(key.contains(".") ? " and no such path of keys" : ""); keys: \(top.map(\.key).joined(separator: ", "))"
                )
            }
            chosen = tensors(of: entry)
            guard !chosen.isEmpty else {
                let inner = try holders(entries(of: entry))
                throw WSurgeryError.invalidPyTorch(
                    path: path,
                    reason: inner.isEmpty
                        ? "key '\(key)' holds no tensors"
                        : "key '\(key)' holds no tensors itself; its entries holding tensors: \(inner.joined(separator: ", ")) (pick one as \(path)#\(key).\(inner[0]))"
                )
            }
            notes.append("the weights are the entry '\(key)' of the checkpoint")
        } else if chosen.isEmpty {
            let holders = try holders(top)
            // A known key holding the tensors, or a known key inside a known key (`{'model': {'state_dict': ...}}`).
            var known: String?
            if let direct = stateDictKeys.first(where: { holders.contains($0) && !tensors(of: value($0)!).isEmpty }) {
                known = direct
            } else {
                for outer in stateDictKeys where holders.contains(outer) {
                    if let inner = stateDictKeys.first(where: { value(atPath: outer + "." + $0).map { !tensors(of: $0).isEmpty } ?? false }) {
                        known = outer + "." + inner
                        break
                    }
                }
            }
            if let known, let entry = value(atPath: known) {
                chosen = tensors(of: entry)
                let others = holders.filter { $0 != known && !known.hasPrefix($0 + ".") }
                notes.append(
                    "the weights are the entry '\(known)' of the checkpoint"
                        + (others.isEmpty ? "" : " (also holding tensors: \(others.joined(separator: ", ")); pick one with \(path)#KEY)"))
            } else if holders.isEmpty {
                var modules: [String] = []
                try root.walk { value in
                    if case .object(let o) = value, o.global.module.hasPrefix("torch.nn") || o.global.name.hasSuffix("Module") {
                        modules.append(o.global.description)
                    }
                    return modules.isEmpty
                }
                let reason =
                    modules.isEmpty
                    ? "it holds no tensors"
                    : "it holds a pickled module (\(modules[0])), not a state dict; save model.state_dict() instead"
                throw WSurgeryError.invalidPyTorch(path: path, reason: reason)
            } else {
                throw WSurgeryError.ambiguousStateDict(path: path, candidates: holders)
            }
        }
        // DataParallel / DistributedDataParallel prefix every key with 'module.'.
        if chosen.count > 0, chosen.allSatisfy({ $0.0.hasPrefix("module.") }) {
            chosen = chosen.map { (String($0.0.dropFirst("module.".count)), $0.1) }
            notes.append("the 'module.' prefix of every key (DataParallel) was removed")
        }
        var seen = Set<String>()
        for (name, _) in chosen where !seen.insert(name).inserted { throw WSurgeryError.duplicateTensor(path: path, tensor: name) }
        return (chosen, notes)
    }

    /// The bytes of a tensor: its storage region when the view is contiguous, else its elements gathered.
    static func source(of ref: TensorRef, in region: FileRegion, name: String, path: String) throws -> any TensorSource {
        guard let size = ref.storage.dtype.bitsPerElement.map({ $0 / 8 }), size > 0 else {
            throw WSurgeryError.invalidPyTorch(path: path, reason: "tensor '\(name)': unsupported element type")
        }
        func fail(_ reason: String) -> WSurgeryError { .invalidPyTorch(path: path, reason: "tensor '\(name)': " + reason) }
        let count = try Checked.elementCount(ref.shape, or: fail)
        guard let storageBytes = Checked.multiply(Int(ref.storage.elementCount), size), region.length == UInt64(storageBytes) else {
            throw fail("its storage holds \(region.length) bytes, not \(ref.storage.elementCount) elements")
        }
        guard Checked.multiply(count, size) != nil else { throw fail("the shape \(ref.shape) has more than 2^60 bytes") }
        if count == 0 { return MemorySource(bytes: []) }
        // The last element the view reaches.
        var last = Int(ref.offset)
        for (n, s) in zip(ref.shape, ref.strides) {
            guard s >= 0 else { throw fail("a negative stride") }
            guard let reach = Checked.multiply(n - 1, s), let next = Checked.add(last, reach) else { throw fail("the view reaches past its storage") }
            last = next
        }
        guard last < ref.storage.elementCount else { throw fail("the view reaches past its storage") }
        var contiguous = true
        var expected = 1
        for (n, s) in zip(ref.shape, ref.strides).reversed() where n != 1 {
            if s != expected { contiguous = false }
            expected *= n
        }
        if contiguous {
            return FileRegionSource(
                region: FileRegion(file: region.file, offset: region.offset + UInt64(ref.offset) * UInt64(size), length: UInt64(count * size)))
        }
        return StridedSource(region: region, elementSize: size, offset: Int(ref.offset), shape: ref.shape, strides: ref.strides, last: last)
    }
}

/// A non-contiguous view of a storage (a transposed tensor saved as such, a stride-0 broadcast): its
/// elements gathered in C order from the part of the storage it spans, a chunk at a time. The span is
/// read whole when it is at most 256 MiB, else in 4 MiB blocks as the walk reaches them, so memory
/// stays bounded whatever the view's shape.
struct StridedSource: TensorSource {
    let region: FileRegion
    let elementSize: Int
    let offset: Int
    let shape: [Int]
    let strides: [Int]
    let last: Int

    var byteCount: UInt64 { UInt64(shape.reduce(1, *) * elementSize) }
    var fileRegion: FileRegion? { nil }

    func forEachChunk(maxChunk: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let total = shape.reduce(1, *)
        guard total > 0 else { return }
        let spanBytes = (last - offset + 1) * elementSize
        let blockBytes = spanBytes <= 256 << 20 ? spanBytes : 4 << 20
        var block: [UInt8] = []
        var blockStart = 0
        let chunkBytes = max(1, maxChunk / elementSize) * elementSize
        var out: [UInt8] = []
        out.reserveCapacity(min(total * elementSize, chunkBytes))
        var index = [Int](repeating: 0, count: shape.count)
        var at = 0
        for _ in 0..<total {
            let byte = at * elementSize
            if block.isEmpty || byte < blockStart || byte + elementSize > blockStart + block.count {
                blockStart = byte / blockBytes * blockBytes
                let count = min(blockBytes, spanBytes - blockStart)
                block = try region.file.read(count: count, at: region.offset + UInt64(offset * elementSize + blockStart))
                guard block.count == count else {
                    throw WSurgeryError.truncatedFile(
                        path: region.file.path, expectedBytes: region.offset + UInt64(offset * elementSize + blockStart + count),
                        actualBytes: region.file.size)
                }
            }
            out.append(contentsOf: block[(byte - blockStart)..<(byte - blockStart + elementSize)])
            if out.count >= chunkBytes {
                try out.withUnsafeBytes(body)
                out.removeAll(keepingCapacity: true)
            }
            var d = shape.count - 1
            while d >= 0 {
                index[d] += 1
                at += strides[d]
                if index[d] < shape[d] { break }
                at -= strides[d] * shape[d]
                index[d] = 0
                d -= 1
            }
        }
        if !out.isEmpty { try out.withUnsafeBytes(body) }
    }
}
