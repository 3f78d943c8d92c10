import CProcessGuard
import Foundation

/// What happens when the process dies: temporary files registered with the C guard are removed by
/// signal handlers, and a crash inside libhdf5 while a file is parsed becomes exit 65 naming the file.
public enum ProcessGuard {
    /// Installs the signal handlers (once; cheap to call again).
    public static func install() { wsg_install_handlers() }

    /// Makes this process get SIGTERM when `parent` (its parent's pid) dies, at once if it already has:
    /// a `run --jobs` worker ends with its `run`, however `run` was stopped (SIGKILL included).
    public static func dieWithParent(_ parent: Int32) { wsg_die_with_parent(parent) }

    private static let lock = NSRecursiveLock()
    nonisolated(unsafe) private static var current: String?

    /// Runs `body` with `path` named as the file being parsed: a crash inside it exits 65 naming it.
    /// Nested calls keep the outermost name.
    static func parsing<T>(_ path: String, _ body: () throws -> T) rethrows -> T {
        lock.lock()
        let outermost = current == nil
        if outermost {
            current = path
            wsg_set_parsing(path)
        }
        lock.unlock()
        defer {
            if outermost {
                lock.lock()
                current = nil
                wsg_set_parsing(nil)
                lock.unlock()
            }
        }
        return try body()
    }
}
