import Foundation

/// One input of a batch run and where its output goes.
public struct BatchJob: Sendable, Equatable {
    /// The input checkpoint.
    public var input: String
    /// Its output.
    public var output: String
    /// Why this input cannot be written as `output` (its name asks for a format that cannot be
    /// written, such as a pickle): the input fails alone, the others run.
    public var refusal: WSurgeryError?

    /// A job.
    public init(input: String, output: String, refusal: WSurgeryError? = nil) {
        self.input = input
        self.output = output
        self.refusal = refusal
    }
}

/// What happened to one input.
public struct BatchOutcome: Sendable, Equatable {
    /// How an input ended.
    public enum Status: String, Sendable {
        case written
        /// Asked to skip existing outputs, and the output was already there.
        case skipped
        /// The output exists and its provenance says it is what this run would write (same passes and
        /// options, same input digest): a re-submitted array task resumes without redoing it.
        case upToDate = "up-to-date"
        /// A dry run: the passes ran, nothing was written.
        case checked = "dry-run"
        case failed

        /// The statuses in the order summaries list them.
        public static let reported: [Status] = [.written, .upToDate, .checked, .skipped, .failed]
    }

    /// The input.
    public var input: String
    /// Its output.
    public var output: String
    /// How it ended.
    public var status: Status
    /// Each pass with its options (`replace-head (classes=5, seed=1)`).
    public var passes: [String] = []
    /// `layer/tensor` names whose shape or values a pass changed, in pass order.
    public var tensorsChanged: [String] = []
    /// What the reader and writer noted (the entry a training checkpoint keeps its weights under,
    /// pickle globals not called, files not carried).
    public var notes: [String] = []
    /// Seconds spent on it.
    public var seconds: Double = 0
    /// The error, when it failed.
    public var error: String?
    /// The error's category, for the exit code.
    public var errorCategory: FailureCategory?

    /// An outcome.
    public init(input: String, output: String, status: Status) {
        self.input = input
        self.output = output
        self.status = status
    }

    /// A failure outcome for `error`.
    public static func failure(_ job: BatchJob, _ error: any Error, seconds: Double = 0) -> BatchOutcome {
        var outcome = BatchOutcome(input: job.input, output: job.output, status: .failed)
        outcome.seconds = seconds
        if let error = error as? WSurgeryError {
            outcome.error = error.description
            outcome.errorCategory = error.category
        } else {
            outcome.error = "\(error)"
            outcome.errorCategory = .io
        }
        return outcome
    }

    /// The report entry (the JSON report), also what a worker process prints for its parent.
    public var json: JSONValue {
        .object([
            ("input", .string(input)),
            ("output", .string(output)),
            ("status", .string(status.rawValue)),
            ("passes", .array(passes.map { .string($0) })),
            ("tensors_changed", .array(tensorsChanged.map { .string($0) })),
            ("notes", .array(notes.map { .string($0) })),
            ("seconds", .number(String(format: "%.3f", seconds))),
            ("error", error.map { .string($0) } ?? .null),
            ("error_category", errorCategory.map { .string($0.rawValue) } ?? .null),
        ])
    }

    /// An outcome read back from `json` (a worker's report); nil when malformed.
    public init?(json: JSONValue) {
        guard let input = json["input"]?.stringValue, let output = json["output"]?.stringValue,
            let status = json["status"]?.stringValue.flatMap(Status.init(rawValue:))
        else { return nil }
        self.init(input: input, output: output, status: status)
        if case .array(let items)? = json["passes"] { passes = items.compactMap(\.stringValue) }
        if case .array(let items)? = json["tensors_changed"] { tensorsChanged = items.compactMap(\.stringValue) }
        if case .array(let items)? = json["notes"] { notes = items.compactMap(\.stringValue) }
        seconds = json["seconds"]?.doubleValue ?? 0
        error = json["error"]?.stringValue
        errorCategory = json["error_category"]?.stringValue.flatMap(FailureCategory.init(rawValue:))
    }
}

/// A batch run: the recipe's passes over many inputs, each written atomically to its own output.
/// One failing input does not stop the others.
public enum BatchRun {
    /// Options of a run.
    public struct Options: Sendable {
        /// Where outputs go.
        public var outDir: String
        /// Skip inputs whose output exists.
        public var skipExisting = false
        /// Run the passes, write nothing.
        public var dryRun = false
        /// Replace existing outputs.
        public var force = false
        /// Shard safetensors outputs at this many bytes.
        public var shardSize: UInt64?
        /// How the provenance record fingerprints each input.
        public var digest: DigestAlgorithm = .xxh128

        /// Options.
        public init(
            outDir: String, skipExisting: Bool = false, dryRun: Bool = false, force: Bool = false, shardSize: UInt64? = nil,
            digest: DigestAlgorithm = .xxh128
        ) {
            self.digest = digest
            self.outDir = outDir
            self.skipExisting = skipExisting
            self.dryRun = dryRun
            self.force = force
            self.shardSize = shardSize
        }
    }

    /// Pairs every input with its output and checks them all before any file is read: the output
    /// format of every name, no two inputs writing one output, no output that is an input.
    public static func plan(inputs: [String], pattern: OutputPattern, options: Options) throws -> [BatchJob] {
        let outDir = options.outDir.hasSuffix("/") && options.outDir.count > 1 ? String(options.outDir.dropLast()) : options.outDir
        var jobs: [BatchJob] = []
        var owners: [String: String] = [:]
        for input in inputs {
            let relative = pattern.relativeOutput(for: input)
            try OutputPattern.checkContained(relative, in: outDir, input: input)
            let output = outDir + "/" + relative
            // An output name no writer takes: when its extension comes from the input (`{stem}{ext}` of a
            // `.pth`: a pickle), that input fails alone; when from the pattern (`{stem}.txt`), the plan.
            do { _ = try Checkpoint.outputFormat(for: output, shardSize: options.shardSize) } catch let error as WSurgeryError {
                let reason = "'\(pattern.text)' gives \(output) for \(input): \(error.description)"
                let refusal = WSurgeryError.invalidOption(option: "output", reason: reason)
                guard pattern.text.contains("{name}") || pattern.text.contains("{ext}") else { throw refusal }
                jobs.append(BatchJob(input: input, output: output, refusal: refusal))
                continue
            }
            let key = URL(fileURLWithPath: output).standardizedFileURL.path
            if let other = owners[key] {
                let hint =
                    separatingPattern(for: pattern, inputs: inputs, options: options).map {
                        "use \(option("output")) '\($0)', which names each apart"
                    }
                    ?? "no pattern from {parent} and {name} names them apart: rename one of them, or run them separately"
                throw WSurgeryError.invalidOption(
                    option: "output", reason: "'\(pattern.text)' names the same output \(output) for \(other) and \(input); \(hint)")
            }
            if key == URL(fileURLWithPath: input).standardizedFileURL.path { throw WSurgeryError.outputIsInput(path: output) }
            owners[key] = input
            jobs.append(BatchJob(input: input, output: output))
        }
        return jobs
    }

    /// A pattern like `pattern` that gives every input its own output, with a name every writer takes:
    /// the input's directory in front (`{parent}/...`, then `{parent}-...`), or its whole file name for
    /// its stem (`{name}.safetensors`). Each candidate is checked by planning it, so the hint works.
    static func separatingPattern(for pattern: OutputPattern, inputs: [String], options: Options) -> String? {
        let text = pattern.text
        var candidates: [String] = []
        if !text.contains("{parent}") {
            candidates.append("{parent}/" + text)
            if text.contains("{stem}") { candidates.append(text.replacingOccurrences(of: "{stem}", with: "{parent}-{stem}")) }
        }
        if text.contains("{stem}") { candidates.append(text.replacingOccurrences(of: "{stem}", with: "{name}")) }
        if text.contains("{stem}") && !text.contains("{parent}") {
            candidates.append("{parent}/" + text.replacingOccurrences(of: "{stem}", with: "{name}"))
        }
        for candidate in candidates {
            guard let next = try? OutputPattern(candidate), let jobs = try? plan(inputs: inputs, pattern: next, options: options),
                jobs.allSatisfy({ $0.refusal == nil })
            else { continue }
            return candidate
        }
        return nil
    }

    /// Runs the passes on one input in this process; any failure becomes the outcome's error.
    public static func perform(_ job: BatchJob, passes: [any GraphPass], options: Options) -> BatchOutcome {
        if let refusal = job.refusal { return .failure(job, refusal) }
        let start = Date()
        if !options.dryRun, outputExists(job.output, shardSize: options.shardSize) {
            if options.skipExisting { return BatchOutcome(input: job.input, output: job.output, status: .skipped) }
            if !options.force, Pipeline.isUpToDate(passes, input: job.input, output: job.output, shardSize: options.shardSize) {
                var outcome = BatchOutcome(input: job.input, output: job.output, status: .upToDate)
                outcome.seconds = Date().timeIntervalSince(start)
                return outcome
            }
        }
        do {
            let outDir = options.outDir.hasSuffix("/") && options.outDir.count > 1 ? String(options.outDir.dropLast()) : options.outDir
            // Checked again just before writing: a symlink may have appeared since the plan.
            if !options.dryRun, job.output.hasPrefix(outDir + "/") {
                try OutputPattern.checkContained(String(job.output.dropFirst(outDir.count + 1)), in: outDir, input: job.input)
            }
            // The output's directories are made by the writer, walked from --out-dir with O_NOFOLLOW (a
            // symlink swapped in meanwhile is refused, never followed) and removed again if the job fails.
            let result = try Pipeline.run(
                passes, input: job.input, output: options.dryRun ? nil : job.output,
                options: .init(force: options.force, shardSize: options.shardSize, digest: options.digest, root: outDir))
            var outcome = BatchOutcome(input: job.input, output: job.output, status: options.dryRun ? .checked : .written)
            outcome.passes = result.reports.map { report in
                report.pass + (report.options.isEmpty ? "" : " (" + report.options.map { "\($0.0)=\($0.1)" }.joined(separator: ", ") + ")")
            }
            outcome.tensorsChanged = result.reports.flatMap { $0.changes.map(\.qualifiedName) }
            outcome.notes = result.readerNotes + result.writerNotes
            outcome.seconds = Date().timeIntervalSince(start)
            return outcome
        } catch {
            return .failure(job, error, seconds: Date().timeIntervalSince(start))
        }
    }

    /// Whether an output is complete: the file, or for sharded safetensors the index (written last), or
    /// a folder's single `model.safetensors`.
    static func outputExists(_ output: String, shardSize: UInt64?) -> Bool {
        if (try? Checkpoint.outputFormat(for: output, shardSize: shardSize)) == .shardedSafetensors {
            return FileManager.default.fileExists(atPath: ShardedSafetensors.completionMarker(for: output))
        }
        return FileManager.default.fileExists(atPath: output)
    }

    /// Runs `perform` over the jobs with at most `parallelism` at once; `finished` is called (serially)
    /// after each job with the numbers done and failed so far. Outcomes come back in job order.
    public static func run(
        _ jobs: [BatchJob], parallelism: Int, perform: @escaping @Sendable (BatchJob) -> BatchOutcome,
        finished: @escaping @Sendable (_ done: Int, _ failed: Int) -> Void
    ) -> [BatchOutcome] {
        let state = SharedState(count: jobs.count)
        let workers = max(1, min(parallelism, jobs.count))
        if workers == 1 {
            for (i, job) in jobs.enumerated() { state.finish(i, perform(job), finished) }
            return state.results.map { $0! }
        }
        let group = DispatchGroup()
        for _ in 0..<workers {
            group.enter()
            Thread.detachNewThread {
                while let i = state.next() { state.finish(i, perform(jobs[i]), finished) }
                group.leave()
            }
        }
        group.wait()
        return state.results.map { $0! }
    }

    /// The job queue and results shared by worker threads.
    private final class SharedState: @unchecked Sendable {
        private let lock = NSLock()
        private var nextIndex = 0
        private var done = 0
        private var failed = 0
        private let count: Int
        var results: [BatchOutcome?]

        init(count: Int) {
            self.count = count
            results = Array(repeating: nil, count: count)
        }

        func next() -> Int? {
            lock.lock()
            defer { lock.unlock() }
            guard nextIndex < count else { return nil }
            nextIndex += 1
            return nextIndex - 1
        }

        func finish(_ index: Int, _ outcome: BatchOutcome, _ finished: (Int, Int) -> Void) {
            lock.lock()
            defer { lock.unlock() }
            results[index] = outcome
            done += 1
            if outcome.status == .failed { failed += 1 }
            finished(done, failed)
        }
    }
}

/// The outcomes of a batch run, as the summary table (stdout) and the JSON report.
public struct BatchReport: Sendable {
    /// The recipe file, or nil for a chain of steps.
    public var recipe: String?
    /// The steps as text.
    public var steps: [String]
    /// Where outputs went.
    public var outDir: String
    /// The slice of inputs this run took.
    public var shard: Shard?
    /// Every input's outcome, in input order.
    public var outcomes: [BatchOutcome]
    /// The number of inputs before slicing (all slices together).
    public var inputsTotal: Int?
    /// When the run ended.
    public var finished = Date()

    /// A report.
    public init(recipe: String?, steps: [String], outDir: String, shard: Shard?, outcomes: [BatchOutcome], inputsTotal: Int? = nil) {
        self.recipe = recipe
        self.steps = steps
        self.outDir = outDir
        self.shard = shard
        self.outcomes = outcomes
        self.inputsTotal = inputsTotal
    }

    /// How many inputs ended with `status`.
    public func count(_ status: BatchOutcome.Status) -> Int { outcomes.filter { $0.status == status }.count }

    /// The first failure's category (the exit code), or nil when nothing failed.
    public var failureCategory: FailureCategory? {
        outcomes.first { $0.status == .failed }.map { $0.errorCategory ?? .io }
    }

    /// `4 input(s), 3 written, 1 failed`.
    public var summaryLine: String {
        var parts = ["\(outcomes.count) input(s)"]
        for status in BatchOutcome.Status.reported where count(status) > 0 {
            parts.append("\(count(status)) \(status == .checked ? "checked (dry run)" : status.rawValue)")
        }
        return parts.joined(separator: ", ")
    }

    /// One row per input and the summary line.
    public var table: String {
        var rows: [[String]] = [["input", "status", "output / error", "seconds"]]
        for outcome in outcomes {
            let detail = outcome.status == .failed ? (outcome.error ?? "failed") : outcome.output
            rows.append([outcome.input, outcome.status.rawValue, detail, String(format: "%.2f", outcome.seconds)])
        }
        return (TextTable.render(rows, rightAligned: [3]) + [summaryLine]).joined(separator: "\n")
    }

    /// The report as JSON.
    public var json: JSONValue {
        .object([
            ("tool", .string("wsurgery \(Provenance.toolVersion)")),
            ("recipe", recipe.map { .string($0) } ?? .null),
            ("steps", .array(steps.map { .string($0) })),
            ("out_dir", .string(outDir)),
            ("shard", shard.map { .string($0.description) } ?? .null),
            ("shard_source", shard.map { .string($0.source) } ?? .null),
            ("inputs_total", inputsTotal.map { .int($0) } ?? .null),
            ("finished", .string(ISO8601DateFormatter().string(from: finished))),
            ("counts", .object(BatchOutcome.Status.reported.map { ($0.rawValue, .int(count($0))) })),
            ("files", .array(outcomes.map(\.json))),
        ])
    }
}
