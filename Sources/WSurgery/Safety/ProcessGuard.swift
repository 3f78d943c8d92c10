import CProcessGuard

/// What happens when the process dies: temporary files registered with the C guard are removed by
/// signal handlers, and a crash inside libhdf5 while a file is parsed becomes exit 65 naming the file.
public enum ProcessGuard {
    /// Installs the signal handlers (once; cheap to call again).
    public static func install() { wsg_install_handlers() }

    /// Runs `body` with `path` named as the file being parsed: a crash inside it exits 65 naming it.
    static func parsing<T>(_ path: String, _ body: () throws -> T) rethrows -> T {
        wsg_set_parsing(path)
        defer { wsg_set_parsing(nil) }
        return try body()
    }
}
