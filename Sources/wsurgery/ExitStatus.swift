import WSurgery

/// The one mapping from failure categories to exit codes (sysexits.h values), documented in the README.
enum ExitStatus {
    static func code(for category: FailureCategory) -> Int32 {
        switch category {
        case .usage: return 64             // EX_USAGE
        case .badData: return 65           // EX_DATAERR
        case .cannotOpenInput: return 66   // EX_NOINPUT
        case .cannotCreateOutput: return 73 // EX_CANTCREAT
        case .io: return 74                // EX_IOERR
        }
    }
}
