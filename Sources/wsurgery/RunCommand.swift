import ArgumentParser
import Foundation
import WSurgery

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply a recipe (or a chain of --pass steps) to many checkpoints.",
        discussion: """
            A recipe is YAML or JSON: 'passes:' lists steps, each a command with its options as on the command line \
            (long flag without dashes), and 'output:' names each output inside --out-dir from the input \
            ({stem}, {ext}, {name}, {parent}); its extension picks the format. Without a recipe file, chain steps with \
            --pass 'replace-head classes=5 seed=1' (then every argument is an input) and name outputs with --output.
            INPUTs are files, directories (searched recursively; a directory with a *.safetensors.index.json is one \
            checkpoint) or glob patterns. Every output is written atomically; one failing input does not stop the \
            others; the exit code is that of the first failure (see the README), 0 when none failed.

            Examples:
            \(ExampleLines.text([
                "wsurgery run recipe.yaml runs/ --out-dir out/ --jobs 2 --report report.json",
                "wsurgery run --pass collapse-channels --pass 'replace-head classes=5' in/ --out-dir out/",
                "wsurgery run recipe.yaml inputs/ --out-dir out/ --shard auto --report reports/task-$SLURM_ARRAY_TASK_ID.json",
                "wsurgery run --merge-reports reports/",
            ]))

            \(ExitCodeHelp.text) With --merge-reports: the first failure's code, 66 when a slice has no report.
            """
    )

    @Argument(help: "The recipe file, then the inputs (with --pass: only inputs).")
    var arguments: [String] = []

    @Option(name: .customLong("pass"), help: "A step, 'COMMAND key=value ...' (repeatable; replaces the recipe file).")
    var steps: [String] = []

    @Option(help: "The directory outputs go to (created if needed).")
    var outDir: String?

    @Option(help: "The output name pattern (overrides the recipe's 'output'; default {name}).")
    var output: String?

    @Option(help: "Inputs processed at once, each in its own process.")
    var jobs: Int = 1

    @Option(
        help: """
            Take the I-th of N round-robin slices of the sorted input list, I from 0; 'auto' takes the slice from the \
            scheduler's environment (a Slurm array task, a Kubernetes Indexed Job, GNU parallel).
            """)
    var shard: String?

    @Option(help: "With --shard auto: the number of slices (a Kubernetes Indexed Job's completions; overrides what the environment says).")
    var shardCount: Int?

    @Option(help: "Join the JSON reports (--report) of an array job's tasks found in DIR into one summary, failures first.")
    var mergeReports: String?

    @Flag(help: "Skip inputs whose output already exists (re-runs resume).")
    var skipExisting = false

    @Option(help: "Write a JSON report (per file: input, output, passes, tensors changed, time, error).")
    var report: String?

    @Flag(help: "Run the passes, write nothing.")
    var dryRun = false

    @Flag(help: "Replace outputs that exist.")
    var force = false

    @Option(help: "How the provenance record fingerprints each input: xxh128 ('xxhsum -H2') or sha256 ('sha256sum').")
    var digest: DigestAlgorithm = .xxh128

    @Flag(help: "Print the report as JSON instead of a table.")
    var json = false

    @Flag(name: [.short, .long], help: "No progress line.")
    var quiet = false

    /// Set by the parent of `--jobs N` for its workers: print each outcome as one JSON line.
    @Flag(help: .hidden)
    var worker = false

    func run() throws {
        try reportingFailures {
            if let mergeReports { return try merge(mergeReports) }
            guard let outDir else { throw WSurgeryError.invalidArguments(reason: "--out-dir: give the directory outputs go to") }
            let (recipe, inputArguments) = try loadRecipe()
            let patternText = output ?? recipe.output ?? "{name}"
            let patternError = { (error: WSurgeryError) -> WSurgeryError in
                guard output == nil, let location = recipe.outputLocation, case let .invalidOption("output", reason) = error else { return error }
                return .invalidRecipe(location: location.description, key: "output", reason: reason)
            }
            let passes: [any GraphPass]
            let pattern: OutputPattern
            do {
                pattern = try OutputPattern(patternText)
                passes = try recipe.passes(output: patternText)
            } catch let error as WSurgeryError { throw patternError(error) }
            guard jobs >= 1 else { throw WSurgeryError.invalidOption(option: "jobs", reason: "must be at least 1") }
            let shard = try resolvedShard()
            guard !inputArguments.isEmpty else { throw WSurgeryError.invalidArguments(reason: "INPUT: no input given") }
            let inputs = try InputList.expand(inputArguments)
            let options = BatchRun.Options(
                outDir: outDir, skipExisting: skipExisting, dryRun: dryRun, force: force, shardSize: recipe.shardSize, digest: digest)
            // The whole input list is planned before slicing: every task refuses the same clash up front.
            let fullPlan: [BatchJob]
            do { fullPlan = try BatchRun.plan(inputs: inputs, pattern: pattern, options: options) } catch let error as WSurgeryError {
                throw patternError(error)
            }
            let plan = shard?.select(fullPlan) ?? fullPlan
            if !dryRun {
                do { try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true) } catch {
                    throw WSurgeryError.cannotCreateOutput(path: outDir, reason: "cannot create the output directory")
                }
            }

            if worker {
                // Stopped with its parent: a worker never finishes an output after `run` itself was stopped.
                ProcessGuard.install()
                ProcessGuard.dieWithParent(Int32(ProcessInfo.processInfo.environment["WSURGERY_WORKER_PARENT"] ?? "") ?? 0)
                for job in plan { print(BatchRun.perform(job, passes: passes, options: options).json.serialized(.compact)) }
                return
            }
            let progress = ProgressLine(quiet: quiet)
            let perform: @Sendable (BatchJob) -> BatchOutcome
            if jobs > 1 {
                let command = workerArguments()
                perform = { job in
                    job.refusal != nil ? BatchRun.perform(job, passes: passes, options: options) : WorkerProcess.run(job, arguments: command)
                }
            } else {
                perform = { job in BatchRun.perform(job, passes: passes, options: options) }
            }
            progress.files(done: 0, total: plan.count, failed: 0)
            let outcomes = BatchRun.run(plan, parallelism: jobs, perform: perform) { done, failed in
                progress.files(done: done, total: plan.count, failed: failed)
            }
            progress.finish()
            let batch = BatchReport(
                recipe: recipe.path, steps: recipe.steps.map(\.text), outDir: outDir, shard: shard, outcomes: outcomes, inputsTotal: fullPlan.count)
            if let report { try write(batch.json, toReport: report) }
            FileHandleOutput.standardOutput(json ? batch.json.serialized(.pretty) : batch.table)
            if let category = batch.failureCategory { throw ExitStatus.failure(category).exitCode }
        }
    }

    /// The slice this task takes: `--shard I/N`, or with `--shard auto` the scheduler's.
    func resolvedShard() throws -> Shard? {
        guard let text = shard else {
            if shardCount != nil { throw WSurgeryError.invalidOption(option: "shard-count", reason: "goes with --shard auto") }
            return nil
        }
        if text == "auto" { return try Shard.fromEnvironment(ProcessInfo.processInfo.environment, count: shardCount) }
        if shardCount != nil { throw WSurgeryError.invalidOption(option: "shard-count", reason: "goes with --shard auto (I/N gives N already)") }
        return try Shard(parsing: text)
    }

    /// `--merge-reports DIR`: prints (and with --report writes) the joined reports; exits with the first
    /// failure's code, or 66 when a slice has no report.
    func merge(_ directory: String) throws {
        if !arguments.isEmpty || !steps.isEmpty || shard != nil || outDir != nil {
            throw WSurgeryError.invalidArguments(reason: "--merge-reports takes only --report, --json and --quiet")
        }
        let merged = try MergedReport.merge(directory: directory)
        if let report { try write(merged.json, toReport: report) }
        FileHandleOutput.standardOutput(json ? merged.json.serialized(.pretty) : merged.table)
        if let category = merged.failureCategory { throw ExitStatus.failure(category).exitCode }
        if let gap = merged.gaps.first { throw WSurgeryError.cannotOpen(path: directory, reason: gap) }
    }

    /// Writes a JSON report atomically, creating its directory (array tasks share one `reports/`).
    func write(_ json: JSONValue, toReport path: String) throws {
        try? FileManager.default.createDirectory(atPath: OutputFile.directory(of: path), withIntermediateDirectories: true)
        let file = try OutputFile(path: path)
        try file.write(Array((json.serialized(.pretty) + "\n").utf8))
        try file.commit()
    }

    /// The recipe (from the file, or from --pass) and the remaining arguments, the inputs.
    func loadRecipe() throws -> (Recipe, [String]) {
        if !steps.isEmpty {
            let parsed = try steps.enumerated().map { try RecipeStep.parse(passArgument: $0.element, position: $0.offset + 1) }
            return (Recipe(steps: parsed), arguments)
        }
        guard let path = arguments.first else {
            throw WSurgeryError.invalidArguments(reason: "RECIPE: give a recipe file, or steps with --pass")
        }
        return (try Recipe.load(path: path), Array(arguments.dropFirst()))
    }

    /// The arguments a worker process gets: this command for one input (appended by the caller).
    func workerArguments() -> [String] {
        var words = ["run", "--worker", "--quiet", "--out-dir", outDir ?? "."]
        if steps.isEmpty, let recipe = arguments.first { words.append(recipe) }
        for step in steps { words += ["--pass", step] }
        if let output { words += ["--output", output] }
        if skipExisting { words.append("--skip-existing") }
        if dryRun { words.append("--dry-run") }
        if force { words.append("--force") }
        words += ["--digest", digest.rawValue]
        return words
    }
}

/// One input run in a child process (`wsurgery run --worker ... -- INPUT`): HDF5 serialises its calls
/// inside a process, so processes are what runs Keras files in parallel, and a crash stays one file's
/// failure.
enum WorkerProcess {
    static let executable: String = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]

    static func run(_ job: BatchJob, arguments: [String]) -> BatchOutcome {
        let start = Date()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments + ["--", job.input]
        process.environment = ProcessInfo.processInfo.environment.merging(["WSURGERY_WORKER_PARENT": String(getpid())]) { $1 }
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        do { try process.run() } catch { return .failure(job, WSurgeryError.workerFailed(input: job.input, reason: "could not start: \(error)")) }
        let errors = Collected()
        let readErrors = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            errors.data = stderr.fileHandleForReading.readDataToEndOfFile()
            readErrors.signal()
        }
        let data = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        readErrors.wait()
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n")
        if let last = lines.last, let json = try? JSONParser.parse(String(last)), let outcome = BatchOutcome(json: json) {
            return outcome
        }
        // The worker died before reporting: say how, and remove what its atomic writes left behind.
        OutputSet.recoverAbandoned(job.output)
        OutputFile.removeLeftovers(for: job.output)
        let how =
            process.terminationReason == .uncaughtSignal
            ? "was killed by signal \(process.terminationStatus)" : "exited with status \(process.terminationStatus) without a report"
        let lastError = String(decoding: errors.data, as: UTF8.self).split(separator: "\n").last.map { ": \($0)" } ?? ""
        return .failure(job, WSurgeryError.workerFailed(input: job.input, reason: how + lastError), seconds: Date().timeIntervalSince(start))
    }

    private final class Collected: @unchecked Sendable { var data = Data() }
}
