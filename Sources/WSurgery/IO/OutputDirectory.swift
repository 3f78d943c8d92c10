import CProcessGuard
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A directory outputs are written into, held open: the files of an output are created, named, checked
/// and removed relative to its descriptor, so a path component swapped after it was opened (a symlink put
/// in place of a directory while `run` writes) cannot redirect a write.
public final class OutputDirectory: @unchecked Sendable {
    /// The path it was opened by, for messages.
    public let path: String
    /// The open directory.
    let descriptor: Int32

    /// Opens the directory `path`, following symlinks (the directory a user named).
    public convenience init(path: String) throws {
        let fd = wsg_open_directory_at(AT_FDCWD, path, 1)
        if fd < 0 {
            throw WSurgeryError.cannotCreateOutput(path: path, reason: errno == ENOENT ? "directory \(path) does not exist" : Errno.current.message)
        }
        self.init(path: path, descriptor: fd)
    }

    init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    /// A name libraries that open files by path reach `name` of this directory by, whatever happens to
    /// `path` meanwhile: `/proc/PID/fd/N/name` (by pid, so a child process such as the HDF5 probe can too).
    func stablePath(_ name: String = "") -> String {
        "/proc/\(getpid())/fd/\(descriptor)" + (name.isEmpty ? "" : "/" + name)
    }

    /// The status of `name`, following a final symlink or not; nil when it does not exist.
    func status(of name: String, following: Bool) -> stat? {
        var info = stat()
        guard fstatat(descriptor, name, &info, following ? 0 : AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        return info
    }

    /// The identity of the file `name` (following a symlink), nil when it does not exist.
    func identity(of name: String) -> FileIdentity? {
        status(of: name, following: true).map { FileIdentity(device: UInt64($0.st_dev), inode: UInt64($0.st_ino)) }
    }

    /// Removes `name` when it is still the file `identity` (never a file another writer put there since).
    func unlink(_ name: String, ifStill identity: FileIdentity?) {
        guard let identity, let info = status(of: name, following: false),
            FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)) == identity
        else { return }
        unlinkat(descriptor, name, 0)
    }

    /// Opens the subdirectory `name` with O_NOFOLLOW: a symlink there is refused, never followed.
    func subdirectory(_ name: String, creating: Bool, created: (OutputDirectory, String) -> Void) throws -> OutputDirectory {
        let display = path + "/" + name
        var fd = wsg_open_directory_at(descriptor, name, 0)
        if fd < 0, errno == ENOENT, creating {
            if mkdirat(descriptor, name, 0o777) == 0 {
                created(self, name)
            } else if errno != EEXIST {
                throw WSurgeryError.cannotCreateOutput(path: display, reason: Errno.current.message)
            }
            fd = wsg_open_directory_at(descriptor, name, 0)
        }
        if fd < 0 {
            let error = Errno.current
            if let info = status(of: name, following: false), (info.st_mode & S_IFMT) == S_IFLNK {
                let reason = "it is a symlink: outputs below \(option("out-dir")) are written only through real directories, never through a symlink"
                throw WSurgeryError.cannotCreateOutput(path: display, reason: reason)
            }
            let reason = error.code == ENOENT ? "directory \(display) does not exist" : error.message
            throw WSurgeryError.cannotCreateOutput(path: display, reason: reason)
        }
        return OutputDirectory(path: display, descriptor: fd)
    }

    /// Reads the small file `name` (at most `limit` bytes), nil when it cannot.
    func readSmallFile(_ name: String, limit: Int = 1 << 20) -> [UInt8]? {
        let fd = openat(descriptor, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_size <= limit else { return nil }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while bytes.count <= limit {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return n == 0 ? bytes : nil }
            bytes += buffer[..<n]
        }
        return nil
    }
}
