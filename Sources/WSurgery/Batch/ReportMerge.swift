import Foundation

/// The JSON reports of the tasks of one array job joined into one summary (`run --merge-reports DIR`):
/// every input once with its outcome, the failures first, and the slices no report covers.
public struct MergedReport: Sendable {
    /// The report files read, in name order.
    public var reports: [String]
    /// The recipe, steps and output directory the reports share.
    public var recipe: String?
    /// The steps as text.
    public var steps: [String]
    /// Where outputs went.
    public var outDir: String
    /// Every input once: failures first, then by input.
    public var outcomes: [BatchOutcome]
    /// The number of slices the tasks were cut into, when they were sliced.
    public var sliceCount: Int?
    /// Slices no report covers.
    public var missingSlices: [Int]
    /// The number of inputs of the whole job, as the tasks counted it.
    public var inputsTotal: Int?

    /// Reads every `*.json` file of `directory` (each must be a `wsurgery run --report` of the same
    /// recipe, steps and output directory) and joins them. An input reported by several tasks (a
    /// re-submitted array) keeps its success over a failure, else its latest outcome.
    public static func merge(directory: String) throws -> MergedReport {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
            throw WSurgeryError.cannotOpen(path: directory, reason: "not a readable directory of reports")
        }
        let files = names.filter { $0.hasSuffix(".json") && !$0.hasPrefix(".") }.sorted().map { directory + "/" + $0 }
        guard !files.isEmpty else { throw WSurgeryError.cannotOpen(path: directory, reason: "holds no .json report") }
        var merged = MergedReport(reports: files, recipe: nil, steps: [], outDir: "", outcomes: [], sliceCount: nil, missingSlices: [])
        var best: [String: (outcome: BatchOutcome, finished: String)] = [:]
        var order: [String] = []
        var slices = Set<Int>()
        var sliceCounts = Set<Int>()
        var unsliced = false
        for (position, file) in files.enumerated() {
            guard let text = try InputFile.text(path: file, what: "the report") else {
                throw WSurgeryError.cannotOpen(path: file, reason: "cannot be read as UTF-8 text")
            }
            guard let json = try? JSONParser.parse(text), case .array(let items)? = json["files"], json["tool"]?.stringValue != nil else {
                throw WSurgeryError.invalidArguments(reason: "\(file) is not a report of 'wsurgery run --report'")
            }
            let recipe = json["recipe"]?.stringValue
            let steps: [String] =
                json["steps"].flatMap { value in if case .array(let s) = value { return s.compactMap(\.stringValue) } else { return nil } } ?? []
            let outDir = json["out_dir"]?.stringValue ?? ""
            if position == 0 {
                (merged.recipe, merged.steps, merged.outDir) = (recipe, steps, outDir)
            } else if recipe != merged.recipe || steps != merged.steps || outDir != merged.outDir {
                throw WSurgeryError.invalidArguments(
                    reason: "\(file) reports another run (recipe, steps or --out-dir differ from \(files[0])); merge the reports of one job at a time"
                )
            }
            if let text = json["shard"]?.stringValue, let shard = try? Shard(parsing: text) {
                slices.insert(shard.index)
                sliceCounts.insert(shard.count)
            } else {
                unsliced = true
            }
            if let total = json["inputs_total"]?.doubleValue { merged.inputsTotal = max(merged.inputsTotal ?? 0, Int(total)) }
            let finished = json["finished"]?.stringValue ?? ""
            for item in items {
                guard let outcome = BatchOutcome(json: item) else {
                    throw WSurgeryError.invalidArguments(reason: "\(file) has a malformed entry under 'files'")
                }
                if let previous = best[outcome.input] {
                    let better =
                        (outcome.status != .failed) != (previous.outcome.status != .failed)
                        ? outcome.status != .failed : finished >= previous.finished
                    if better { best[outcome.input] = (outcome, finished) }
                } else {
                    best[outcome.input] = (outcome, finished)
                    order.append(outcome.input)
                }
            }
        }
        if sliceCounts.count > 1 {
            throw WSurgeryError.invalidArguments(
                reason:
                    "the reports cut the inputs into different numbers of slices (\(sliceCounts.sorted().map(String.init).joined(separator: ", ")))")
        }
        if let count = sliceCounts.first, !unsliced {
            merged.sliceCount = count
            merged.missingSlices = (0..<count).filter { !slices.contains($0) }
        }
        let outcomes = order.map { best[$0]!.outcome }
        merged.outcomes =
            outcomes.filter { $0.status == .failed }.sorted { $0.input < $1.input }
            + outcomes.filter { $0.status != .failed }.sorted { $0.input < $1.input }
        return merged
    }

    /// How many inputs ended with `status`.
    public func count(_ status: BatchOutcome.Status) -> Int { outcomes.filter { $0.status == status }.count }

    /// The first failure's category (the exit code), or nil when nothing failed.
    public var failureCategory: FailureCategory? {
        outcomes.first { $0.status == .failed }.map { $0.errorCategory ?? .io }
    }

    /// What the merged reports leave uncovered: missing slices, inputs no report lists.
    public var gaps: [String] {
        var result: [String] = []
        if let count = sliceCount, !missingSlices.isEmpty {
            result.append("no report for slice(s) " + missingSlices.map { "\($0)/\(count)" }.joined(separator: ", "))
        }
        if let total = inputsTotal, total > outcomes.count, missingSlices.isEmpty {
            result.append("\(total - outcomes.count) of \(total) input(s) are in no report")
        }
        return result
    }

    /// The table of every input (failures first) and the summary lines.
    public var table: String {
        var report = BatchReport(recipe: recipe, steps: steps, outDir: outDir, shard: nil, outcomes: outcomes)
        report.inputsTotal = inputsTotal
        let slicesLine = sliceCount.map { ["\(files) from \($0 - missingSlices.count) of \($0) slice(s)"] } ?? ["\(files)"]
        return ([report.table] + slicesLine + gaps.map { "missing: " + $0 }).joined(separator: "\n")
    }

    private var files: String { "merged \(reports.count) report(s)" }

    /// The merged report as JSON: a run report's fields, plus the reports read and the gaps.
    public var json: JSONValue {
        var report = BatchReport(recipe: recipe, steps: steps, outDir: outDir, shard: nil, outcomes: outcomes)
        report.inputsTotal = inputsTotal
        guard case .object(var fields) = report.json else { return report.json }
        fields.removeAll { ["shard", "shard_source", "finished"].contains($0.0) }
        fields.append(("reports", .array(reports.map { .string($0) })))
        fields.append(("slices", sliceCount.map { .int($0) } ?? .null))
        fields.append(("missing_slices", .array(missingSlices.map { .int($0) })))
        fields.append(("gaps", .array(gaps.map { .string($0) })))
        return .object(fields)
    }
}
