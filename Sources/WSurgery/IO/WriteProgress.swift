/// Progress of the writer of a large output, for a progress line. Writers report each tensor as it is
/// written; whoever wants progress sets `current` around the write (a task-local, so concurrent runs
/// and callers that do not care see nothing).
public final class WriteProgress: @unchecked Sendable {
    /// The receiver for the write in progress, if any.
    @TaskLocal public static var current: WriteProgress?

    private let report: @Sendable (_ done: UInt64, _ total: UInt64, _ file: String) -> Void
    private var done: UInt64 = 0
    private var total: UInt64 = 0
    private var file = ""

    /// `report` is called after each tensor with the bytes written so far, the total and the output.
    public init(_ report: @escaping @Sendable (_ done: UInt64, _ total: UInt64, _ file: String) -> Void) {
        self.report = report
    }

    /// Starts a write of `total` tensor bytes to `file`.
    static func begin(total: UInt64, file: String) {
        guard let progress = current else { return }
        progress.done = 0
        progress.total = total
        progress.file = file
        progress.report(0, total, file)
    }

    /// `bytes` more tensor bytes were written.
    static func advance(_ bytes: UInt64) {
        guard let progress = current else { return }
        progress.done += bytes
        progress.report(min(progress.done, progress.total), progress.total, progress.file)
    }
}
