import CFileCopy
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A file being written atomically: the bytes go to a temporary file in the target's directory, which
/// is renamed over the target only when everything succeeded. Dropping it uncommitted removes the
/// temporary file, so a failure leaves no partial output behind.
public final class OutputFile {
    /// The final path.
    public let path: String
    /// The temporary path being written.
    public let temporaryPath: String
    private var descriptor: Int32
    private var position: UInt64 = 0
    private var committed = false

    /// Creates the temporary file beside `path`.
    public init(path: String) throws {
        self.path = path
        var template = Array((OutputFile.temporaryPrefix(for: path) + "XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        if fd < 0 { throw WSurgeryError.cannotCreateOutput(path: path, reason: Errno.current.message) }
        self.descriptor = fd
        self.temporaryPath = String(cArray: template)
        // mkstemp creates 0600; give the output the permissions an ordinary new file gets.
        let mask = umask(0)
        umask(mask)
        fchmod(fd, 0o666 & ~mask)
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
        if !committed { unlink(temporaryPath) }
    }

    /// Temporary files for `path` are this prefix and six random characters, beside it: `.NAME.wsurgery-`.
    static func temporaryPrefix(for path: String) -> String {
        let base = path.split(separator: "/").last.map(String.init) ?? path
        return "\(directory(of: path))/.\(base).wsurgery-"
    }

    /// Removes temporary files a process that died while writing `path` left beside it.
    public static func removeLeftovers(for path: String) {
        let directory = directory(of: path)
        let prefix = String(temporaryPrefix(for: path).dropFirst(directory.count + 1))
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(prefix) {
            try? FileManager.default.removeItem(atPath: directory + "/" + name)
        }
    }

    /// The directory part of `path` (`.` when it has none).
    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let dir = String(path[..<slash])
        return dir.isEmpty ? "/" : dir
    }

    /// The number of bytes written so far.
    public var bytesWritten: UInt64 { position }

    /// Appends `bytes`.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(descriptor, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw WSurgeryError.io(path: path, operation: "write", reason: Errno.current.message)
            }
            done += n
        }
        position += UInt64(bytes.count)
    }

    /// Writes `bytes` over what was written at `offset` (a digest filled in after the data).
    public func overwrite(_ bytes: [UInt8], at offset: UInt64) throws {
        precondition(offset + UInt64(bytes.count) <= position, "overwrite past what was written")
        try bytes.withUnsafeBytes { try PositionedIO.write($0, to: descriptor, at: offset, path: path) }
    }

    /// Appends `bytes`.
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Appends the bytes of a tensor source: file-to-file in the kernel when they sit in a file region,
    /// else through a bounded buffer.
    public func write(from source: any TensorSource) throws {
        if let region = source.fileRegion, try PositionedIO.copyInKernel(region, to: descriptor, at: position, path: path) {
            position += region.length
            if lseek(descriptor, off_t(position), SEEK_SET) < 0 {
                throw WSurgeryError.io(path: path, operation: "seek", reason: Errno.current.message)
            }
            return
        }
        try source.forEachChunk(maxChunk: 4 << 20) { try write($0) }
    }

    /// Closes the temporary file without renaming it (for writers that reopen it by path, like HDF5).
    public func closeForReopen() throws {
        if descriptor >= 0, close(descriptor) != 0 {
            throw WSurgeryError.io(path: path, operation: "close", reason: Errno.current.message)
        }
        descriptor = -1
    }

    /// Renames the temporary file over the target.
    public func commit() throws {
        try closeForReopen()
        if rename(temporaryPath, path) != 0 {
            throw WSurgeryError.cannotCreateOutput(path: path, reason: Errno.current.message)
        }
        committed = true
    }
}

/// A file written at given offsets through a descriptor of its own (dataset bytes placed inside an HDF5
/// file libhdf5 has laid out).
final class PositionedFile {
    let path: String
    private let descriptor: Int32

    /// Opens `path` for writing without truncating it.
    init(path: String) throws {
        self.path = path
        descriptor = open(path, O_WRONLY | O_CLOEXEC)
        if descriptor < 0 { throw WSurgeryError.io(path: path, operation: "open", reason: Errno.current.message) }
    }

    deinit { close(descriptor) }

    /// Writes the bytes of `source` starting at `offset`: in the kernel when they lie in a file region.
    func write(_ source: any TensorSource, at offset: UInt64) throws {
        if let region = source.fileRegion, try PositionedIO.copyInKernel(region, to: descriptor, at: offset, path: path) { return }
        var position = offset
        try source.forEachChunk(maxChunk: 4 << 20) { chunk in
            try PositionedIO.write(chunk, to: descriptor, at: position, path: path)
            position += UInt64(chunk.count)
        }
    }
}

/// Writes at explicit offsets, shared by the output writers.
enum PositionedIO {
    /// `pwrite` of all of `bytes` at `offset`; `path` names the file in errors.
    static func write(_ bytes: UnsafeRawBufferPointer, to descriptor: Int32, at offset: UInt64, path: String) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw WSurgeryError.io(path: path, operation: "write", reason: Errno.current.message)
            }
            done += n
        }
    }

    /// Copies a file region to `offset` with copy_file_range; returns false when the kernel cannot (other
    /// filesystem types, old kernels), before anything was written.
    static func copyInKernel(_ region: FileRegion, to descriptor: Int32, at offset: UInt64, path: String) throws -> Bool {
        var inOffset = Int64(region.offset)
        var outOffset = Int64(offset)
        var remaining = region.length
        var first = true
        while remaining > 0 {
            let n = wsurgery_copy_file_range_at(region.file.descriptor, &inOffset, descriptor, &outOffset, Int(min(remaining, 1 << 30)))
            if n < 0 {
                if errno == EINTR { continue }
                if first && [EXDEV, ENOSYS, EINVAL, EOPNOTSUPP, EBADF].contains(errno) { return false }
                throw WSurgeryError.io(path: path, operation: "copy from \(region.file.path)", reason: Errno.current.message)
            }
            if n == 0 {
                throw WSurgeryError.truncatedFile(path: region.file.path, expectedBytes: region.offset + region.length, actualBytes: UInt64(inOffset))
            }
            first = false
            remaining -= UInt64(n)
        }
        return true
    }
}

/// Several output files that appear together or not at all (a sharded checkpoint and its index, a
/// weights file and its config.json).
public final class OutputSet {
    /// The files created so far.
    public private(set) var files: [OutputFile] = []
    /// Whether existing files may be replaced.
    public let allowOverwrite: Bool
    /// Files that must never be written over (the inputs).
    private let protected: Set<FileIdentity>
    /// A directory this set created for its files (an output model folder), removed unless committed.
    private var createdDirectory: String?
    private var committed = false

    /// A set that refuses to replace existing files unless `allowOverwrite`, and never replaces `inputs`.
    public init(allowOverwrite: Bool = false, protecting inputs: [InputFile] = []) {
        self.allowOverwrite = allowOverwrite
        self.protected = Set(inputs.map(\.identity))
    }

    /// Refuses a target that is one of the inputs, or that exists when overwriting is not allowed.
    public func checkTarget(_ path: String) throws {
        guard let identity = FileIdentity.of(path: path) else {
            // A dangling symlink is still a file that would be replaced.
            var info = stat()
            if lstat(path, &info) == 0, !allowOverwrite { throw WSurgeryError.outputExists(path: path) }
            return
        }
        if protected.contains(identity) { throw WSurgeryError.outputIsInput(path: path) }
        if !allowOverwrite { throw WSurgeryError.outputExists(path: path) }
    }

    /// Starts a new file of the set.
    public func create(_ path: String) throws -> OutputFile {
        try checkTarget(path)
        if files.contains(where: { $0.path == path }) {
            throw WSurgeryError.cannotCreateOutput(path: path, reason: "written twice by one command")
        }
        let file = try OutputFile(path: path)
        files.append(file)
        return file
    }

    /// Creates the output folder `path` when it does not exist (its parent must); it is removed again if
    /// the set is never committed.
    public func makeDirectory(_ path: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            if isDirectory.boolValue { return }
            throw WSurgeryError.cannotCreateOutput(path: path, reason: "a file of that name exists")
        }
        if mkdir(path, 0o777) != 0 { throw WSurgeryError.cannotCreateOutput(path: path, reason: Errno.current.message) }
        createdDirectory = path
    }

    /// Commits every file; the last one (by convention the index) appears last.
    public func commit() throws {
        for file in files { try file.commit() }
        committed = true
    }

    deinit {
        guard !committed, let createdDirectory else { return }
        files.removeAll()  // their temporary files go first
        rmdir(createdDirectory)
    }
}
