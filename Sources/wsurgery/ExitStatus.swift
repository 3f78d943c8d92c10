import ArgumentParser
import WSurgery

/// The one mapping from outcomes to exit codes (sysexits.h values), documented in the README.
enum ExitStatus {
    /// Everything asked for was done.
    case success
    /// `diff`: the checkpoints differ.
    case differ
    /// A failure of this category.
    case failure(FailureCategory)

    var code: Int32 {
        switch self {
        case .success: return 0
        case .differ: return 1
        case .failure(.usage): return 64  // EX_USAGE
        case .failure(.badData): return 65  // EX_DATAERR
        case .failure(.cannotOpenInput): return 66  // EX_NOINPUT
        case .failure(.cannotCreateOutput): return 73  // EX_CANTCREAT
        case .failure(.io): return 74  // EX_IOERR
        case .failure(.software): return 70  // EX_SOFTWARE
        }
    }

    /// The status as the argument parser's exit.
    var exitCode: ExitCode { ExitCode(code) }
}
