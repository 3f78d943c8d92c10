import Foundation
import Testing

@testable import WSurgery

@Suite("Untrusted input: checked sizes, limits, escaping, containment, unnamed outputs")
struct SafetyTests {
    @Test("products over 2^60, negative sizes and overflowing sums are nil, never a trap")
    func checkedArithmetic() {
        #expect(Checked.product([3, 224, 224]) == 150_528)
        #expect(Checked.product([]) == 1)
        #expect(Checked.product([1 << 32, 1 << 32]) == nil)
        #expect(Checked.product([Int.max, 2]) == nil)
        #expect(Checked.product([4, -1]) == nil)
        #expect(Checked.product([1 << 30, 1 << 30]) == 1 << 60)
        #expect(Checked.product([1 << 30, 1 << 30, 2]) == nil)
        #expect(Checked.add(Int.max, 1) == nil)
        #expect(Checked.add(-1, 1) == nil)
        #expect(throws: WSurgeryError.self) { try Checked.elementCount([1 << 62, 4]) { .invalidPyTorch(path: "p", reason: $0) } }
    }

    @Test("WSURGERY_LIMITS parses keys and sizes, and refuses what it does not know")
    func limitsParse() throws {
        let limits = try Limits.parse("config-bytes=1MiB, expansion=1000,tensors=5")
        #expect(limits.configBytes == 1 << 20 && limits.expansion == 1000 && limits.tensors == 5)
        #expect(limits.nameBytes == Limits().nameBytes)
        #expect(try Limits.parse("") == Limits())
        #expect(throws: WSurgeryError.self) { try Limits.parse("expansions=3") }
        #expect(throws: WSurgeryError.self) { try Limits.parse("expansion=lots") }
        #expect(throws: WSurgeryError.self) { try Limits.parse("expansion") }
    }

    @Test("expansion is judged only above the floor, against the stored size")
    func expansionLimit() throws {
        let limits = Limits()
        try limits.checkExpansion(decoded: 60 << 20, stored: 0, path: "f", dataset: "d")
        try limits.checkExpansion(decoded: 1 << 30, stored: 20 << 20, path: "f", dataset: "d")
        #expect(throws: WSurgeryError.self) { try limits.checkExpansion(decoded: 4 << 40, stored: 0, path: "f", dataset: "d") }
        #expect(throws: WSurgeryError.self) { try limits.checkExpansion(decoded: 4 << 30, stored: 4 << 20, path: "f", dataset: "d") }
        do {
            try limits.checkExpansion(decoded: 4 << 30, stored: 4 << 20, path: "f.h5", dataset: "w")
        } catch let error as WSurgeryError {
            #expect(error.category == .badData)
            #expect(error.description.contains("WSURGERY_LIMITS=expansion=N"))
        }
    }

    @Test("control characters from files are shown escaped; plain text is untouched")
    func escaping() {
        #expect(TextSafety.escaped("conv1.weight") == "conv1.weight")
        #expect(TextSafety.escaped("a\nb") == "a\\nb")
        #expect(TextSafety.escaped("\u{1B}[2J") == "\\u{1B}[2J")
        #expect(TextSafety.escaped("tab\there\u{7F}") == "tab\\there\\u{7F}")
        #expect(TextSafety.escaped("ünïcode ok") == "ünïcode ok")
        #expect(TextTable.render([["name"], ["x\ny"]]).allSatisfy { !$0.contains("\n") })
    }

    @Test("placeholders are expanded once: text an input name brings in stays text")
    func singleExpansion() throws {
        let pattern = try OutputPattern("{stem}-{parent}{ext}")
        #expect(pattern.relativeOutput(for: "runs/r7/{parent}.h5") == "{parent}-r7.h5")
        #expect(try OutputPattern("{name}").relativeOutput(for: "a/{name}{stem}.safetensors") == "{name}{stem}.safetensors")
    }

    @Test("outputs that climb out of --out-dir through '..' or a symlink are refused")
    func containment() throws {
        let root = TestSupport.temporaryDirectory()
        let outDir = root + "/out"
        try FileManager.default.createDirectory(atPath: outDir + "/sub", withIntermediateDirectories: true)
        try OutputPattern.checkContained("sub/m.h5", in: outDir, input: "m.h5")
        try OutputPattern.checkContained("new/deeper/m.h5", in: outDir, input: "m.h5")
        #expect(throws: WSurgeryError.self) { try OutputPattern.checkContained("../m.h5", in: outDir, input: "../m.h5") }
        #expect(throws: WSurgeryError.self) { try OutputPattern.checkContained("a/../../m.h5", in: outDir, input: "x") }
        try FileManager.default.createSymbolicLink(atPath: outDir + "/escape", withDestinationPath: root)
        #expect(throws: WSurgeryError.self) { try OutputPattern.checkContained("escape/m.h5", in: outDir, input: "m.h5") }
        #expect(throws: WSurgeryError.self) { try OutputPattern.checkContained("escape/new/m.h5", in: outDir, input: "m.h5") }
        // Even a symlink that leads back inside: the writer never follows one below --out-dir.
        try FileManager.default.createSymbolicLink(atPath: outDir + "/inside", withDestinationPath: outDir + "/sub")
        #expect(throws: WSurgeryError.self) { try OutputPattern.checkContained("inside/m.h5", in: outDir, input: "m.h5") }
        try OutputPattern.checkContained("inside", in: outDir, input: "m.h5")  // the output itself is checked when written
        let plan = try BatchRun.plan(
            inputs: ["../m.h5"], pattern: try OutputPattern("{name}"), options: .init(outDir: outDir))
        #expect(plan.map(\.output) == [outDir + "/m.h5"])
        #expect(throws: WSurgeryError.self) {
            try BatchRun.plan(inputs: ["../m.h5"], pattern: try OutputPattern("{parent}/{name}"), options: .init(outDir: outDir))
        }
    }

    @Test("shape inference refuses sizes out of range instead of trapping")
    func shapeRanges() {
        func outputs(_ className: String, _ config: [(String, JSONValue)], _ input: KerasShape) -> Bool {
            (try? LayerShapes.outputs(className: className, config: .object(config), inputs: [input])) != nil
        }
        #expect(outputs("Conv2D", [("filters", .int(8)), ("kernel_size", .int(3))], [nil, 32, 32, 3]))
        #expect(!outputs("Conv2D", [("filters", .int(8)), ("kernel_size", .int(3)), ("strides", .array([.int(0), .int(0)]))], [nil, 32, 32, 3]))
        #expect(!outputs("Conv2D", [("filters", .int(8)), ("kernel_size", .int(3))], [nil, 1 << 62, 1 << 62, 3]))
        #expect(!outputs("Conv2DTranspose", [("filters", .int(8)), ("kernel_size", .int(3)), ("dilation_rate", .int(1 << 40))], [nil, 8, 8, 3]))
        #expect(!outputs("Flatten", [], [nil, 1 << 31, 1 << 31, 1 << 31]))
        #expect(!outputs("Reshape", [("target_shape", .array([.int(1 << 30), .int(1 << 30), .int(1 << 30), .int(-1)]))], [nil, 4, 4]))
        #expect(!outputs("Permute", [("dims", .array([.int(7), .int(9), .int(1)]))], [nil, 4, 4, 3]))
        #expect(!outputs("UpSampling2D", [("size", .int(1 << 31))], [nil, 4, 4, 3]))
    }

    @Test("an output never has a name before it is committed, and a dropped one leaves nothing")
    func unnamedOutputs() throws {
        let dir = TestSupport.temporaryDirectory()
        do {
            let output = try OutputFile(path: dir + "/a.safetensors")
            try output.write([1, 2, 3])
            #expect(output.isUnnamed)
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
        let output = try OutputFile(path: dir + "/b.safetensors")
        try output.write([4, 5])
        try output.commit()
        #expect(FileManager.default.contents(atPath: dir + "/b.safetensors") == Data([4, 5]))
        // Replacing an existing file (--force) goes through a brief name, never left behind.
        let again = try OutputFile(path: dir + "/b.safetensors")
        try again.write([6])
        try again.commit()
        #expect(FileManager.default.contents(atPath: dir + "/b.safetensors") == Data([6]))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["b.safetensors"])
    }

    @Test("the named fallback's leftovers are removed once their writer is gone")
    func orphans() throws {
        let dir = TestSupport.temporaryDirectory()
        // A pid that cannot be running (above pid_max), and this process's own pid.
        FileManager.default.createFile(atPath: dir + "/.m.h5.wsurgery-99999999-abc123", contents: Data([1]))
        FileManager.default.createFile(atPath: dir + "/.m.h5.wsurgery-\(getpid())-def456", contents: Data([1]))
        FileManager.default.createFile(atPath: dir + "/.hidden-but-not-ours", contents: Data([1]))
        OutputFile.removeOrphans(in: try OutputDirectory(path: dir))
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == [".hidden-but-not-ours", ".m.h5.wsurgery-\(getpid())-def456"])
    }

    @Test("below its root a set writes only through real directories, and a dropped set removes the ones it made")
    func confinedSets() throws {
        let dir = TestSupport.temporaryDirectory()
        let root = dir + "/out"
        try FileManager.default.createDirectory(atPath: root + "/kept", withIntermediateDirectories: true)
        do {
            let set = OutputSet(root: root)
            try set.create(root + "/a/b/x.bin").write([1])
            try set.create(root + "/kept/y.bin").write([2])
            #expect(FileManager.default.fileExists(atPath: root + "/a/b"))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: root) == ["kept"])
        try FileManager.default.createDirectory(atPath: dir + "/elsewhere", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: root + "/s", withDestinationPath: dir + "/elsewhere")
        #expect {
            try OutputSet(root: root).create(root + "/s/x.bin")
        } throws: { error in
            guard case WSurgeryError.cannotCreateOutput(let path, let reason) = error else { return false }
            return path == root + "/s" && reason.contains("symlink")
        }
        // Outside the root, paths are the user's: a symlink named there is followed.
        let outside = OutputSet()
        try outside.create(root + "/s/z.bin").write([3])
        try outside.commit()
        #expect(FileManager.default.contents(atPath: dir + "/elsewhere/z.bin") == Data([3]))
        let set = OutputSet(root: root)
        try set.create(root + "/a/b/x.bin").write([1])
        try set.commit()
        #expect(FileManager.default.contents(atPath: root + "/a/b/x.bin") == Data([1]))
    }

    @Test("a dead writer's journal: its own files are removed, others kept; a live writer's journal makes the claim fail")
    func journals() throws {
        let dir = TestSupport.temporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir + "/m", withIntermediateDirectories: true)
        for name in ["a", "b", "c"] { _ = FileManager.default.createFile(atPath: dir + "/m/" + name, contents: Data([1])) }
        func entry(_ name: String, inode: UInt64? = nil) -> JSONValue {
            let identity = FileIdentity.of(path: dir + "/m/" + name)!
            return .object([
                ("path", .string("m/" + name)), ("device", .string(String(identity.device))), ("inode", .string(String(inode ?? identity.inode))),
            ])
        }
        func journal(pid: Int32, started: String) -> String {
            JSONValue.object([
                ("pid", .number(String(pid))), ("started", .string(started)),
                ("files", .array([entry("a"), entry("b", inode: 1), entry("index-never-written", inode: 2)])), ("directories", .array([])),
            ]).serialized(.compact)
        }
        _ = FileManager.default.createFile(atPath: dir + "/m/index-never-written", contents: Data([9]))
        // The parent process runs: its set is being committed now.
        let parent = getppid()
        let live = journal(pid: parent, started: OutputSet.startTime(of: parent)!)
        _ = FileManager.default.createFile(atPath: dir + "/.m.wsurgery-set", contents: Data(live.utf8))
        #expect(throws: WSurgeryError.self) { try OutputSet().claim(dir + "/m/") }
        #expect(FileManager.default.fileExists(atPath: dir + "/m/a"))
        // A pid that cannot run (above pid_max): a dead writer. Only the file that is still its own goes.
        _ = FileManager.default.createFile(atPath: dir + "/.m.wsurgery-set", contents: Data(journal(pid: 99_999_999, started: "1").utf8))
        try OutputSet().claim(dir + "/m/")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/m").sorted() == ["b", "c", "index-never-written"])
        #expect(!FileManager.default.fileExists(atPath: dir + "/.m.wsurgery-set"))
    }

    @Test("a name over the HDF5 attribute limit is refused at once, not split forever")
    func longNameRefused() throws {
        let dir = TestSupport.temporaryDirectory()
        let name = String(repeating: "x", count: 70_000)
        let graph = TensorGraph(layers: [Layer(name: name, kind: .unknown)], sourceFormat: .safetensors, sourcePath: "-", sourceFiles: [])
        #expect(throws: WSurgeryError.self) { try Checkpoint.write(graph, to: dir + "/long.h5") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }
}

@Suite("outputs are read back before their commit")
struct OutputCheckTests {
    @Test("a safetensors output that does not hold the graph's tensors is a bug report (exit 70), and nothing is written")
    func safetensorsMismatch() throws {
        let dir = TestSupport.temporaryDirectory()
        let graph = try Checkpoint.read(TestSupport.fixture("torch_resnet_tiny.safetensors"))
        var fewer = graph
        let first = try #require(fewer.layers.firstIndex { $0.tensors.count > 1 })
        fewer.layers[first].tensors.removeLast()
        let outputs = OutputSet()
        _ = try SafetensorsWriter.write(fewer, to: dir + "/o.safetensors", outputs: outputs)
        #expect {
            try OutputCheck.verify(graph, format: .safetensors, outputs: outputs, path: dir + "/o.safetensors")
        } throws: { error in
            guard let error = error as? WSurgeryError, case .outputCheckFailed(_, let reason) = error else { return false }
            return error.category == .software && reason.contains("meant")
        }
        try OutputCheck.verify(fewer, format: .safetensors, outputs: outputs, path: dir + "/o.safetensors")
        // A tensor of another shape.
        var reshaped = graph
        let conv = try #require(reshaped.layers.firstIndex { $0.tensors.first.map { $0.shape.count == 4 } ?? false })
        reshaped.layers[conv].tensors[0].shape = [reshaped.layers[conv].tensors[0].shape.reduce(1, *) / 2, 2]
        let other = OutputSet()
        _ = try SafetensorsWriter.writeSharded(reshaped, to: dir + "/shards/", maxShardBytes: 1024, outputs: other)
        #expect(throws: WSurgeryError.self) { try OutputCheck.verify(graph, format: .shardedSafetensors, outputs: other, path: dir + "/shards/") }
        try OutputCheck.verify(reshaped, format: .shardedSafetensors, outputs: other, path: dir + "/shards/")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["shards"])
    }

    @Test("a Keras HDF5 output is read back: its tensor count, dtypes and shapes")
    func kerasMismatch() throws {
        let dir = TestSupport.temporaryDirectory()
        let graph = try Checkpoint.read(TestSupport.fixture("keras_cnn.h5"))
        let outputs = OutputSet()
        let file = try outputs.create(dir + "/o.h5")
        _ = try KerasH5Writer.writeLegacy(graph, to: file)
        try OutputCheck.verify(graph, format: .kerasLegacyH5, outputs: outputs, path: dir + "/o.h5")
        var more = graph
        let withWeights = try #require(more.layers.lastIndex { !$0.tensors.isEmpty })
        more.layers[withWeights].tensors.append(more.layers[withWeights].tensors[0])
        #expect(throws: WSurgeryError.self) { try OutputCheck.verify(more, format: .kerasLegacyH5, outputs: outputs, path: dir + "/o.h5") }
    }
}
