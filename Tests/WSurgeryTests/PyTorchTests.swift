import Foundation
import Testing

@testable import WSurgery

@Suite("PyTorch checkpoints and the pickle interpreter")
struct PyTorchTests {
    func run(_ text: [UInt8], limits: PickleMachine.Limits = .init()) throws -> (PickleValue, PickleMachine) {
        var machine = PickleMachine()
        machine.limits = limits
        var input = PickleBytes(text)
        let value = try machine.load(&input)
        return (value, machine)
    }

    @Test("a pickle that calls os.system builds an inert placeholder and runs nothing")
    func commandIsNeverRun() throws {
        let marker = TestSupport.temporaryDirectory() + "/ran"
        // cos\nsystem\n(S'touch MARKER'\ntR.  -- what pickle.loads would run.
        let pickle = Array("cos\nsystem\n(S'touch \(marker)'\ntR.".utf8)
        let (value, machine) = try run(pickle)
        guard case .object(let object) = value else {
            Issue.record("not a placeholder: \(value)")
            return
        }
        #expect(object.global.description == "os.system")
        #expect(object.arguments.first?.string == "touch \(marker)")
        #expect(machine.unknownGlobals.map(\.description) == ["os.system"])
        #expect(!FileManager.default.fileExists(atPath: marker))
    }

    @Test("protocol 2 values: ints of every width, floats, strings, bytes, containers, memo")
    func values() throws {
        // (K\x07 J\xff\xff\xff\xff \x8a\x09<9 bytes> G<1.5 big-endian> X\x02\x00\x00\x00hi C\x01\x00 ] q\x00 h\x00 t.
        var pickle: [UInt8] = [0x80, 0x02, UInt8(ascii: "("), UInt8(ascii: "K"), 7, UInt8(ascii: "J"), 0xFF, 0xFF, 0xFF, 0xFF]
        pickle += [0x8A, 9] + [UInt8](repeating: 0x01, count: 9)
        pickle += [UInt8(ascii: "G")] + withUnsafeBytes(of: (1.5 as Double).bitPattern.bigEndian) { Array($0) }
        pickle += [UInt8(ascii: "X"), 2, 0, 0, 0] + Array("hi".utf8) + [UInt8(ascii: "C"), 1, 0]
        pickle += [UInt8(ascii: "]"), UInt8(ascii: "q"), 0, UInt8(ascii: "h"), 0, UInt8(ascii: "t"), UInt8(ascii: ".")]
        let (value, _) = try run(pickle)
        let items = try #require(value.elements)
        #expect(items.count == 8)
        #expect(items[0].int == 7)
        #expect(items[1].int == -1)
        guard case .bigInt(let big) = items[2] else {
            Issue.record("LONG1 of 9 bytes is not a big integer")
            return
        }
        #expect(big.count == 9)
        guard case .float(let f) = items[3] else {
            Issue.record("no float")
            return
        }
        #expect(f == 1.5)
        #expect(items[4].string == "hi")
        guard case .bytes(let b) = items[5] else {
            Issue.record("no bytes")
            return
        }
        #expect(b == [0])
        // The memoised list and the one fetched back are the same object.
        guard case .list(let first) = items[6], case .list(let second) = items[7] else {
            Issue.record("no lists")
            return
        }
        #expect(first === second)
    }

    @Test(
        "malformed pickles are refused with the reason",
        arguments: [
            ([UInt8(ascii: "h"), 5, UInt8(ascii: ".")], "never stored"),
            ([0xFF], "unknown or unsupported opcode 0xff"),
            ([UInt8(ascii: "K")], "ends inside an opcode"),
            ([UInt8(ascii: "a")], "pops an empty stack"),
            ([UInt8(ascii: "("), UInt8(ascii: ".")], "pops a mark"),
            ([UInt8(ascii: "N"), UInt8(ascii: "N"), UInt8(ascii: "R"), UInt8(ascii: ".")], "arguments that are not a tuple"),
            ([UInt8(ascii: "Q"), UInt8(ascii: ".")], "pops an empty stack"),
            ([UInt8(ascii: "N"), UInt8(ascii: "Q"), UInt8(ascii: ".")], "persistent id where none is expected"),
        ])
    func malformed(pickle: [UInt8], reason: String) {
        do {
            _ = try run(pickle)
            Issue.record("accepted \(pickle)")
        } catch {
            #expect("\(error)".contains(reason), "\(error)")
        }
    }

    @Test("the stack, memo and operation limits hold")
    func limits() {
        // A million MARK opcodes against a stack of 1000.
        var small = PickleMachine.Limits()
        small.stack = 1000
        #expect(throws: PickleError.self) { _ = try run([UInt8](repeating: UInt8(ascii: "N"), count: 2000) + [UInt8(ascii: ".")], limits: small) }
        small = PickleMachine.Limits()
        small.operations = 100
        #expect(throws: PickleError.self) { _ = try run([UInt8](repeating: UInt8(ascii: "N"), count: 200) + [UInt8(ascii: ".")], limits: small) }
        small = PickleMachine.Limits()
        small.memo = 10
        var pickle: [UInt8] = [UInt8(ascii: "N")]
        for i in 0..<20 { pickle += [UInt8(ascii: "q"), UInt8(i)] }
        #expect(throws: PickleError.self) { _ = try run(pickle + [UInt8(ascii: ".")], limits: small) }
    }

    @Test("walking a cyclic or very deep value terminates")
    func cyclesAndDepth() throws {
        // A list that contains itself: ] q0 h0 a .
        let (cyclic, _) = try run([UInt8(ascii: "]"), UInt8(ascii: "q"), 0, UInt8(ascii: "h"), 0, UInt8(ascii: "a"), UInt8(ascii: ".")])
        var visits = 0
        try cyclic.walk { _ in
            visits += 1
            return true
        }
        #expect(visits == 1)  // the list, once: its child is itself
        // 5000 nested lists: built without recursion, refused when walked.
        let deep = [UInt8](repeating: UInt8(ascii: "("), count: 5000) + [UInt8](repeating: UInt8(ascii: "l"), count: 5000) + [UInt8(ascii: ".")]
        let (value, _) = try run(deep)
        #expect(throws: PickleError.self) { try value.walk { _ in true } }
    }

    @Test("torch.save zip and legacy files give the same tensors; views are gathered")
    func fixtures() throws {
        let zipped = try Checkpoint.read(TestSupport.fixture("pytorch/views.pth"))
        let legacy = try Checkpoint.read(TestSupport.fixture("pytorch/views_legacy.pth"))
        #expect(zipped.sourceFormat == .pytorch && legacy.sourceFormat == .pytorch)
        #expect(zipped.tensors.map(\.name) == legacy.tensors.map(\.name))
        for (a, b) in zip(zipped.tensors, legacy.tensors) {
            #expect(a.shape == b.shape)
            #expect(a.dtype == b.dtype)
            let bytesA = try a.data.readAll()
            let bytesB = try b.data.readAll()
            #expect(bytesA == bytesB)
        }
        let transposed = try #require(zipped.tensors.first { $0.name == "transposed" })
        #expect(transposed.shape == [6, 4])
        #expect(try TensorValues.decode(transposed, path: "").values.prefix(4) == [0, 6, 12, 18])
        let slice = try #require(zipped.tensors.first { $0.name == "row_slice" })
        #expect(try TensorValues.decode(slice, path: "").values.first == 6)
    }
}

/// Stands in for a tensor's bytes where only names and shapes matter.
struct ShapeOnlySource: TensorSource {
    let byteCount: UInt64
    var fileRegion: FileRegion? { nil }
    func forEachChunk(maxChunk: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        Issue.record("a shape-only tensor was read")
    }
}

@Suite("first convolution and head of every torchvision model and a timm model per module")
struct NameRecordTests {
    struct Record: Decodable {
        let tensors: [Entry]
        let firstConv: String?
        let heads: [String]
        enum CodingKeys: String, CodingKey {
            case tensors, heads
            case firstConv = "first_conv"
        }
        struct Entry: Decodable {
            let name: String
            let shape: [Int]
            init(from decoder: any Decoder) throws {
                var c = try decoder.unkeyedContainer()
                name = try c.decode(String.self)
                shape = try c.decode([Int].self)
            }
        }
    }

    /// fixtures/pytorch/name_records.json.gz, made by make_name_records.py from the libraries themselves.
    static func records() throws -> [String: Record] {
        let gunzip = Process()
        gunzip.executableURL = URL(fileURLWithPath: "/bin/sh")
        gunzip.arguments = ["-c", "gzip -dc \"$0\"", TestSupport.fixture("pytorch/name_records.json.gz")]
        let pipe = Pipe()
        gunzip.standardOutput = pipe
        try gunzip.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        gunzip.waitUntilExit()
        struct File: Decodable { let models: [String: Record] }
        return try JSONDecoder().decode(File.self, from: data).models
    }

    /// Models whose stem or head cannot be one layer found by name, and why: the user names them with
    /// --layer (README).
    static let exceptions: [String: String] = [
        "timm/crossvit_9_240": "two patch embeddings read the image (two branches) and two heads",
        "timm/efficientvim_m1": "four classifier heads (one per stage)",
        "timm/fastvit_ma36": "the stem's re-parameterisable branches: two convolutions read the image",
        "timm/gemma4_vit_167m": "the patch embedding is a Linear layer, not a convolution",
        "timm/naflexvit_base_patch16_gap": "the patch embedding is a Linear layer, not a convolution",
        "timm/tresnet_l": "space-to-depth before the stem: its 48 input channels are 16 pixels x 3 colours",
    ]

    @Test func detectionMatchesTheLibraries() throws {
        let records = try Self.records().filter { Self.exceptions[$0.key] == nil }
        #expect(records.count > 100)
        var wrong: [String] = []
        for (model, record) in records.sorted(by: { $0.key < $1.key }) {
            let tensors = record.tensors.map { entry in
                Tensor(
                    name: entry.name, dtype: .f32, shape: entry.shape, layout: StateDictGrouping.layout(name: entry.name, shape: entry.shape),
                    data: ShapeOnlySource(byteCount: UInt64(entry.shape.reduce(1, *) * 4)))
            }
            let graph = TensorGraph(layers: StateDictGrouping.layers(from: tensors), sourceFormat: .pytorch, sourcePath: model, sourceFiles: [])
            let conv = Result { try LayerDetection.firstConvolution(in: graph) }
            let heads = Result { try LayerDetection.classifierHeads(in: graph) }
            // A layer the model does not hold (a feature model without a head) must not be found.
            if (try? conv.get()) != record.firstConv { wrong.append("\(model): first conv \(conv) != \(record.firstConv ?? "none")") }
            if (try? heads.get()) != (record.heads.isEmpty ? nil : record.heads) { wrong.append("\(model): heads \(heads) != \(record.heads)") }
        }
        #expect(wrong.isEmpty, Comment(rawValue: "\(wrong.count) of \(records.count * 2) detections differ:\n" + wrong.joined(separator: "\n")))
    }

    /// The order recovered from a safetensors file's sorted names finds the true first and last layer of
    /// (nearly) every library model, where the sorted order itself does not (StateDictOrder's figures).
    @Test func recoveredOrderFindsTheModelsFirstAndLastLayers() throws {
        let records = try Self.records()
        var first = 0
        var last = 0
        for record in records.values {
            let tensors = record.tensors.map { entry in
                Tensor(
                    name: entry.name, dtype: .f32, shape: entry.shape, layout: StateDictGrouping.layout(name: entry.name, shape: entry.shape),
                    data: ShapeOnlySource(byteCount: 0))
            }
            let truth = StateDictGrouping.layers(from: tensors).map(\.name)
            let recovered = StateDictOrder.recovered(StateDictGrouping.layers(from: tensors.sorted { $0.name < $1.name })).map(\.name)
            if recovered.first == truth.first { first += 1 }
            if recovered.last == truth.last { last += 1 }
        }
        #expect(records.count == 177 && first >= 163 && last >= 169, "first \(first), last \(last) of \(records.count)")
    }

    /// No torchvision or timm classifier has a Linear that set-input-shape would refuse as reading a
    /// flattened map: in the state dict's order (a .pth) and in a safetensors file's sorted order alike,
    /// the only ones found are the torchvision families known to pool adaptively (VGG, AlexNet,
    /// GoogLeNet's auxiliary heads).
    @Test func noLibraryClassifierReadsAnUnknownFlattenedMap() throws {
        let records = try Self.records()
        var refused: [String] = []
        var adaptive: Set<String> = []
        for (model, record) in records.sorted(by: { $0.key < $1.key }) {
            let tensors = record.tensors.map { entry in
                Tensor(
                    name: entry.name, dtype: .f32, shape: entry.shape, layout: StateDictGrouping.layout(name: entry.name, shape: entry.shape),
                    data: ShapeOnlySource(byteCount: UInt64(entry.shape.reduce(1, *) * 4)))
            }
            for format in [CheckpointFormat.pytorch, .safetensors] {
                let ordered = format == .pytorch ? tensors : tensors.sorted { $0.name < $1.name }
                let graph = TensorGraph(layers: StateDictGrouping.layers(from: ordered), sourceFormat: format, sourcePath: model, sourceFiles: [])
                for map in FlattenedMaps.find(in: graph) {
                    if map.fixedBecause == nil {
                        refused.append("\(model) (\(format)): \(map.layer) reads \(map.mapText) of \(map.convolution)")
                    } else {
                        adaptive.insert(model)
                    }
                }
            }
        }
        #expect(refused.isEmpty, Comment(rawValue: refused.joined(separator: "\n")))
        #expect(
            adaptive.isSuperset(of: ["torchvision/vgg16", "torchvision/alexnet", "torchvision/googlenet"]), Comment(rawValue: "\(adaptive.sorted())"))
    }
}

@Suite("hostile pickle nesting")
struct PickleNestingTests {
    @Test("a million nested lists are refused and freed without exhausting the stack")
    func deepNestingIsFreedIteratively() throws {
        let depth = 1_000_000
        let pickle = [UInt8](repeating: UInt8(ascii: "("), count: depth) + [UInt8](repeating: UInt8(ascii: "l"), count: depth) + [UInt8(ascii: ".")]
        var machine = PickleMachine()
        var input = PickleBytes(pickle)
        let value = try machine.load(&input)
        #expect(throws: PickleError.self) { try value.walk { _ in true } }
    }
}

extension PickleNestingTests {
    @Test("a deep value left in the memo is freed without exhausting the stack, and the result is intact")
    func deepMemoIsFreedIteratively() throws {
        let depth = 1_000_000
        // Deep nesting, memoised and popped; then a small dict {'a': 1} is the result.
        var pickle = [UInt8](repeating: UInt8(ascii: "("), count: depth) + [UInt8](repeating: UInt8(ascii: "l"), count: depth)
        pickle += [UInt8(ascii: "q"), 0, UInt8(ascii: "0"), UInt8(ascii: "}"), UInt8(ascii: "q"), 1]
        pickle += [0x8C, 1, UInt8(ascii: "a"), UInt8(ascii: "K"), 1, UInt8(ascii: "s"), UInt8(ascii: ".")]
        var machine = PickleMachine()
        var input = PickleBytes(pickle)
        let value = try machine.load(&input)
        guard case .dict(let dict) = value else {
            Issue.record("not a dict")
            return
        }
        #expect(dict.entries.count == 1)
        #expect(dict.entries.first?.value.int == 1)
    }
}
