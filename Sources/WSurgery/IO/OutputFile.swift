import CFileCopy
import CProcessGuard
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A file being written atomically. On Linux the bytes go to an unnamed file (`O_TMPFILE`) in the
/// target's directory, which gets its name only at commit: however the process ends before that (a
/// signal, SIGKILL, a crash, a full disk) nothing is left behind. libhdf5 works on it through the
/// descriptor driver (`CHDF5Descriptor`). Filesystems without `O_TMPFILE` get a named temporary file
/// beside the target instead: removed by `deinit`, by the signal handlers of `ProcessGuard` on any
/// catchable signal or crash, and, after a SIGKILL, by the next process that writes into that
/// directory (the name records the writer's pid). Everything is done relative to the target's
/// directory held open (`OutputDirectory`), never through its path again.
public final class OutputFile {
    /// The final path.
    public let path: String
    /// The directory it is written into, and its name there.
    public let parent: OutputDirectory
    /// The file's name in `parent`.
    public let name: String
    /// A path the temporary file can be opened by, for libraries that open files by name (libhdf5,
    /// ZIPFoundation, the HDF5 probe): `/proc/PID/fd/N` for an unnamed file.
    public let temporaryPath: String
    /// Whether the temporary file is unnamed (`O_TMPFILE`).
    public let isUnnamed: Bool
    private var descriptor: Int32
    private var temporaryName = ""
    private var position: UInt64 = 0
    private var committed = false
    private var guardSlot: Int32 = -1

    /// Creates the temporary file beside `path`, in its directory opened by path.
    public convenience init(path: String) throws {
        try self.init(path: path, in: OutputDirectory(path: OutputFile.directory(of: path)))
    }

    /// Creates the temporary file for `path` in `parent` (the open directory of `path`): unnamed where
    /// the filesystem can.
    public init(path: String, in parent: OutputDirectory) throws {
        self.path = path
        self.parent = parent
        self.name = path.split(separator: "/").last.map(String.init) ?? path
        ProcessGuard.install()
        let unnamed = wsg_open_unnamed_at(parent.descriptor, 0o666)
        if unnamed >= 0 {
            descriptor = unnamed
            isUnnamed = true
            // By pid, not /proc/self: a child process (the HDF5 probe) can open it too.
            temporaryPath = "/proc/\(getpid())/fd/\(unnamed)"
            return
        }
        OutputFile.removeOrphans(in: parent)
        var fd: Int32 = -1
        for _ in 0..<100 {
            temporaryName = OutputFile.temporaryPrefix(for: name) + "\(getpid())-" + OutputFile.randomSuffix()
            // O_EXCL: a new file, with the permissions an ordinary new file gets (0666 less the umask).
            fd = openat(parent.descriptor, temporaryName, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o666)
            if fd >= 0 || errno != EEXIST { break }
        }
        if fd < 0 { throw WSurgeryError.cannotCreateOutput(path: path, reason: Errno.current.message) }
        self.descriptor = fd
        self.isUnnamed = false
        self.temporaryPath = parent.stablePath(temporaryName)
        guardSlot = wsg_register(temporaryPath, 0)
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
        if !committed && !isUnnamed { unlinkat(parent.descriptor, temporaryName, 0) }
        wsg_unregister(guardSlot)
    }

    /// Named temporary files for a file `name` are this prefix, the writer's pid, `-` and random
    /// characters, beside it: `.NAME.wsurgery-PID-XXXXXX`.
    static func temporaryPrefix(for name: String) -> String { ".\(name).wsurgery-" }

    static func randomSuffix() -> String {
        let letters = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<8).map { _ in letters.randomElement()! })
    }

    /// Removes temporary files a process that died while writing `path` left beside it.
    public static func removeLeftovers(for path: String) {
        let directory = directory(of: path)
        let prefix = temporaryPrefix(for: path.split(separator: "/").last.map(String.init) ?? path)
        // Not a set's journal (`.NAME.wsurgery-set`): the next writer of the output needs it to undo the set.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(prefix) && !name.hasSuffix("-set") {
            try? FileManager.default.removeItem(atPath: directory + "/" + name)
        }
    }

    private static let orphanLock = NSLock()
    nonisolated(unsafe) private static var scanned: Set<String> = []

    /// Removes the named temporary files (`.NAME.wsurgery-PID-XXXXXX`) of processes that no longer run,
    /// left when one was killed with SIGKILL; each directory is looked at once per process.
    static func removeOrphans(in directory: OutputDirectory) {
        guard orphanLock.withLock({ scanned.insert(directory.path).inserted }) else { return }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory.stablePath())) ?? [] where name.hasPrefix(".") {
            guard let marker = name.range(of: ".wsurgery-", options: .backwards) else { continue }
            let rest = name[marker.upperBound...].split(separator: "-")
            guard rest.count == 2, let pid = Int32(rest[0]), pid > 0, pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlinkat(directory.descriptor, name, 0) }
        }
    }

    /// The directory part of `path` (`.` when it has none).
    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let dir = String(path[..<slash])
        return dir.isEmpty ? "/" : dir
    }

    /// The descriptor of the temporary file, for libraries that work on descriptors (the HDF5 driver).
    var descriptorForLibraries: Int32 { descriptor }

    /// The number of bytes written so far.
    public var bytesWritten: UInt64 { position }

    /// The identity the file will have once committed (linking and renaming keep the inode).
    func pendingIdentity() -> FileIdentity? {
        var info = stat()
        if descriptor >= 0 {
            guard fstat(descriptor, &info) == 0 else { return nil }
        } else {
            guard fstatat(parent.descriptor, temporaryName, &info, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        }
        return FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

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

    /// Lets a library reopen the temporary file by `temporaryPath`: a named one is closed (and
    /// recreated by the library), an unnamed one stays open, since its descriptor is what keeps it.
    public func closeForReopen() throws {
        if isUnnamed { return }
        if descriptor >= 0, close(descriptor) != 0 {
            throw WSurgeryError.io(path: path, operation: "close", reason: Errno.current.message)
        }
        descriptor = -1
    }

    /// Gives the temporary file the target's name. A file that appeared there since the command checked
    /// (another writer of the same output) is replaced only when `replacing` (`--force`): else the name
    /// is taken with an operation that fails if it exists (`linkat`), and this writer loses (73).
    public func commit(replacing: Bool = true) throws {
        let directory = parent.descriptor
        if isUnnamed {
            if wsg_link_unnamed_at(descriptor, directory, name) != 0 {
                guard errno == EEXIST else { throw WSurgeryError.cannotCreateOutput(path: path, reason: Errno.current.message) }
                guard replacing else { throw WSurgeryError.outputExists(path: path) }
                // Replacing (--force): link under a temporary name, then rename over the target.
                let temporary = OutputFile.temporaryPrefix(for: name) + "\(getpid())-" + OutputFile.randomSuffix()
                if wsg_link_unnamed_at(descriptor, directory, temporary) != 0 {
                    throw WSurgeryError.cannotCreateOutput(path: path, reason: Errno.current.message)
                }
                let slot = wsg_register(parent.stablePath(temporary), 0)
                defer { wsg_unregister(slot) }
                if renameat(directory, temporary, directory, name) != 0 {
                    let reason = Errno.current.message
                    unlinkat(directory, temporary, 0)
                    throw WSurgeryError.cannotCreateOutput(path: path, reason: reason)
                }
            }
            close(descriptor)
            descriptor = -1
            committed = true
            return
        }
        try closeForReopen()
        if !replacing {
            if linkat(directory, temporaryName, directory, name, 0) != 0 {
                if errno == EEXIST { throw WSurgeryError.outputExists(path: path) }
                throw WSurgeryError.cannotCreateOutput(path: path, reason: Errno.current.message)
            }
            unlinkat(directory, temporaryName, 0)
        } else if renameat(directory, temporaryName, directory, name) != 0 {
            throw WSurgeryError.cannotCreateOutput(path: path, reason: Errno.current.message)
        }
        committed = true
        wsg_unregister(guardSlot)
        guardSlot = -1
    }
}

/// Writes at explicit offsets, shared by the output writers.
enum PositionedIO {
    /// Writes the bytes of `source` at `offset`: in the kernel when they lie in a file region.
    static func write(_ source: any TensorSource, to descriptor: Int32, at offset: UInt64, path: String) throws {
        if let region = source.fileRegion, try copyInKernel(region, to: descriptor, at: offset, path: path) { return }
        var position = offset
        try source.forEachChunk(maxChunk: 4 << 20) { chunk in
            try write(chunk, to: descriptor, at: position, path: path)
            position += UInt64(chunk.count)
        }
    }

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
