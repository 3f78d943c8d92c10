/// Progress of a long task over bytes, for a progress line: writing a large output (writers report each
/// tensor as it is written) or extracting a large `.keras` archive's weights. Whoever wants progress sets
/// `current` around the work (a task-local, so concurrent runs and callers that do not care see nothing).
public final class WriteProgress: @unchecked Sendable {
    /// The receiver for the write in progress, if any.
    @TaskLocal public static var current: WriteProgress?

    private let report: @Sendable (_ done: UInt64, _ total: UInt64, _ task: String) -> Void
    private var done: UInt64 = 0
    private var total: UInt64 = 0
    private var task = ""

    /// `report` is called as the task advances with the bytes done so far, the total and the task.
    public init(_ report: @escaping @Sendable (_ done: UInt64, _ total: UInt64, _ task: String) -> Void) {
        self.report = report
    }

    /// Starts a task over `total` bytes, named for the progress line (`writing out.h5`, `extracting
    /// model.weights.h5 from m.keras`).
    static func begin(total: UInt64, task: String) {
        guard let progress = current else { return }
        progress.done = 0
        progress.total = total
        progress.task = task
        progress.report(0, total, task)
    }

    /// `bytes` more tensor bytes were written.
    static func advance(_ bytes: UInt64) {
        guard let progress = current else { return }
        progress.done += bytes
        progress.report(min(progress.done, progress.total), progress.total, progress.task)
    }
}
