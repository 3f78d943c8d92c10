import CHDF5
import Foundation

/// What the reader learns about a dataset before trusting it.
struct HDF5DatasetInfo {
    var dtype: DType
    var shape: [Int]
    /// The `dtype` attribute Keras 3 puts on datasets whose type HDF5 cannot name (bfloat16).
    var dtypeAttribute: String?
    /// Where the raw bytes lie in the file when the dataset is contiguous, unfiltered, allocated and
    /// already little-endian.
    var contiguousOffset: UInt64?
    /// How many attributes the dataset carries.
    var attributeCount: Int
    /// The bytes its data takes in the file (0 when never written), to bound what it decodes to.
    var storedBytes: UInt64
    /// Whether libhdf5 applies filters (compression) to it.
    var filtered: Bool
}

extension HDF5File {
    /// Inspects a dataset: element type, shape, storage. Refuses external and virtual storage.
    func datasetInfo(_ datasetPath: String) throws -> HDF5DatasetInfo {
        try HDF5Lock.run {
            guard try objectType(datasetPath) == .dataset else {
                throw WSurgeryError.unknownHDF5Layout(path: path, reason: "'\(datasetPath)' is not a dataset")
            }
            let check = check(datasetPath)
            let dataset = try check.handle(H5Dopen2(id, datasetPath, wsh5_P_DEFAULT()), H5Dclose, "open the dataset")
            let dcpl = try check.handle(H5Dget_create_plist(dataset.id), H5Pclose, "read the dataset's properties")
            let layout = H5Pget_layout(dcpl.id)
            try check.status(layout.rawValue, "read the dataset's layout")
            if layout == H5D_VIRTUAL { throw WSurgeryError.externalStorage(path: path, dataset: datasetPath, kind: "virtual dataset") }
            if try check.status(H5Pget_external_count(dcpl.id), "read the dataset's storage") > 0 {
                throw WSurgeryError.externalStorage(path: path, dataset: datasetPath, kind: "external raw-data file")
            }
            let space = try check.handle(H5Dget_space(dataset.id), H5Sclose, "read the dataset's shape")
            let rank = H5Sget_simple_extent_ndims(space.id)
            if rank < 0 { throw WSurgeryError.unknownHDF5Layout(path: path, reason: "dataset '\(datasetPath)' has no simple dataspace") }
            var dims = [hsize_t](repeating: 0, count: Int(rank))
            if rank > 0 { try check.status(H5Sget_simple_extent_dims(space.id, &dims, nil), "read the dataset's shape") }
            let hasDType = try check.status(H5Aexists(dataset.id, "dtype"), "look up the dtype attribute") > 0
            let dtypeAttribute = hasDType ? try stringAttribute(datasetPath, "dtype") : nil
            let ftype = try check.handle(H5Dget_type(dataset.id), H5Tclose, "read the dataset's type")
            let (dtype, littleEndianAsStored) = try HDF5Types.dtype(of: ftype.id, dtypeAttribute: dtypeAttribute, check: check)
            var offset: UInt64?
            let filtered = try check.status(H5Pget_nfilters(dcpl.id), "read the dataset's filters") > 0
            if layout == H5D_CONTIGUOUS, !filtered, littleEndianAsStored {
                let address = H5Dget_offset(dataset.id)
                if address != wsh5_HADDR_UNDEF() { offset = UInt64(address) }
            }
            let attributes = Int(try check.status(wsh5_attribute_count(dataset.id), "count the dataset's attributes"))
            guard dims.allSatisfy({ $0 <= hsize_t(Checked.maxCount) }) else {
                throw WSurgeryError.unknownHDF5Layout(path: path, reason: "dataset '\(datasetPath)' has a dimension over 2^60")
            }
            return HDF5DatasetInfo(
                dtype: dtype, shape: dims.map { Int($0) }, dtypeAttribute: dtypeAttribute, contiguousOffset: offset, attributeCount: attributes,
                storedBytes: UInt64(H5Dget_storage_size(dataset.id)), filtered: filtered)
        }
    }

    /// Creates a contiguous dataset whose file space is allocated at once and never filled by libhdf5, and
    /// queues `source` to be written at its file offset by `writeQueuedData()`: libhdf5 writes only the
    /// metadata, the bytes go file-to-file in the kernel when they lie in an input file. An empty dataset
    /// has no space and nothing to write. No modification times go into the object header: the same input
    /// and options give the same bytes.
    func createDataset(_ datasetPath: String, dtype: DType, shape: [Int], placing source: any TensorSource, tensorName: String) throws {
        try HDF5Lock.run {
            let check = check(datasetPath)
            let ftype = try HDF5Types.fileType(for: dtype, tensor: tensorName, check: check)
            var dims = shape.map { hsize_t($0) }
            let space = try check.handle(
                shape.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(shape.count), &dims, nil), H5Sclose, "make the dataset's shape")
            let lcpl = try check.handle(H5Pcreate(wsh5_P_LINK_CREATE()), H5Pclose, "make link properties")
            try check.status(H5Pset_create_intermediate_group(lcpl.id, 1), "make link properties")
            let dcpl = try check.handle(H5Pcreate(wsh5_P_DATASET_CREATE()), H5Pclose, "make dataset properties")
            try check.status(H5Pset_obj_track_times(dcpl.id, false), "make dataset properties")
            try check.status(H5Pset_layout(dcpl.id, H5D_CONTIGUOUS), "make dataset properties")
            try check.status(H5Pset_alloc_time(dcpl.id, H5D_ALLOC_TIME_EARLY), "make dataset properties")
            try check.status(H5Pset_fill_time(dcpl.id, H5D_FILL_TIME_NEVER), "make dataset properties")
            let dataset = try check.handle(
                H5Dcreate2(id, datasetPath, ftype.id, space.id, lcpl.id, dcpl.id, wsh5_P_DEFAULT()), H5Dclose, "create the dataset")
            if let attribute = HDF5Types.dtypeAttribute(for: dtype) {
                try writeStrings(datasetPath, "dtype", [attribute], scalar: true)
            }
            if source.byteCount == 0 { return }
            let address = H5Dget_offset(dataset.id)
            if address == wsh5_HADDR_UNDEF() {
                throw WSurgeryError.hdf5(path: path, object: datasetPath, operation: "allocate space for")
            }
            queued.append(QueuedData(offset: UInt64(address), source: source))
        }
    }

    /// Writes the bytes queued by `createDataset(_:dtype:shape:placing:tensorName:)` at their offsets,
    /// through a descriptor of its own (libhdf5 never reads or writes those ranges).
    func writeQueuedData() throws {
        guard !queued.isEmpty else { return }
        for item in queued {
            try place(item.source, at: item.offset)
            WriteProgress.advance(item.source.byteCount)
        }
        queued.removeAll()
    }

    /// Copies a dataset from another HDF5 file without decoding it (keeps chunking, compression, attributes).
    func copyDataset(from source: HDF5File, _ sourcePath: String, to datasetPath: String, dtype: DType) throws {
        try HDF5Lock.run {
            let check = check(datasetPath)
            let lcpl = try check.handle(H5Pcreate(wsh5_P_LINK_CREATE()), H5Pclose, "make link properties")
            try check.status(H5Pset_create_intermediate_group(lcpl.id, 1), "make link properties")
            let copied = ProcessGuard.parsing(source.path) { H5Ocopy(source.id, sourcePath, id, datasetPath, wsh5_P_DEFAULT(), lcpl.id) }
            if copied < 0 {
                throw WSurgeryError.hdf5(path: path, object: datasetPath, operation: "copy '\(sourcePath)' from \(source.path) into")
            }
            // A legacy file may hold bfloat16 as a bare opaque type; name it so Keras 3 and this tool agree.
            if let attribute = HDF5Types.dtypeAttribute(for: dtype), try !hasAttribute(datasetPath, "dtype") {
                try writeStrings(datasetPath, "dtype", [attribute], scalar: true)
            }
        }
    }
}

/// A tensor stored as an HDF5 dataset that is chunked, compressed or not little-endian: read through
/// libhdf5 in blocks of rows, converted to little-endian bytes of the same type.
struct HDF5DatasetSource: TensorSource {
    let file: HDF5File
    let datasetPath: String
    let dtype: DType
    let shape: [Int]
    let byteCount: UInt64
    var fileRegion: FileRegion? { nil }

    func forEachChunk(maxChunk: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        try ProcessGuard.parsing(file.path) { try readChunks(maxChunk: maxChunk, body) }
    }

    private func readChunks(maxChunk: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        try HDF5Lock.run {
            let path = file.path
            let check = file.check(datasetPath)
            let dataset = try check.handle(H5Dopen2(file.id, datasetPath, wsh5_P_DEFAULT()), H5Dclose, "open the dataset")
            let ftype = try check.handle(H5Dget_type(dataset.id), H5Tclose, "read the dataset's type")
            let mtype = try HDF5Types.memoryType(forFileType: ftype.id, check: check)
            let total = Int(byteCount)
            if total == 0 { return }
            if shape.isEmpty || shape[0] == 0 {
                var buffer = [UInt8](repeating: 0, count: total)
                if H5Dread(dataset.id, mtype.id, wsh5_S_ALL(), wsh5_S_ALL(), wsh5_P_DEFAULT(), &buffer) < 0 {
                    throw WSurgeryError.damagedHDF5(path: path, object: datasetPath, operation: "read")
                }
                try buffer.withUnsafeBytes { try body($0) }
                return
            }
            let space = try check.handle(H5Dget_space(dataset.id), H5Sclose, "read the dataset's shape")
            let rowBytes = total / shape[0]
            let rowsPerBlock = max(1, maxChunk / max(rowBytes, 1))
            var buffer = [UInt8](repeating: 0, count: min(rowsPerBlock, shape[0]) * rowBytes)
            var row = 0
            while row < shape[0] {
                let rows = min(rowsPerBlock, shape[0] - row)
                var start = [hsize_t](repeating: 0, count: shape.count)
                start[0] = hsize_t(row)
                var count = shape.map { hsize_t($0) }
                count[0] = hsize_t(rows)
                try check.status(H5Sselect_hyperslab(space.id, H5S_SELECT_SET, &start, nil, &count, nil), "select rows to read")
                let memory = try check.handle(H5Screate_simple(Int32(shape.count), &count, nil), H5Sclose, "make a block's shape")
                let status = buffer.withUnsafeMutableBytes { H5Dread(dataset.id, mtype.id, memory.id, space.id, wsh5_P_DEFAULT(), $0.baseAddress) }
                if status < 0 { throw WSurgeryError.damagedHDF5(path: path, object: datasetPath, operation: "read") }
                try buffer.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[0..<(rows * rowBytes)])) }
                row += rows
            }
        }
    }
}

/// The mapping between tensor dtypes and HDF5 types, following what h5py and Keras write.
enum HDF5Types {
    /// The dtype of a file type. Returns whether the stored bytes are already the little-endian bytes
    /// this tool uses (so a contiguous dataset can be copied as a file region).
    static func dtype(of type: hid_t, dtypeAttribute: String?, check: HDF5Check) throws -> (DType, Bool) {
        func unsupported(_ reason: String) -> WSurgeryError { .unsupportedHDF5Type(path: check.path, dataset: check.object, reason: reason) }
        let size = try check.size(H5Tget_size(type), "read the type's size")
        let typeClass = H5Tget_class(type)
        try check.status(typeClass.rawValue, "read the type's class")
        // Byte order is meaningless (and reported as an error or NONE) for some classes; only numbers use it.
        let littleEndian = H5Tget_order(type) == H5T_ORDER_LE
        switch typeClass {
        case H5T_INTEGER:
            let sign = H5Tget_sign(type)
            try check.status(sign.rawValue, "read the integer type's sign")
            let signed = sign == H5T_SGN_2
            let dtype: DType
            switch (size, signed) {
            case (1, true): dtype = .i8
            case (1, false): dtype = .u8
            case (2, true): dtype = .i16
            case (2, false): dtype = .u16
            case (4, true): dtype = .i32
            case (4, false): dtype = .u32
            case (8, true): dtype = .i64
            case (8, false): dtype = .u64
            default: throw unsupported("\(size)-byte integer")
            }
            return (dtype, littleEndian || size == 1)
        case H5T_FLOAT:
            var spos = 0
            var epos = 0
            var esize = 0
            var mpos = 0
            var msize = 0
            try check.status(H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize), "read the float type's fields")
            switch (size, esize, msize) {
            case (4, 8, 23): return (.f32, littleEndian)
            case (8, 11, 52): return (.f64, littleEndian)
            case (2, 5, 10): return (.f16, littleEndian)
            case (2, 8, 7): return (.bf16, littleEndian)
            default: throw unsupported("\(size)-byte float with \(esize) exponent and \(msize) mantissa bits")
            }
        case H5T_ENUM:
            // h5py stores numpy bool as an int8 enum {FALSE: 0, TRUE: 1}.
            if size == 1, try check.status(H5Tget_nmembers(type), "read the enumeration") == 2 { return (.bool, true) }
            throw unsupported("enumeration")
        case H5T_OPAQUE:
            if let attribute = dtypeAttribute, let known = DType(numpyName: attribute), known.bitsPerElement == size * 8 {
                return (known, true)
            }
            var tag = ""
            if let pointer = H5Tget_tag(type) {
                tag = String(cString: pointer)
                H5free_memory(pointer)
            }
            return (.opaque(name: tag.isEmpty ? "V\(size)" : tag, bytesPerElement: size), true)
        case H5T_COMPOUND:
            // h5py's complex64: {r: float32, i: float32}.
            if size == 8, try check.status(H5Tget_nmembers(type), "read the compound type") == 2 {
                let r = try check.handle(H5Tget_member_type(type, 0), H5Tclose, "read the compound type")
                if H5Tget_class(r.id) == H5T_FLOAT, H5Tget_size(r.id) == 4 {
                    return (.c64, H5Tget_order(r.id) == H5T_ORDER_LE)
                }
            }
            throw unsupported("compound type")
        case H5T_STRING: throw unsupported("string data")
        default: throw unsupported("type class \(typeClass.rawValue)")
        }
    }

    /// The in-memory type used to read a dataset: the file type with little-endian byte order.
    static func memoryType(forFileType type: hid_t, check: HDF5Check) throws -> H5ID {
        let typeClass = H5Tget_class(type)
        try check.status(typeClass.rawValue, "read the type's class")
        if typeClass == H5T_COMPOUND {
            let c = try check.handle(H5Tcreate(H5T_COMPOUND, 8), H5Tclose, "make a complex type")
            try check.status(H5Tinsert(c.id, "r", 0, wsh5_T_IEEE_F32LE()), "make a complex type")
            try check.status(H5Tinsert(c.id, "i", 4, wsh5_T_IEEE_F32LE()), "make a complex type")
            return c
        }
        let copy = try check.handle(H5Tcopy(type), H5Tclose, "copy the type")
        if typeClass == H5T_INTEGER || typeClass == H5T_FLOAT { try check.status(H5Tset_order(copy.id, H5T_ORDER_LE), "make a little-endian type") }
        return copy
    }

    /// The `dtype` attribute written for types HDF5 has no name for (Keras 3 does this for bfloat16).
    static func dtypeAttribute(for dtype: DType) -> String? {
        switch dtype {
        case .bf16, .f8e4m3, .f8e5m2, .f8e8m0, .f8e4m3fnuz, .f8e5m2fnuz: return dtype.numpyName
        default: return nil
        }
    }

    /// The file type h5py would create for `dtype`.
    static func fileType(for dtype: DType, tensor: String, check: HDF5Check) throws -> H5ID {
        func copy(_ t: hid_t) throws -> H5ID { try check.handle(H5Tcopy(t), H5Tclose, "make the type for \(dtype.numpyName)") }
        func set(_ status: herr_t) throws { try check.status(status, "make the type for \(dtype.numpyName)") }
        switch dtype {
        case .f32: return try copy(wsh5_T_IEEE_F32LE())
        case .f64: return try copy(wsh5_T_IEEE_F64LE())
        case .i8: return try copy(wsh5_T_STD_I8LE())
        case .i16: return try copy(wsh5_T_STD_I16LE())
        case .i32: return try copy(wsh5_T_STD_I32LE())
        case .i64: return try copy(wsh5_T_STD_I64LE())
        case .u8: return try copy(wsh5_T_STD_U8LE())
        case .u16: return try copy(wsh5_T_STD_U16LE())
        case .u32: return try copy(wsh5_T_STD_U32LE())
        case .u64: return try copy(wsh5_T_STD_U64LE())
        case .f16:
            // h5py's IEEE half: a 32-bit float type narrowed to 1/5/10 bits with bias 15.
            let t = try copy(wsh5_T_IEEE_F32LE())
            try set(H5Tset_fields(t.id, 15, 10, 5, 0, 10))
            try set(H5Tset_size(t.id, 2))
            try set(H5Tset_ebias(t.id, 15))
            return t
        case .bool:
            let t = try check.handle(H5Tenum_create(wsh5_T_NATIVE_INT8()), H5Tclose, "make the type for bool")
            var no: Int8 = 0
            var yes: Int8 = 1
            try set(H5Tenum_insert(t.id, "FALSE", &no))
            try set(H5Tenum_insert(t.id, "TRUE", &yes))
            return t
        case .c64:
            let t = try check.handle(H5Tcreate(H5T_COMPOUND, 8), H5Tclose, "make the type for complex64")
            try set(H5Tinsert(t.id, "r", 0, wsh5_T_IEEE_F32LE()))
            try set(H5Tinsert(t.id, "i", 4, wsh5_T_IEEE_F32LE()))
            return t
        case .bf16, .f8e4m3, .f8e5m2, .f8e8m0, .f8e4m3fnuz, .f8e5m2fnuz:
            return try check.handle(H5Tcreate(H5T_OPAQUE, dtype.bitsPerElement! / 8), H5Tclose, "make the type for \(dtype.numpyName)")
        case .opaque(let name, let bytes?):
            let t = try check.handle(H5Tcreate(H5T_OPAQUE, bytes), H5Tclose, "make the type for \(name)")
            if name != "V\(bytes)" { try set(H5Tset_tag(t.id, name)) }
            return t
        case .opaque(let name, nil):
            throw WSurgeryError.cannotExpress(
                format: "HDF5", tensor: tensor, reason: "dtype '\(name)' is unknown to this tool, so its element size is unknown")
        case .f6e2m3, .f6e3m2, .f4:
            throw WSurgeryError.cannotExpress(
                format: "HDF5", tensor: tensor,
                reason: "\(dtype.safetensorsName) packs elements into fractions of a byte, which HDF5 datasets cannot hold")
        }
    }
}
