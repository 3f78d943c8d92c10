import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A file opened read-only. Tensor bytes are read from it with `pread` on demand, so nothing is loaded
/// before a pass or a writer asks, and the file is never opened for writing.
public final class InputFile: Sendable {
    /// The path opened.
    public let path: String
    /// Its size in bytes.
    public let size: UInt64
    /// The open descriptor; valid for the object's lifetime.
    public let descriptor: Int32
    /// The device and inode, to recognise the same file under another name.
    public let identity: FileIdentity

    /// Opens `path` read-only; `followingSymlinks: false` refuses a symlink as its last component.
    public init(path: String, followingSymlinks: Bool = true) throws {
        // Non-blocking, so a FIFO is refused below instead of waiting for a writer forever.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | (followingSymlinks ? 0 : O_NOFOLLOW))
        if fd < 0 { throw WSurgeryError.cannotOpen(path: path, reason: Errno.current.message) }
        var info = stat()
        if fstat(fd, &info) != 0 {
            let reason = Errno.current.message
            close(fd)
            throw WSurgeryError.cannotOpen(path: path, reason: reason)
        }
        if (info.st_mode & S_IFMT) != S_IFREG {
            close(fd)
            throw WSurgeryError.cannotOpen(path: path, reason: InputFile.describe(mode: info.st_mode) + ", not a regular file")
        }
        self.path = path
        self.descriptor = fd
        self.size = UInt64(info.st_size)
        self.identity = FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// What a non-regular file is, for the error.
    static func describe(mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: return "is a directory"
        case S_IFIFO: return "is a FIFO (named pipe)"
        case S_IFCHR: return "is a character device"
        case S_IFBLK: return "is a block device"
        case S_IFSOCK: return "is a socket"
        default: return "is a special file"
        }
    }

    deinit { close(descriptor) }

    /// Reads exactly `buffer.count` bytes starting at `offset`.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        var done = 0
        while done < buffer.count {
            let n = pread(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw WSurgeryError.io(path: path, operation: "read", reason: Errno.current.message)
            }
            if n == 0 {
                throw WSurgeryError.truncatedFile(path: path, expectedBytes: offset + UInt64(buffer.count), actualBytes: offset + UInt64(done))
            }
            done += n
        }
    }

    /// The whole of a small text file (a recipe, a report), refused over the `config-bytes` limit or
    /// when it is not a regular file; nil when it is not UTF-8.
    public static func text(path: String, what: String) throws -> String? {
        let file = try InputFile(path: path)
        try Limits.current.checkConfig(bytes: file.size, path: path, what: what)
        return String(validating: try file.read(count: Int(file.size), at: 0), as: UTF8.self)
    }

    /// Reads `count` bytes at `offset` into a new array.
    public func read(count: Int, at offset: UInt64) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        return bytes
    }
}

/// A file's device and inode number.
public struct FileIdentity: Hashable, Sendable {
    /// The device.
    public let device: UInt64
    /// The inode on the device.
    public let inode: UInt64

    /// The identity of the file at `path`, or nil when it does not exist.
    public static func of(path: String) -> FileIdentity? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }
}

/// The C library's error number with its message.
struct Errno {
    let code: Int32
    static var current: Errno { Errno(code: errno) }
    var message: String { String(cString: strerror(code)) }
}
