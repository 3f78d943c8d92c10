import CProcessGuard
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Several output files that appear together or not at all (a sharded checkpoint and its index, a
/// weights file and its config.json, a model folder).
///
/// Directories are opened once and every file is created, checked and named relative to them; below
/// `root` (`run --out-dir`) they are walked with O_NOFOLLOW and created as needed, so no symlink there is
/// ever followed. A set of several files is committed under a journal (`.OUTPUT.wsurgery-set` beside the
/// output, naming the files and the writer): a writer killed between two of its files leaves the journal,
/// and the next writer of that output removes what the dead one committed before it starts, so a re-run
/// or a resumed `run` completes the set instead of failing on its leftovers.
public final class OutputSet {
    /// The files created so far.
    public private(set) var files: [OutputFile] = []
    /// Whether existing files may be replaced.
    public let allowOverwrite: Bool
    /// Outputs below this directory are reached only through real directories (O_NOFOLLOW from it down),
    /// created as needed; nil: directories are opened by the paths given, and must exist.
    public let root: String?
    /// Files that must never be written over (the inputs).
    private let protected: Set<FileIdentity>
    private var directories: [String: OutputDirectory] = [:]
    /// Directories this set created, in order, removed (deepest first) unless committed.
    private var created: [(parent: OutputDirectory, name: String, slot: Int32)] = []
    /// The output the set was claimed for (`claim`), which names its journal.
    private var claimed: String?
    /// The file committed last (default: the claimed output, else the last created).
    private var lastPath: String?
    /// Files of an earlier output that this one replaces (with `allowOverwrite`), removed at commit.
    private var stale: [String] = []
    private var committed = false

    /// A set that refuses to replace existing files unless `allowOverwrite`, and never replaces `inputs`.
    public init(allowOverwrite: Bool = false, protecting inputs: [InputFile] = [], root: String? = nil) {
        self.allowOverwrite = allowOverwrite
        self.protected = Set(inputs.map(\.identity))
        self.root = root.map(OutputSet.trimmed)
    }

    deinit {
        for entry in created { wsg_unregister(entry.slot) }
        guard !committed else { return }
        files.removeAll()  // their temporary files go first
        for entry in created.reversed() { unlinkat(entry.parent.descriptor, entry.name, AT_REMOVEDIR) }
    }

    static func trimmed(_ path: String) -> String {
        var path = path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        return path
    }

    static func baseName(_ path: String) -> String {
        trimmed(path).split(separator: "/").last.map(String.init) ?? path
    }

    /// The open directory `path`: below `root` walked with O_NOFOLLOW and created as needed.
    func directory(_ path: String) throws -> OutputDirectory {
        let path = OutputSet.trimmed(path)
        if let known = directories[path] { return known }
        guard let root, path == root || path.hasPrefix(root == "/" ? "/" : root + "/") else {
            let opened = try OutputDirectory(path: path)
            directories[path] = opened
            return opened
        }
        var current: OutputDirectory
        if let known = directories[root] {
            current = known
        } else {
            current = try OutputDirectory(path: root)
            directories[root] = current
        }
        var walked = root
        for component in path.dropFirst(root.count).split(separator: "/").map(String.init) where component != "." {
            if component == ".." {
                throw WSurgeryError.cannotCreateOutput(path: path, reason: "it climbs out of \(option("out-dir")) \(root) through '..'")
            }
            walked += (walked == "/" ? "" : "/") + component
            if let known = directories[walked] {
                current = known
                continue
            }
            current = try current.subdirectory(component, creating: true) { parent, name in
                created.append((parent, name, wsg_register(parent.stablePath(name), 1)))
            }
            directories[walked] = current
        }
        return current
    }

    /// Refuses a target that is one of the inputs, or that exists when overwriting is not allowed.
    public func checkTarget(_ path: String) throws {
        try checkTarget(path, in: directory(OutputFile.directory(of: path)))
    }

    private func checkTarget(_ path: String, in parent: OutputDirectory) throws {
        let name = OutputSet.baseName(path)
        guard let identity = parent.identity(of: name) else {
            // A dangling symlink is still a file that would be replaced.
            if parent.status(of: name, following: false) != nil, !allowOverwrite { throw WSurgeryError.outputExists(path: path) }
            return
        }
        if protected.contains(identity) { throw WSurgeryError.outputIsInput(path: path) }
        if !allowOverwrite { throw WSurgeryError.outputExists(path: path) }
    }

    /// Starts a new file of the set.
    public func create(_ path: String) throws -> OutputFile {
        let parent = try directory(OutputFile.directory(of: path))
        try checkTarget(path, in: parent)
        if files.contains(where: { $0.path == path }) {
            throw WSurgeryError.cannotCreateOutput(path: path, reason: "written twice by one command")
        }
        let file = try OutputFile(path: path, in: parent)
        files.append(file)
        return file
    }

    /// Creates the output folder `path` when it does not exist (its parent must, unless below `root`); it
    /// is removed again if the set is never committed.
    public func makeDirectory(_ path: String) throws {
        let path = OutputSet.trimmed(path)
        let parent = try directory(OutputFile.directory(of: path))
        let name = OutputSet.baseName(path)
        if let info = parent.status(of: name, following: true) {
            if (info.st_mode & S_IFMT) == S_IFDIR { return }
            throw WSurgeryError.cannotCreateOutput(path: path, reason: "a file of that name exists")
        }
        if mkdirat(parent.descriptor, name, 0o777) != 0 { throw WSurgeryError.cannotCreateOutput(path: path, reason: Errno.current.message) }
        created.append((parent, name, wsg_register(parent.stablePath(name), 1)))
    }

    /// Whether `path` exists (through the set's open directories; a missing directory: no).
    public func exists(_ path: String) -> Bool {
        guard let parent = try? directory(OutputFile.directory(of: path)) else { return false }
        return parent.status(of: OutputSet.baseName(path), following: false) != nil
    }

    /// The bytes of the existing file `path` when it is a regular file of at most `limit` bytes (read
    /// through the set's open directories, never through a symlink).
    public func existingBytes(_ path: String, limit: Int) -> [UInt8]? {
        guard let parent = try? directory(OutputFile.directory(of: path)) else { return nil }
        return parent.readSmallFile(OutputSet.baseName(path), limit: limit)
    }

    /// Claims the output `path` (what the command was asked to write) for this set: the leftovers of a
    /// writer of it that was killed while committing are removed first (its journal names them), and a
    /// writer that is committing it now makes this one fail (73).
    public func claim(_ path: String) throws {
        claimed = path
        let (parent, name) = try journalLocation()
        guard let bytes = parent.readSmallFile(name) else { return }
        let journal = try? JSONParser.parse(String(decoding: bytes, as: UTF8.self))
        if let pid = journal?["pid"]?.intValue, let started = journal?["started"]?.stringValue,
            pid != Int(getpid()), OutputSet.startTime(of: Int32(pid)) == started
        {
            throw WSurgeryError.cannotCreateOutput(path: path, reason: "another wsurgery process (pid \(pid)) is committing it now")
        }
        OutputSet.recover(journal, in: parent)
        unlinkat(parent.descriptor, name, 0)
    }

    /// Commits `path` after every other file of the set: the file a re-run looks at to tell whether the
    /// output is complete (a folder's single `model.safetensors`).
    public func commitLast(_ path: String) { lastPath = path }

    /// Removes `path`, a file of the earlier output this one replaces, when the set is committed (only
    /// with `allowOverwrite`).
    public func removeOnCommit(_ path: String) {
        if allowOverwrite { stale.append(path) }
    }

    /// Removes the leftovers of a dead writer of `output` (a `run` worker that was killed), if any.
    public static func recoverAbandoned(_ output: String) {
        let set = OutputSet()
        try? set.claim(output)
    }

    private func journalLocation() throws -> (OutputDirectory, String) {
        let output = OutputSet.trimmed(claimed!)
        return (try directory(OutputFile.directory(of: output)), "." + OutputSet.baseName(output) + ".wsurgery-set")
    }

    /// Undoes what a dead writer's journal says it committed: the files that are still the ones it
    /// wrote (same device and inode), unless its last file (the index) was committed too, and then the
    /// directories it created, when empty.
    private static func recover(_ journal: JSONValue?, in parent: OutputDirectory) {
        guard let journal, let files = journal["files"]?.arrayValue else { return }
        func identity(_ entry: JSONValue) -> FileIdentity? {
            guard let device = entry["device"]?.stringValue.flatMap(UInt64.init), let inode = entry["inode"]?.stringValue.flatMap(UInt64.init)
            else { return nil }
            return FileIdentity(device: device, inode: inode)
        }
        func locate(_ relative: String) -> (OutputDirectory, String)? {
            var directory = parent
            let parts = relative.split(separator: "/").map(String.init)
            guard !parts.isEmpty, !parts.contains(".."), !parts.contains(".") else { return nil }
            for part in parts.dropLast() {
                guard let next = try? directory.subdirectory(part, creating: false, created: { _, _ in }) else { return nil }
                directory = next
            }
            return (directory, parts.last!)
        }
        if let last = files.last, let path = last["path"]?.stringValue, let (directory, name) = locate(path),
            let recorded = identity(last), directory.identity(of: name) == recorded
        {
            return  // the set was complete: only the journal was left
        }
        for entry in files {
            guard let path = entry["path"]?.stringValue, let (directory, name) = locate(path) else { continue }
            directory.unlink(name, ifStill: identity(entry))
        }
        for path in (journal["directories"]?.arrayValue ?? []).compactMap(\.stringValue).reversed() {
            guard let (directory, name) = locate(path) else { continue }
            unlinkat(directory.descriptor, name, AT_REMOVEDIR)
        }
    }

    /// When process `pid` started (field 22 of /proc/PID/stat), which tells it from a later process that
    /// got the same pid; nil when it does not run.
    static func startTime(of pid: Int32) -> String? {
        guard pid > 0, let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? String(fields[19]) : nil
    }

    /// The path of `file` relative to the journal's directory, nil when it lies elsewhere.
    private func relativeToJournal(_ path: String, journalDirectory: String) -> String? {
        let path = OutputSet.trimmed(path)
        let prefix = journalDirectory == "/" ? "/" : journalDirectory + "/"
        if journalDirectory == ".", !path.hasPrefix("/") { return path.hasPrefix("./") ? String(path.dropFirst(2)) : path }
        return path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : nil
    }

    /// Writes the journal of a claimed set of several files; returns its directory, name and guard slot.
    private func writeJournal(_ files: [OutputFile]) throws -> (OutputDirectory, String, Int32)? {
        guard claimed != nil, files.count > 1 else { return nil }
        let (parent, name) = try journalLocation()
        var entries: [JSONValue] = []
        for file in files {
            guard let relative = relativeToJournal(file.path, journalDirectory: parent.path), let identity = file.pendingIdentity() else { continue }
            entries.append(
                .object([("path", .string(relative)), ("device", .string(String(identity.device))), ("inode", .string(String(identity.inode)))]))
        }
        let madeDirectories = created.compactMap { entry in relativeToJournal(entry.parent.path + "/" + entry.name, journalDirectory: parent.path) }
        let journal = JSONValue.object([
            ("writer", .string("wsurgery")), ("pid", .number(String(getpid()))), ("started", .string(OutputSet.startTime(of: getpid()) ?? "")),
            ("files", .array(entries)), ("directories", .array(madeDirectories.map { .string($0) })),
        ])
        let file = try OutputFile(path: parent.path + "/" + name, in: parent)
        try file.write(Array((journal.serialized(.compact) + "\n").utf8))
        let identity = file.pendingIdentity()
        let slot = identity.map { wsg_register_identity(parent.stablePath(name), $0.device, $0.inode) } ?? -1
        do { try file.commit(replacing: false) } catch {
            wsg_unregister(slot)
            if case WSurgeryError.outputExists = error {
                throw WSurgeryError.cannotCreateOutput(path: claimed!, reason: "another wsurgery process is committing it now")
            }
            throw error
        }
        return (parent, name, slot)
    }

    /// Commits every file; the claimed output itself (a weights file with a `config.json` beside it) or
    /// else the last one created (by convention the index) appears last, so that the file a re-run looks
    /// at to tell a finished output exists only once the whole set does. Without
    /// `allowOverwrite` a file another writer created meanwhile is not replaced: the commit fails (73)
    /// and the files of this set already given their names are removed again, so the loser of a race
    /// leaves nothing (the winner's set is whole). With `allowOverwrite` an existing last file (the old
    /// index) is removed before the others are replaced, so old and new files never pass for one set.
    public func commit() throws {
        // Test-only: wait here, so a test can make another writer's output appear in this window.
        OutputSet.testPause("WSURGERY_TEST_PAUSE_BEFORE_COMMIT")
        let last = lastPath ?? claimed
        let files = self.files.filter { $0.path != last } + self.files.filter { $0.path == last }
        let journal = try writeJournal(files)
        for path in stale where !self.files.contains(where: { $0.path == path }) {
            if let parent = try? directory(OutputFile.directory(of: path)) {
                let name = OutputSet.baseName(path)
                parent.unlink(name, ifStill: parent.identity(of: name))
            }
        }
        if allowOverwrite, files.count > 1, let last = files.last {
            last.parent.unlink(last.name, ifStill: last.parent.identity(of: last.name))
        }
        var done: [(OutputFile, FileIdentity?, Int32)] = []
        func forget() {
            for entry in done { wsg_unregister(entry.2) }
            if let journal {
                unlinkat(journal.0.descriptor, journal.1, 0)
                wsg_unregister(journal.2)
            }
        }
        do {
            for (i, file) in files.enumerated() {
                let identity = file.pendingIdentity()
                // Until the set is whole, a terminating signal removes what was committed: registered
                // before the name is taken, with the file's identity (so never another writer's file).
                var slot: Int32 = -1
                if journal != nil, let identity {
                    slot = wsg_register_identity(file.parent.stablePath(file.name), identity.device, identity.inode)
                }
                do { try file.commit(replacing: allowOverwrite) } catch {
                    wsg_unregister(slot)
                    throw error
                }
                done.append((file, identity, slot))
                // Test-only: wait between two files, so a test can kill the writer there.
                if i == 0, files.count > 1 { OutputSet.testPause("WSURGERY_TEST_PAUSE_BETWEEN_COMMITS") }
            }
        } catch {
            for (file, identity, _) in done { file.parent.unlink(file.name, ifStill: identity) }
            forget()
            throw error
        }
        forget()
        committed = true
    }

    private static func testPause(_ variable: String) {
        if let pause = ProcessInfo.processInfo.environment[variable].flatMap(Double.init), pause > 0, pause < 60 {
            usleep(UInt32(pause * 1_000_000))
        }
    }
}
