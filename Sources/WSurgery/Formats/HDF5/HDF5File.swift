import CHDF5
import CHDF5Descriptor
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// libhdf5 holds one global lock and is not safe to call from several threads at once in every build:
/// every call goes through this one lock. Its automatic error printing is switched off on each entry,
/// because thread-safe builds (Debian's) keep that setting per thread.
enum HDF5Lock {
    static let lock = NSRecursiveLock()

    static func run<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        _ = wsh5_init()
        return try body()
    }
}

/// An HDF5 identifier closed with the matching close function when it goes out of scope.
final class H5ID {
    let id: hid_t
    private let closer: (hid_t) -> herr_t
    init(_ id: hid_t, _ closer: @escaping (hid_t) -> herr_t) {
        self.id = id
        self.closer = closer
    }
    deinit { HDF5Lock.run { _ = closer(id) } }
}

/// Checks libhdf5's return codes for one object: every status, identifier and count a call returns goes
/// through it, so a failure becomes an error naming the file, the object and what failed.
struct HDF5Check {
    let path: String
    let object: String
    /// Whether the file is being written: a failure is then an I/O error (74), else the input is
    /// damaged (65).
    var writing = false

    /// The error for a failed `operation`.
    func failure(_ operation: String) -> WSurgeryError {
        writing ? .hdf5(path: path, object: object, operation: operation) : .damagedHDF5(path: path, object: object, operation: operation)
    }

    /// A status (`herr_t`), or a tri-state (`htri_t`) whose negative values are errors.
    @discardableResult
    func status<T: SignedInteger>(_ value: T, _ operation: String) throws -> T {
        if value < 0 {
            // The descriptor driver leaves errno set when the disk is full.
            if writing, [ENOSPC, EDQUOT, EFBIG].contains(errno) {
                throw WSurgeryError.io(path: path, operation: "\(operation) '\(object)'", reason: Errno.current.message)
            }
            throw failure(operation)
        }
        return value
    }

    /// An identifier, closed with `closer` when released.
    func handle(_ id: hid_t, _ closer: @escaping (hid_t) -> herr_t, _ operation: String) throws -> H5ID {
        try status(id, operation)
        return H5ID(id, closer)
    }

    /// A size that libhdf5 reports as 0 on failure.
    func size(_ value: Int, _ operation: String) throws -> Int {
        if value == 0 { throw failure(operation) }
        return value
    }
}

/// The kind of an HDF5 object at a path.
enum HDF5ObjectType {
    case group, dataset, other
}

/// Bytes to be written at a dataset's offset in the file.
struct QueuedData {
    let offset: UInt64
    let source: any TensorSource
}

/// An open HDF5 file. Failures become `WSurgeryError`s that name the file and the object involved;
/// soft and external links are refused wherever the file is walked.
final class HDF5File: @unchecked Sendable {
    /// The name used in errors.
    let path: String
    let id: hid_t
    /// For a file being written: a descriptor of its own, for the bytes placed after the layout and for
    /// reopening it.
    private let descriptor: Int32?
    private var closed = false
    /// Dataset bytes waiting to be written at their file offsets (see `createDataset(_:dtype:shape:placing:tensorName:)`).
    var queued: [QueuedData] = []

    private init(path: String, id: hid_t, descriptor: Int32? = nil) {
        self.path = path
        self.id = id
        self.descriptor = descriptor
    }

    deinit {
        if !closed { HDF5Lock.run { _ = H5Fclose(id) } }
        if let descriptor { Glibc.close(descriptor) }
    }

    /// Closes the file, reporting a failure to write its metadata (a full disk).
    func close() throws {
        guard !closed else { return }
        closed = true
        try HDF5Lock.run {
            if H5Fclose(id) < 0 { throw WSurgeryError.io(path: path, operation: "write the HDF5 metadata", reason: "HDF5 error (disk full?)") }
        }
    }

    /// The checker for calls about `object` in this file.
    func check(_ object: String) -> HDF5Check { HDF5Check(path: path, object: object, writing: descriptor != nil) }

    /// The file-access list of the descriptor driver for `fd` (libhdf5 works on the descriptor, never
    /// on a name: unnamed files work, and the file checked is the file read).
    private static func accessList(_ fd: Int32, _ name: String) throws -> H5ID {
        let fapl = wsfd_access_list(fd)
        if fapl < 0 { throw WSurgeryError.io(path: name, operation: "set up the HDF5 file driver", reason: "HDF5 error") }
        return H5ID(fapl, H5Pclose)
    }

    /// Whether `file` carries the HDF5 signature where libhdf5 looks for it (offset 0, 512, 1024, ...).
    static func hasSignature(_ file: InputFile) -> Bool {
        let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]
        var offset: UInt64 = 0
        while offset + 8 <= file.size {
            if (try? file.read(count: 8, at: offset)) == signature { return true }
            offset = offset == 0 ? 512 : offset * 2
        }
        return false
    }

    /// Opens `file` read-only, named `name` in errors, after the probe read it whole in a child process;
    /// `probing: false` only for a file this process has just written (an output read back).
    static func open(_ file: InputFile, name: String? = nil, probing: Bool = true) throws -> HDF5File {
        let name = name ?? file.path
        guard hasSignature(file) else { throw WSurgeryError.notHDF5(path: name) }
        if probing { try HDF5Probe.check(path: file.path, name: name) }
        return try HDF5Lock.run {
            let fapl = try accessList(file.descriptor, name)
            let id = H5Fopen(name, wsh5_F_ACC_RDONLY(), fapl.id)
            if id < 0 { throw WSurgeryError.corruptHDF5(path: name) }
            return HDF5File(path: name, id: id)
        }
    }

    /// Creates an HDF5 file in the (empty) temporary file of `output`, through its descriptor.
    static func create(_ output: OutputFile) throws -> HDF5File {
        let fd = dup(output.descriptorForLibraries)
        if fd < 0 { throw WSurgeryError.cannotCreateOutput(path: output.path, reason: Errno.current.message) }
        return try HDF5Lock.run {
            let fapl: H5ID
            do { fapl = try accessList(fd, output.path) } catch {
                Glibc.close(fd)
                throw error
            }
            let id = H5Fcreate(output.path, wsh5_F_ACC_TRUNC(), wsh5_P_DEFAULT(), fapl.id)
            if id < 0 {
                Glibc.close(fd)
                throw WSurgeryError.cannotCreateOutput(path: output.path, reason: "HDF5 could not create the file")
            }
            return HDF5File(path: output.path, id: id, descriptor: fd)
        }
    }

    /// A file held in memory only (libhdf5's core driver without a backing store), for the probe.
    static func scratch() throws -> HDF5File {
        try HDF5Lock.run {
            let fapl = try HDF5Check(path: "scratch", object: "/").handle(H5Pcreate(wsh5_P_FILE_ACCESS()), H5Pclose, "make file access")
            try HDF5Check(path: "scratch", object: "/").status(H5Pset_fapl_core(fapl.id, 1 << 20, false), "use the memory driver")
            let id = H5Fcreate("wsurgery-probe-scratch", wsh5_F_ACC_TRUNC(), wsh5_P_DEFAULT(), fapl.id)
            if id < 0 { throw WSurgeryError.io(path: "scratch", operation: "create", reason: "HDF5 error") }
            return HDF5File(path: "scratch", id: id)
        }
    }

    /// Reopens a file this process wrote and closed, to add what comes after the data (the provenance).
    func reopenForUpdate() throws -> HDF5File {
        guard let descriptor else { throw WSurgeryError.io(path: path, operation: "reopen", reason: "not a file being written") }
        let fd = dup(descriptor)
        if fd < 0 { throw WSurgeryError.io(path: path, operation: "reopen", reason: Errno.current.message) }
        return try HDF5Lock.run {
            let fapl = try HDF5File.accessList(fd, path)
            let id = H5Fopen(path, wsh5_F_ACC_RDWR(), fapl.id)
            if id < 0 {
                Glibc.close(fd)
                throw WSurgeryError.io(path: path, operation: "reopen the HDF5 file", reason: "HDF5 error")
            }
            return HDF5File(path: path, id: id, descriptor: fd)
        }
    }

    /// Writes `source` at `offset` through this file's own descriptor (after libhdf5 closed the file).
    func place(_ source: any TensorSource, at offset: UInt64) throws {
        guard let descriptor else { throw WSurgeryError.io(path: path, operation: "write", reason: "not a file being written") }
        try PositionedIO.write(source, to: descriptor, at: offset, path: path)
    }

    // MARK: Walking

    /// Checks every component of `objectPath` is a hard link; returns false when some component is missing.
    func exists(_ objectPath: String) throws -> Bool {
        try HDF5Lock.run {
            var prefix = ""
            for component in objectPath.split(separator: "/") {
                prefix += (prefix.isEmpty ? "" : "/") + component
                if try check(prefix).status(H5Lexists(id, prefix, wsh5_P_DEFAULT()), "look up the link") == 0 { return false }
                try checkLink(prefix)
            }
            return true
        }
    }

    /// Throws the specific error for a soft or external link at `objectPath`.
    private func checkLink(_ objectPath: String) throws {
        let type = wsh5_link_type(id, objectPath)
        if type < 0 { throw check(objectPath).failure("read the link") }
        if type == H5L_TYPE_HARD.rawValue { return }
        var size = 256
        var target = ""
        var buffer = [CChar](repeating: 0, count: size)
        var info = H5L_info_t()
        if H5Lget_info(id, objectPath, &info, wsh5_P_DEFAULT()) >= 0 { size = max(Int(info.u.val_size), 1) }
        buffer = [CChar](repeating: 0, count: size + 1)
        if H5Lget_val(id, objectPath, &buffer, size, wsh5_P_DEFAULT()) >= 0 {
            if type == H5L_TYPE_EXTERNAL.rawValue {
                var flags: UInt32 = 0
                var file: UnsafePointer<CChar>?
                var object: UnsafePointer<CChar>?
                if H5Lunpack_elink_val(&buffer, size, &flags, &file, &object) >= 0, let file, let object {
                    target = String(cString: file) + ":" + String(cString: object)
                }
            } else {
                target = String(cArray: buffer)
            }
        }
        if type == H5L_TYPE_SOFT.rawValue { throw WSurgeryError.softLink(path: path, object: objectPath, target: target) }
        if type == H5L_TYPE_EXTERNAL.rawValue { throw WSurgeryError.externalLink(path: path, object: objectPath, target: target) }
        throw WSurgeryError.unknownHDF5Layout(path: path, reason: "'\(objectPath)' is a user-defined link")
    }

    func objectType(_ objectPath: String) throws -> HDF5ObjectType {
        try HDF5Lock.run {
            guard try exists(objectPath) else { throw WSurgeryError.missingObject(path: path, object: objectPath, layer: nil) }
            switch wsh5_object_type(id, objectPath) {
            case Int32(H5O_TYPE_GROUP.rawValue): return .group
            case Int32(H5O_TYPE_DATASET.rawValue): return .dataset
            default: return .other
            }
        }
    }

    /// Names of the links in a group, in name order; soft and external links are refused.
    func children(of groupPath: String) throws -> [String] {
        try HDF5Lock.run {
            let g = try openObject(groupPath)
            var info = H5G_info_t()
            if H5Gget_info(g.id, &info) < 0 { throw check(groupPath).failure("list the group") }
            var names: [String] = []
            let check = check(groupPath)
            for i in 0..<info.nlinks {
                let length = try check.status(
                    H5Lget_name_by_idx(g.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, wsh5_P_DEFAULT()), "list the group")
                var buffer = [CChar](repeating: 0, count: Int(length) + 1)
                try check.status(
                    H5Lget_name_by_idx(g.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buffer, Int(length) + 1, wsh5_P_DEFAULT()), "list the group")
                let name = String(cArray: buffer)
                try checkLink(groupPath == "/" ? name : groupPath + "/" + name)
                names.append(name)
            }
            return names
        }
    }

    /// A number naming the object at `objectPath` (its header address): the same for every path to it.
    func objectAddress(_ objectPath: String) -> UInt64 {
        HDF5Lock.run { wsh5_object_address(id, objectPath) }
    }

    /// Names of the links in a group, in name order, whatever they point at (for the probe's walk).
    func linkNames(of groupPath: String) throws -> [String] {
        try HDF5Lock.run {
            let g = try check(groupPath).handle(H5Oopen(id, groupPath, wsh5_P_DEFAULT()), H5Oclose, "open")
            var info = H5G_info_t()
            if H5Gget_info(g.id, &info) < 0 { throw check(groupPath).failure("list the group") }
            var names: [String] = []
            // A damaged group may claim billions of links: stop at the first that cannot be read.
            for i in 0..<min(info.nlinks, 1 << 20) {
                let length = H5Lget_name_by_idx(g.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, wsh5_P_DEFAULT())
                guard length >= 0, length < 1 << 20 else { break }
                var buffer = [CChar](repeating: 0, count: Int(length) + 1)
                guard H5Lget_name_by_idx(g.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buffer, Int(length) + 1, wsh5_P_DEFAULT()) >= 0 else { break }
                names.append(String(cArray: buffer))
            }
            return names
        }
    }

    /// Reads every attribute of an object as strings where they are strings (for the probe's walk);
    /// failures are ignored, except that a failed allocation is noted.
    func readEveryAttribute(of objectPath: String, noting outOfMemory: inout Bool) {
        HDF5Lock.run {
            guard let o = try? openObject(objectPath) else { return }
            // Looking up a name that is absent walks every attribute message by name, as the readers'
            // look-ups do (`H5Aexists`); reading by index below takes another path through the header.
            _ = H5Aexists(o.id, "wsurgery-probe-absent")
            if wsh5_object_type(id, objectPath) == Int32(H5O_TYPE_GROUP.rawValue) {
                _ = H5Lexists(o.id, "wsurgery-probe-absent", wsh5_P_DEFAULT())
            }
            let count = wsh5_attribute_count(o.id)
            guard count > 0 else { return }
            for i in 0..<min(count, 100_000) {
                let length = H5Aget_name_by_idx(o.id, ".", H5_INDEX_NAME, H5_ITER_INC, hsize_t(i), nil, 0, wsh5_P_DEFAULT())
                guard length >= 0, length < 1 << 20 else { break }
                var buffer = [CChar](repeating: 0, count: Int(length) + 1)
                guard H5Aget_name_by_idx(o.id, ".", H5_INDEX_NAME, H5_ITER_INC, hsize_t(i), &buffer, Int(length) + 1, wsh5_P_DEFAULT()) >= 0
                else { break }
                errno = 0
                if (try? readStrings(o, objectPath: objectPath, name: String(cArray: buffer))) == nil, errno == ENOMEM { outOfMemory = true }
            }
        }
    }

    /// Opens a group or dataset after checking every link on its path is a hard link.
    func openObject(_ objectPath: String) throws -> H5ID {
        try HDF5Lock.run {
            if objectPath != "/" {
                guard try exists(objectPath) else { throw WSurgeryError.missingObject(path: path, object: objectPath, layer: nil) }
            }
            let o = H5Oopen(id, objectPath, wsh5_P_DEFAULT())
            if o < 0 { throw check(objectPath).failure("open") }
            return H5ID(o, H5Oclose)
        }
    }

    // MARK: Attributes

    func hasAttribute(_ objectPath: String, _ name: String) throws -> Bool {
        try HDF5Lock.run {
            let o = try openObject(objectPath)
            return try check("\(objectPath)@\(name)").status(H5Aexists(o.id, name), "look up the attribute") > 0
        }
    }

    /// A string or list-of-strings attribute, variable- or fixed-length, ASCII or UTF-8. An empty numeric
    /// array (what Keras writes for a layer without weights) reads as an empty list. Keras's split
    /// attributes (`name0`, `name1`, ...) are concatenated. Nil when absent.
    func stringsAttribute(_ objectPath: String, _ name: String) throws -> [String]? {
        try HDF5Lock.run {
            let o = try openObject(objectPath)
            func exists(_ attribute: String) throws -> Bool {
                try check("\(objectPath)@\(attribute)").status(H5Aexists(o.id, attribute), "look up the attribute") > 0
            }
            if try exists(name) { return try readStrings(o, objectPath: objectPath, name: name) }
            var parts: [String] = []
            var index = 0
            while try exists("\(name)\(index)") {
                parts += try readStrings(o, objectPath: objectPath, name: "\(name)\(index)")
                index += 1
            }
            return index == 0 ? nil : parts
        }
    }

    /// A single string attribute (a scalar, or a one-element list).
    func stringAttribute(_ objectPath: String, _ name: String) throws -> String? {
        guard let values = try stringsAttribute(objectPath, name) else { return nil }
        guard values.count == 1 else {
            throw WSurgeryError.unknownHDF5Layout(
                path: path, reason: "attribute '\(name)' of '\(objectPath)' holds \(values.count) strings, expected one")
        }
        return values[0]
    }

    private func readStrings(_ object: H5ID, objectPath: String, name: String) throws -> [String] {
        func fail(_ what: String) -> WSurgeryError { .unknownHDF5Layout(path: path, reason: "attribute '\(name)' of '\(objectPath)': \(what)") }
        let check = check("\(objectPath)@\(name)")
        let attr = try check.handle(H5Aopen(object.id, name, wsh5_P_DEFAULT()), H5Aclose, "open the attribute")
        let ftype = try check.handle(H5Aget_type(attr.id), H5Tclose, "read the attribute's type")
        let space = try check.handle(H5Aget_space(attr.id), H5Sclose, "read the attribute's shape")
        let count = Int(try check.status(H5Sget_simple_extent_npoints(space.id), "read the attribute's shape"))
        // A damaged header may claim an attribute far larger than the file: refuse before allocating.
        let stored = UInt64(H5Aget_storage_size(attr.id))
        let elementSize = try check.size(H5Tget_size(ftype.id), "read the attribute's type")
        guard let needed = Checked.multiply(count, elementSize), UInt64(needed) <= Limits.current.configBytes, UInt64(needed) <= max(stored, 16)
        else {
            throw fail("claims \(count) values of \(elementSize) bytes but stores \(stored) bytes")
        }
        let typeClass = H5Tget_class(ftype.id)
        try check.status(typeClass.rawValue, "read the attribute's type")
        if typeClass != H5T_STRING {
            if count == 0 { return [] }
            throw fail("not a string")
        }
        if count == 0 { return [] }
        let cset = H5Tget_cset(ftype.id)
        try check.status(cset.rawValue, "read the attribute's character set")
        if try check.status(H5Tis_variable_str(ftype.id), "read the attribute's type") > 0 {
            let mtype = try check.handle(H5Tcopy(wsh5_T_C_S1()), H5Tclose, "make a string type")
            try check.status(H5Tset_size(mtype.id, wsh5_T_VARIABLE()), "make a string type")
            try check.status(H5Tset_cset(mtype.id, cset), "make a string type")
            var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
            if H5Aread(attr.id, mtype.id, &pointers) < 0 { throw fail("unreadable") }
            defer { _ = wsh5_reclaim(mtype.id, space.id, &pointers) }
            return pointers.map { $0.map { String(cString: $0) } ?? "" }
        }
        let size = try check.size(H5Tget_size(ftype.id), "read the attribute's type")
        let strpad = H5Tget_strpad(ftype.id)
        try check.status(strpad.rawValue, "read the attribute's padding")
        let mtype = try check.handle(H5Tcopy(wsh5_T_C_S1()), H5Tclose, "make a string type")
        try check.status(H5Tset_size(mtype.id, size), "make a string type")
        try check.status(H5Tset_cset(mtype.id, cset), "make a string type")
        try check.status(H5Tset_strpad(mtype.id, strpad), "make a string type")
        var buffer = [UInt8](repeating: 0, count: size * count)
        if H5Aread(attr.id, mtype.id, &buffer) < 0 { throw fail("unreadable") }
        return (0..<count).map { i in
            let slice = buffer[(i * size)..<((i + 1) * size)]
            let end = slice.firstIndex(of: 0) ?? slice.endIndex
            var s = String(decoding: buffer[slice.startIndex..<end], as: UTF8.self)
            while s.hasSuffix(" ") && strpad == H5T_STR_SPACEPAD { s.removeLast() }
            return s
        }
    }

    /// Writes a string attribute as h5py 3 does: variable-length, scalar or one-dimensional.
    func writeStrings(_ objectPath: String, _ name: String, _ values: [String], scalar: Bool, utf8: Bool = false) throws {
        try HDF5Lock.run {
            let o = try openObject(objectPath)
            let check = check("\(objectPath)@\(name)")
            if try check.status(H5Aexists(o.id, name), "look up the attribute") > 0 {
                try check.status(H5Adelete(o.id, name), "replace the attribute")
            }
            let type = try check.handle(H5Tcopy(wsh5_T_C_S1()), H5Tclose, "make a string type")
            try check.status(H5Tset_size(type.id, wsh5_T_VARIABLE()), "make a string type")
            let needsUTF8 = utf8 || values.contains { $0.utf8.contains { $0 > 0x7F } }
            try check.status(H5Tset_cset(type.id, needsUTF8 ? H5T_CSET_UTF8 : H5T_CSET_ASCII), "make a string type")
            var dims: [hsize_t] = [hsize_t(values.count)]
            let space = try check.handle(scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dims, nil), H5Sclose, "make the attribute's shape")
            let attr = try check.handle(
                H5Acreate2(o.id, name, type.id, space.id, wsh5_P_DEFAULT(), wsh5_P_DEFAULT()), H5Aclose, "create the attribute")
            let cStrings = values.map { strdup($0) }
            defer { for string in cStrings { free(string) } }
            var pointers: [UnsafePointer<CChar>?] = cStrings.map { UnsafePointer($0) }
            if H5Awrite(attr.id, type.id, &pointers) < 0 {
                throw WSurgeryError.hdf5(path: path, object: "\(objectPath)@\(name)", operation: "write the attribute")
            }
        }
    }

    /// Writes a list of names the way Keras does: one attribute, or `name0`, `name1`, ... when numpy's
    /// byte size of the list (count x longest) exceeds the 64,512-byte object-header limit. An empty list
    /// is an empty float64 array, as Keras writes it.
    func writeNameList(_ objectPath: String, _ name: String, _ values: [String]) throws {
        if values.isEmpty {
            try HDF5Lock.run {
                let o = try openObject(objectPath)
                var dims: [hsize_t] = [0]
                let check = check("\(objectPath)@\(name)")
                let space = try check.handle(H5Screate_simple(1, &dims, nil), H5Sclose, "make the attribute's shape")
                _ = try check.handle(
                    H5Acreate2(o.id, name, wsh5_T_IEEE_F64LE(), space.id, wsh5_P_DEFAULT(), wsh5_P_DEFAULT()), H5Aclose, "create the attribute")
            }
            return
        }
        let limit = 64_512
        let longest = values.map { $0.utf8.count }.max() ?? 0
        if longest > limit, let name = values.first(where: { $0.utf8.count == longest }) {
            // Keras refuses such an attribute too: it cannot be split below one name.
            throw WSurgeryError.cannotExpress(
                format: "HDF5", tensor: String(name.prefix(60)) + "...",
                reason: "a name of \(longest) bytes does not fit the \(limit)-byte HDF5 attribute Keras stores names in")
        }
        var chunks = 1
        func split(_ k: Int) -> [[String]] {
            // numpy.array_split: the first (n % k) parts get one extra element.
            let base = values.count / k
            let extra = values.count % k
            var parts: [[String]] = []
            var start = 0
            for i in 0..<k {
                let size = base + (i < extra ? 1 : 0)
                parts.append(Array(values[start..<start + size]))
                start += size
            }
            return parts
        }
        // Each name costs its length as numpy stores it, and at least the 16 bytes a variable-length
        // string takes in the object header (many short names overflow it otherwise).
        let cost = max(longest, 16)
        var parts = split(1)
        while parts.contains(where: { $0.count * cost > limit }) {
            chunks += 1
            parts = split(chunks)
        }
        if chunks == 1 {
            try writeStrings(objectPath, name, values, scalar: false)
        } else {
            for (i, part) in parts.enumerated() { try writeStrings(objectPath, "\(name)\(i)", part, scalar: false) }
        }
    }

    // MARK: Groups and datasets

    /// Creates a group (and missing parents).
    func createGroup(_ groupPath: String) throws {
        try HDF5Lock.run {
            let check = check(groupPath)
            if try exists(groupPath) { return }
            let lcpl = try check.handle(H5Pcreate(wsh5_P_LINK_CREATE()), H5Pclose, "make link properties")
            try check.status(H5Pset_create_intermediate_group(lcpl.id, 1), "make link properties")
            // No modification times, so the same graph always gives the same bytes.
            let gcpl = try check.handle(H5Pcreate(wsh5_P_GROUP_CREATE()), H5Pclose, "make group properties")
            try check.status(H5Pset_obj_track_times(gcpl.id, false), "make group properties")
            _ = try check.handle(H5Gcreate2(id, groupPath, lcpl.id, gcpl.id, wsh5_P_DEFAULT()), H5Gclose, "create the group")
        }
    }
}

extension String {
    /// The UTF-8 text of a C character array up to its first NUL (or all of it).
    init(cArray: [CChar]) {
        self = String(decoding: cArray.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
