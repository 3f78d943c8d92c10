import Foundation
import Testing

@testable import WSurgery

/// Recipes, output patterns, shards, batch plans, provenance, SHA-256 and diff arithmetic.
struct BatchTests {
    // MARK: SHA-256

    @Test("an input whose output name no writer takes fails alone; a torch.save input under {name} becomes .safetensors")
    func impossibleOutputsFailAlone() throws {
        let plan = try BatchRun.plan(inputs: ["in/a.h5", "in/b.pth"], pattern: try OutputPattern("{stem}{ext}"), options: .init(outDir: "out"))
        #expect(plan.map(\.output) == ["out/a.h5", "out/b.pth"])
        #expect(plan[0].refusal == nil)
        let refusal = try #require(plan[1].refusal)
        #expect(refusal.category == .usage && refusal.description.contains("never pickles"))
        let outcome = BatchRun.perform(plan[1], passes: [], options: .init(outDir: "out"))
        #expect(outcome.status == .failed && outcome.errorCategory == .usage)
        let defaults = try BatchRun.plan(inputs: ["in/a.h5", "in/b.pth"], pattern: try OutputPattern("{name}"), options: .init(outDir: "out"))
        #expect(defaults.map(\.output) == ["out/a.h5", "out/b.safetensors"] && defaults.allSatisfy { $0.refusal == nil })
    }

    @Test func sha256MatchesTheStandardVectors() {
        func digest(_ text: String) -> String {
            var h = SHA256()
            h.update(Array(text.utf8))
            return h.finalize()
        }
        #expect(digest("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test func sha256IsTheSameWhateverTheChunking() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        var whole = SHA256()
        whole.update(bytes)
        var pieces = SHA256()
        var start = 0
        for size in [1, 63, 64, 65, 7, 300] + [Int](repeating: 100, count: 5) {
            let end = min(start + size, bytes.count)
            pieces.update(Array(bytes[start..<end]))
            start = end
        }
        pieces.update(Array(bytes[start...]))
        #expect(whole.finalize() == pieces.finalize())
    }

    // MARK: Recipes

    @Test func theIssueRecipeParsesInOrderWithLines() throws {
        let recipe = try Recipe.parse(
            """
            passes:
              - collapse-channels: {mode: sum}
              - replace-head: {classes: 5, seed: 1}
            output: "{stem}-gray5.h5"
            """, path: "r.yaml")
        #expect(recipe.steps.map(\.command) == ["collapse-channels", "replace-head"])
        #expect(recipe.steps[1].options.map(\.key) == ["classes", "seed"])
        #expect(recipe.steps[1].options[0].value == .text("5"))
        #expect(recipe.steps[1].location == RecipeLocation(file: "r.yaml", line: 3))
        #expect(recipe.output == "{stem}-gray5.h5")
        #expect(recipe.outputLocation?.line == 4)
    }

    @Test func jsonRecipesAndBareStepsAndValueKinds() throws {
        let json = try Recipe.parse(
            #"{"passes": [{"drop-layer": {"top": true, "layer": ["a", "b"]}}, "collapse-channels"], "output": "{name}"}"#, path: "r.json")
        #expect(json.steps[0].options[0].value == .bool(true))
        #expect(json.steps[0].options[1].value == .list([.text("a"), .text("b")]))
        #expect(json.steps[1].command == "collapse-channels" && json.steps[1].options.isEmpty)
        // A quoted "true" stays text; the flag conversion still accepts it, an option gets the word.
        let yaml = try Recipe.parse("passes:\n  - convert:\n      layout: 'true'\n", path: "q.yaml")
        #expect(yaml.steps[0].options[0].value == .text("true"))
    }

    @Test func structuralErrorsNameTheLineAndKey() {
        func failure(_ text: String) -> WSurgeryError? {
            do {
                _ = try Recipe.parse(text, path: "r.yaml")
                return nil
            } catch { return error as? WSurgeryError }
        }
        #expect(
            failure("passes:\n  - collapse-channels\nouput: x.h5\n")
                == .invalidRecipe(location: "r.yaml:3", key: "ouput", reason: "unknown key; a recipe has passes, output, shard-size"))
        #expect(
            failure("output: x.h5\n")
                == .invalidRecipe(
                    location: "r.yaml:1", key: "passes", reason: "missing; list the steps to apply, e.g. '- collapse-channels: {mode: sum}'"))
        if case let .invalidRecipe(location, _, reason)? = failure("passes:\n  - collapse-channels: {mode: sum}\n    replace-head: {classes: 5}\n") {
            #expect(location == "r.yaml:2")
            #expect(reason.contains("2 keys"))
        } else {
            Issue.record("a step with two commands was accepted")
        }
        if case let .invalidRecipe(location, key, _)? = failure("passes:\n  - replace-head: 5\n") {
            #expect(location == "r.yaml:2" && key == "replace-head")
        } else {
            Issue.record("options given as a number were accepted")
        }
        if case let .invalidRecipe(location, _, reason)? = failure("passes: [\n") {
            #expect(location.hasPrefix("r.yaml:"))
            #expect(reason.hasPrefix("not valid YAML or JSON"))
        } else {
            Issue.record("malformed YAML was accepted")
        }
        if case let .invalidRecipe(location, key, _)? = failure("passes:\n  - convert\nshard-size: lots\n") {
            #expect(location == "r.yaml:3" && key == "shard-size")
        } else {
            Issue.record("a malformed shard-size was accepted")
        }
        #expect((try? Recipe.parse("passes:\n  - convert\nshard-size: 2GB\n", path: "r.yaml"))?.shardSize == 2_000_000_000)
        if case let .invalidRecipe(_, _, reason)? = failure("passes:\n  - collapse-channels\npasses:\n  - convert\n") {
            #expect(reason.contains("duplicate"))
        } else {
            Issue.record("a duplicate key was accepted")
        }
    }

    @Test func passArgumentsParseLikeRecipeSteps() throws {
        let step = try RecipeStep.parse(passArgument: "replace-head classes=5 --seed=1 reinit", position: 2)
        #expect(step.command == "replace-head")
        #expect(step.options.map(\.key) == ["classes", "seed", "reinit"])
        #expect(step.options[2].value == .bool(true))
        #expect(step.text == "replace-head classes=5 seed=1 reinit=true")
        let commandLine: (String) -> String = { "--" + $0 }
        #expect(step.error(key: "seed", "x").message(spelling: commandLine) == "--pass 2: key 'seed': x")
        do {
            _ = try RecipeStep.parse(passArgument: "drop-layer a=1 a=2", position: 1)
            Issue.record("a key given twice was accepted")
        } catch let error as WSurgeryError {
            #expect(error.message(spelling: commandLine) == "--pass 1: key 'a': given twice")
        }
    }

    // MARK: Output names, shards, plans

    @Test func outputPatternsFillPlaceholdersFromTheInput() throws {
        let pattern = try OutputPattern("{parent}/{stem}-gray{ext}")
        #expect(pattern.relativeOutput(for: "runs/fold3/model.weights.h5") == "fold3/model-gray.weights.h5")
        #expect(pattern.relativeOutput(for: "a.safetensors") == "./a-gray.safetensors")
        #expect(OutputPattern.split("x/m.safetensors.index.json").stem == "m")
        #expect(OutputPattern.split("m.keras").ext == ".keras")
        #expect(OutputPattern.split("noext").ext == "")
        #expect(throws: WSurgeryError.self) { try OutputPattern("{size}.h5") }
        #expect(throws: WSurgeryError.self) { try OutputPattern("../x.h5") }
        #expect(throws: WSurgeryError.self) { try OutputPattern("/abs/x.h5") }
    }

    @Test func shardsPartitionTheInputsExactly() throws {
        let items = (0..<11).map { "in\($0)" }
        for count in 1...4 {
            let slices = (0..<count).map { Shard(index: $0, count: count).select(items) }
            #expect(slices.flatMap { $0 }.sorted() == items.sorted())
            #expect(Set(slices.flatMap { $0 }).count == items.count)
            #expect(slices.map(\.count).max()! - slices.map(\.count).min()! <= 1)
        }
        #expect(try Shard(parsing: "1/2") == Shard(index: 1, count: 2))
        for bad in ["2/2", "-1/2", "1", "a/b", "0/0"] {
            #expect(throws: WSurgeryError.self) { try Shard(parsing: bad) }
        }
    }

    @Test("--shard auto reads Slurm, Kubernetes and GNU parallel, and refuses what does not add up")
    func shardsFromTheSchedulersEnvironment() throws {
        func shard(_ env: [String: String], count: Int? = nil) throws -> Shard { try Shard.fromEnvironment(env, count: count) }
        // Slurm arrays numbered from 1 (--array=1-3): the last task is slice 2 of 3.
        let slurm = ["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "3", "SLURM_ARRAY_TASK_COUNT": "3"]
        #expect(try shard(slurm) == Shard(index: 2, count: 3))
        #expect(try shard(slurm).source == "slurm")
        #expect(try shard(["SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"]) == Shard(index: 0, count: 4))
        // --array=10-16:3 runs tasks 10, 13, 16.
        let stepped = ["SLURM_ARRAY_TASK_ID": "16", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_STEP": "3", "SLURM_ARRAY_TASK_COUNT": "3"]
        #expect(try shard(stepped) == Shard(index: 2, count: 3))
        #expect(throws: WSurgeryError.self) {
            try shard(["SLURM_ARRAY_TASK_ID": "11", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_STEP": "3", "SLURM_ARRAY_TASK_COUNT": "3"])
        }
        // Kubernetes Indexed Jobs say the index, not the completions.
        #expect(try shard(["JOB_COMPLETION_INDEX": "1"], count: 3) == Shard(index: 1, count: 3))
        #expect(try shard(["JOB_COMPLETION_INDEX": "1"], count: 3).source == "kubernetes")
        #expect(throws: WSurgeryError.self) { try shard(["JOB_COMPLETION_INDEX": "1"]) }
        #expect(throws: WSurgeryError.self) { try shard(["JOB_COMPLETION_INDEX": "3"], count: 3) }
        // GNU parallel numbers jobs from 1.
        #expect(try shard(["PARALLEL_SEQ": "2", "PARALLEL_JOBSLOTS": "4"]) == Shard(index: 1, count: 4))
        #expect(try shard(["PARALLEL_SEQ": "5", "PARALLEL_JOBSLOTS": "4"], count: 8) == Shard(index: 4, count: 8))
        #expect(throws: WSurgeryError.self) { try shard(["PARALLEL_SEQ": "5", "PARALLEL_JOBSLOTS": "4"]) }
        // None, or two that disagree, or garbage: a clear error.
        #expect(throws: WSurgeryError.self) { try shard([:]) }
        #expect(throws: WSurgeryError.self) { try shard(slurm.merging(["PARALLEL_SEQ": "1", "PARALLEL_JOBSLOTS": "3"]) { $1 }) }
        #expect(try shard(slurm.merging(["PARALLEL_SEQ": "3", "PARALLEL_JOBSLOTS": "3"]) { $1 }) == Shard(index: 2, count: 3))
        #expect(throws: WSurgeryError.self) { try shard(["SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "3"]) }
        do {
            _ = try Shard(parsing: "3/3")
            Issue.record("3/3 accepted")
        } catch let error as WSurgeryError {
            #expect(error.description.contains("--shard auto"))
        }
    }

    @Test("merged reports list every input once, failures first, and name the slices with no report")
    func mergedReports() throws {
        let dir = TestSupport.temporaryDirectory()
        func write(_ name: String, shard: Shard?, _ outcomes: [BatchOutcome], finished: TimeInterval = 0) throws {
            var report = BatchReport(recipe: "r.yaml", steps: ["convert"], outDir: "out", shard: shard, outcomes: outcomes, inputsTotal: 5)
            report.finished = Date(timeIntervalSince1970: 1_000_000 + finished)
            try report.json.serialized(.pretty).write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
        }
        var failed = BatchOutcome(input: "c.h5", output: "out/c.h5", status: .failed)
        failed.error = "broken"
        failed.errorCategory = .badData
        try write(
            "task-0.json", shard: Shard(index: 0, count: 3),
            [
                BatchOutcome(input: "a.h5", output: "out/a.h5", status: .written), failed,
            ])
        try write("task-2.json", shard: Shard(index: 2, count: 3), [BatchOutcome(input: "e.h5", output: "out/e.h5", status: .written)])
        var merged = try MergedReport.merge(directory: dir)
        #expect(merged.outcomes.map(\.input) == ["c.h5", "a.h5", "e.h5"])
        #expect(merged.missingSlices == [1])
        #expect(merged.failureCategory == .badData)
        #expect(merged.gaps == ["no report for slice(s) 1/3"])
        // The re-submitted task 0 fixed c.h5; task 1 arrives: nothing is missing, nothing failed.
        try write(
            "task-0-again.json", shard: Shard(index: 0, count: 3),
            [
                BatchOutcome(input: "c.h5", output: "out/c.h5", status: .written), BatchOutcome(input: "a.h5", output: "out/a.h5", status: .upToDate),
            ], finished: 10)
        try write(
            "task-1.json", shard: Shard(index: 1, count: 3),
            [
                BatchOutcome(input: "b.h5", output: "out/b.h5", status: .written), BatchOutcome(input: "d.h5", output: "out/d.h5", status: .written),
            ])
        merged = try MergedReport.merge(directory: dir)
        #expect(merged.outcomes.map(\.input) == ["a.h5", "b.h5", "c.h5", "d.h5", "e.h5"])
        #expect(merged.outcomes.map(\.status) == [.upToDate, .written, .written, .written, .written])
        #expect(merged.failureCategory == nil && merged.gaps.isEmpty)
        #expect(merged.table.contains("5 input(s), 4 written, 1 up-to-date"))
        // Reports of another run are refused.
        var other = BatchReport(recipe: "other.yaml", steps: ["convert"], outDir: "out", shard: nil, outcomes: [])
        other.inputsTotal = 0
        try other.json.serialized(.pretty).write(toFile: dir + "/z.json", atomically: true, encoding: .utf8)
        #expect(throws: WSurgeryError.self) { try MergedReport.merge(directory: dir) }
    }

    @Test func plansRefuseCollidingOutputsAndUnknownFormats() throws {
        let options = BatchRun.Options(outDir: "/tmp/out")
        let jobs = try BatchRun.plan(inputs: ["a/m.h5", "b/m.h5"], pattern: try OutputPattern("{parent}-{stem}.safetensors"), options: options)
        #expect(jobs.map(\.output) == ["/tmp/out/a-m.safetensors", "/tmp/out/b-m.safetensors"])
        #expect(throws: WSurgeryError.self) {
            try BatchRun.plan(inputs: ["a/m.h5", "b/m.h5"], pattern: try OutputPattern("{stem}.h5"), options: options)
        }
        #expect(throws: WSurgeryError.self) { try BatchRun.plan(inputs: ["a/m.h5"], pattern: try OutputPattern("{stem}.txt"), options: options) }
    }

    @Test func inputListsSearchDirectoriesAndGlobsAndSkipHiddenFiles() throws {
        let dir = TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in [
            "b.h5", "a.safetensors", ".a.h5.wsurgery-123456", "notes.txt", "sub/c.keras", "shards/model.safetensors.index.json",
            "shards/model-00001-of-00001.safetensors",
        ] {
            try FileManager.default.createDirectory(
                atPath: dir + "/" + (name.contains("/") ? String(name.split(separator: "/")[0]) : ""), withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: dir + "/" + name, contents: Data())
        }
        #expect(try InputList.expand([dir]) == [dir + "/a.safetensors", dir + "/b.h5", dir + "/shards", dir + "/sub/c.keras"])
        #expect(try InputList.expand([dir + "/*.h5", dir + "/b.h5"]) == [dir + "/b.h5"])
        #expect(throws: WSurgeryError.self) { try InputList.expand([dir + "/*.nothing"]) }
        #expect(throws: WSurgeryError.self) { try InputList.expand([dir + "/missing.h5"]) }
    }

    // MARK: Provenance

    @Test("XXH3-128 as xxhsum -H2 prints it")
    func xxh128KnownAnswers() throws {
        // Values printed by xxhsum 0.8.1 (`printf '' | xxhsum -H2`, `printf abc | xxhsum -H2`).
        for (text, hex) in [("", "99aa06d3014798d86001c324468d497f"), ("abc", "06b05ab6733a618578af5f94892f3950")] {
            var digest = StreamingDigest(.xxh128)
            Array(text.utf8).withUnsafeBytes { digest.update($0) }
            #expect(digest.finalize() == hex)
        }
    }

    @Test func provenanceRoundTripsThroughItsText() throws {
        let entry = Provenance.Entry(
            passes: [("collapse-channels", [("mode", "sum")]), ("replace-head", [("classes", "5"), ("seed", "1")])],
            inputName: "m.h5", inputFormat: "keras-legacy-h5", inputDigest: String(repeating: "ab", count: 32), digestAlgorithm: .sha256)
        let record = Provenance(entries: [entry, entry])
        #expect(Provenance(text: record.text) == record)
        #expect(entry.seeds == ["1"])
        #expect(entry.json["seed"]?.stringValue == "1")
        #expect(entry.summary.hasPrefix("wsurgery \(Provenance.toolVersion): collapse-channels (mode=sum), replace-head (classes=5, seed=1) on m.h5"))
        #expect(Provenance(text: "{\"format\": \"pt\"}") == nil)
    }

    @Test func everyWriteRecordsTheRunAndKeepsEarlierRuns() throws {
        let dir = TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let input = TestSupport.fixture("keras_cnn.h5")
        for (i, output) in [dir + "/a.safetensors", dir + "/b.h5", dir + "/c.weights.h5", dir + "/d.keras"].enumerated() {
            let source = i == 0 ? input : dir + "/a.safetensors"
            // The first run records SHA-256, the later ones XXH3-128 (the default).
            let digest: DigestAlgorithm = i == 0 ? .sha256 : .xxh128
            _ = try Pipeline.run(
                [ChannelAdaptation(rule: .collapse(.sum), layers: [])].filter { _ in i == 0 }, input: source, output: output,
                options: .init(digest: digest))
            let history = try #require(try Checkpoint.read(output).provenance)
            #expect(history.entries.count == (i == 0 ? 1 : 2))
            #expect(history.entries[0].passes.map(\.name) == ["collapse-channels"])
            #expect(history.entries[0].digestAlgorithm == .sha256)
            #expect(history.entries[0].inputDigest == (try SHA256.file(try InputFile(path: input))))
            let last = try #require(history.entries.last)
            #expect(last.digestAlgorithm == digest)
            #expect(last.inputDigest == (try digest.file(try InputFile(path: source))))
            #expect(history.entries.last?.inputName == (i == 0 ? "keras_cnn.h5" : "a.safetensors"))
        }
        // The input is never modified: it still has no history.
        #expect(try Checkpoint.read(input).provenance == nil)
    }

    // MARK: Diff arithmetic

    @Test func differencesTreatNaNsAndSignsAsDocumented() {
        #expect(CheckpointDiff.differences([1, 2, .nan], [1, 2, .nan]) == (0, 0))
        #expect(CheckpointDiff.differences([1, 0], [1, -0.0]) == (0, 0))
        let (abs, rel) = CheckpointDiff.differences([1, 4], [1.5, 4])
        #expect(abs == 0.5 && rel == 0.5 / 1.5)
        #expect(CheckpointDiff.differences([1], [.nan]).0 == .infinity)
        #expect(CheckpointDiff.key("conv/kernel:0") == "conv/kernel")
    }

    @Test func diffOfAFileWithItsConversionIsEqual() throws {
        let dir = TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let input = TestSupport.fixture("keras_cnn.h5")
        _ = try Pipeline.run([], input: input, output: dir + "/a.safetensors")
        let same = try CheckpointDiff.compare(input, dir + "/a.safetensors")
        #expect(same.equal && same.count(.identical) == same.compared.count && same.compared.count > 0)
        _ = try Pipeline.run([ChannelAdaptation(rule: .collapse(.sum), layers: [])], input: input, output: dir + "/g.h5")
        let changed = try CheckpointDiff.compare(input, dir + "/g.h5")
        #expect(!changed.equal)
        #expect(changed.compared.filter { $0.verdict == .shapeChanged }.map(\.name) == ["conv1/kernel"])
    }
}
