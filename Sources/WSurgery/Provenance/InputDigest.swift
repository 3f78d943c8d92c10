import Foundation

/// The input's digest (XXH3-128 by default, or SHA-256), computed on another thread from the moment the input is read, so it overlaps
/// the passes and the writing of the output (the writer copies in the kernel; the second core is free).
/// Writers put `placeholder` where the digest goes and fill it in once it is known: the placeholder has
/// the digest's length, so no byte moves and the output is the same whatever the timing.
public final class InputDigest: @unchecked Sendable {
    /// The algorithm.
    public let algorithm: DigestAlgorithm
    /// Stands for the digest until it is known: as many characters as the hex digest, none a hex digit's
    /// place could hold (so no digest and no other text of the record is mistaken for it).
    public let placeholder: String

    private let condition = NSCondition()
    private var result: Result<String, any Error>?
    private var cancelled = false

    /// Starts hashing `path`.
    public init(path: String, algorithm: DigestAlgorithm = .xxh128) {
        self.algorithm = algorithm
        let mark = "wsurgery:input-digest-pending"
        placeholder = mark + String(repeating: "-", count: max(0, algorithm.hexLength - mark.count))
        let thread = Thread { [self] in
            let value = Result { try hash(path) }
            condition.lock()
            result = value
            condition.broadcast()
            condition.unlock()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Stops hashing (the command failed; nothing will be written).
    public func cancel() {
        condition.lock()
        cancelled = true
        condition.unlock()
    }

    private var isCancelled: Bool {
        condition.lock()
        defer { condition.unlock() }
        return cancelled
    }

    private func hash(_ path: String) throws -> String {
        try algorithm.file(try InputFile(path: path), cancelled: { isCancelled })
    }

    /// The digest, waiting for it when it is not computed yet.
    public func value() throws -> String {
        condition.lock()
        defer { condition.unlock() }
        while result == nil { condition.wait() }
        return try result!.get()
    }
}

extension Provenance {
    /// The stored text with the pending digest filled in.
    func text(resolving digest: InputDigest?) throws -> String {
        guard let digest, text.contains(digest.placeholder) else { return text }
        return text.replacingOccurrences(of: digest.placeholder, with: try digest.value())
    }
}
