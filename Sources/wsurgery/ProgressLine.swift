import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A progress line on stderr, redrawn in place. It draws only when stdout and stderr are terminals and
/// `--quiet` was not given, so logs and pipes get no progress noise.
final class ProgressLine: @unchecked Sendable {
    let enabled: Bool
    private let lock = NSLock()
    private var lastDraw = Date.distantPast
    private var drawn = false

    init(quiet: Bool) {
        enabled = !quiet && isatty(1) == 1 && isatty(2) == 1
    }

    /// `[#######.............] 3/10 files, 1 failed`.
    func files(done: Int, total: Int, failed: Int) {
        guard enabled else { return }
        let width = 24
        let filled = total == 0 ? width : width * done / total
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        draw("[\(bar)] \(done)/\(total) files" + (failed > 0 ? ", \(failed) failed" : ""), force: done == total)
    }

    /// `writing out.safetensors: 1.2 GB of 4.8 GB`, at most ten times a second; `task` names what is done.
    func bytes(_ done: UInt64, of total: UInt64, task: String) {
        guard enabled else { return }
        draw("\(task): \(ProgressLine.size(done)) of \(ProgressLine.size(total))", force: done == total)
    }

    /// Ends the line so later output starts on a fresh one.
    func finish() {
        lock.lock()
        defer { lock.unlock() }
        if drawn { FileHandleOutput.standardError("", control: ProgressLine.clear) }
        drawn = false
    }

    private func draw(_ text: String, force: Bool) {
        lock.lock()
        defer { lock.unlock() }
        let now = Date()
        guard force || now.timeIntervalSince(lastDraw) >= 0.1 else { return }
        lastDraw = now
        drawn = true
        FileHandleOutput.standardError(text, control: ProgressLine.clear)
    }

    /// Back to the line's start and clear it (the only control codes wsurgery itself prints; text from
    /// files, such as an output name, is escaped).
    static let clear = "\r\u{1B}[K"

    static func size(_ bytes: UInt64) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1000, unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f", value) + " " + units[unit]
    }
}
