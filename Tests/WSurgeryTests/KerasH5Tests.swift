import Foundation
import Testing

@testable import WSurgery

@Suite("HDF5 datasets placed by byte range")
struct HDF5PlacementTests {
    @Test("empty, scalar and ordinary tensors round-trip through a .h5 whose bytes are placed after the metadata")
    func emptyScalarAndOrdinaryTensors() throws {
        let tensors = [
            ("a.weight", [0, 3], [Double]()), ("b.weight", [], [2.5]), ("c.weight", [2, 3], (0..<6).map(Double.init)),
        ].map { name, shape, values in
            Tensor(name: name, dtype: .f32, shape: shape, layout: .unknown, data: MemorySource(bytes: TensorValues.encode(values, as: .f32)))
        }
        let graph = TensorGraph(layers: StateDictGrouping.layers(from: tensors), sourceFormat: .safetensors, sourcePath: "mem", sourceFiles: [])
        let dir = TestSupport.temporaryDirectory()
        try Checkpoint.write(graph, to: dir + "/placed.h5")
        let back = try Checkpoint.read(dir + "/placed.h5")
        #expect(back.tensors.map(\.shape) == [[0, 3], [], [2, 3]])
        #expect(
            try TestSupport.tensorBytes(back).values.sorted { $0.count < $1.count } == [
                [], TensorValues.encode([2.5], as: .f32), TensorValues.encode((0..<6).map(Double.init), as: .f32),
            ])
    }
}

@Suite("Keras HDF5 readers and writers")
struct KerasH5Tests {
    @Test func legacyFullModelReadsLayersInLayerNamesOrder() throws {
        let graph = try Checkpoint.read(TestSupport.fixture("keras_cnn.h5"))
        #expect(graph.layers.map(\.name) == ["image", "conv1", "bn1", "relu1", "pool1", "conv2", "flatten", "predictions"])
        #expect(graph.layer(named: "bn1")?.tensors.map(\.name) == ["bn1/gamma", "bn1/beta", "bn1/moving_mean", "bn1/moving_variance"])
        #expect(graph.layer(named: "conv1")?.kind == .conv2d)
        #expect(graph.layer(named: "conv1")?.tensors.first?.layout == .keras)
        #expect(graph.layer(named: "bn1")?.inbound == ["conv1"])
        #expect(graph.optimizer?.tensors.isEmpty == false)
        #expect(graph.fileStates[KerasH5FileState.self]?.kerasFlavor == .legacyFullModel)
    }

    @Test func keras2StyleFixedLengthNamesAndCompressedDatasets() throws {
        let graph = try Checkpoint.read(TestSupport.fixture("keras2_style.h5"))
        let conv = try #require(graph.layer(named: "conv2d_1"))
        #expect(conv.tensors.map(\.name) == ["conv2d_1_1/kernel:0", "conv2d_1_1/bias:0"])
        #expect(conv.tensors.map(\.dtype) == [.f32, .f16])
        #expect(graph.layer(named: "dense_1")?.tensors.first?.dtype == .f64)
        #expect(graph.optimizer?.tensors.first?.dtype == .i64)
        // The gzip dataset decodes to its 108 floats.
        #expect(try conv.tensors[0].data.readAll().count == 108 * 4)
        #expect(graph.fileStates[KerasSavedBy.self]?.version == "2.4.0")
    }

    @Test(arguments: ["keras_cnn.h5", "keras_cnn.keras", "keras_cnn.weights.h5", "keras_nested.h5", "keras_nested.keras", "keras2_style.h5"])
    func sameFormatRoundTripKeepsEveryTensorBitForBit(_ name: String) throws {
        let graph = try Checkpoint.read(TestSupport.fixture(name))
        let dir = TestSupport.temporaryDirectory()
        let suffix = name.hasSuffix(".weights.h5") ? ".weights.h5" : name.hasSuffix(".keras") ? ".keras" : ".h5"
        try Checkpoint.write(graph, to: dir + "/out" + suffix)
        let back = try Checkpoint.read(dir + "/out" + suffix)
        #expect(back.layers.map(\.name) == graph.layers.map(\.name))
        #expect(try TestSupport.tensorBytes(back) == TestSupport.tensorBytes(graph))
        #expect(back.tensors.map(\.dtype) == graph.tensors.map(\.dtype))
    }

    @Test func softAndExternalLinksAndUnknownLayoutsGetSpecificErrors() throws {
        let soft = TestSupport.fixture("bad/soft_link.h5")
        #expect(throws: WSurgeryError.softLink(path: soft, object: "model_weights/dense", target: "/model_weights/real")) {
            try Checkpoint.read(soft)
        }
        let external = TestSupport.fixture("bad/external_link.h5")
        #expect(throws: WSurgeryError.externalLink(path: external, object: "model_weights/dense", target: "elsewhere.h5:/model_weights/dense")) {
            try Checkpoint.read(external)
        }
        let other = TestSupport.fixture("bad/not_keras.h5")
        do {
            _ = try Checkpoint.read(other)
            Issue.record("expected an error")
        } catch let error as WSurgeryError {
            guard case .unknownHDF5Layout(let path, _) = error else {
                Issue.record("wrong error \(error)")
                return
            }
            #expect(path == other)
            #expect(error.category == .badData)
        }
    }

    @Test func longNameListsAreSplitAsKerasDoesAndReadBack() throws {
        // 3000 layers x 30-byte names = 90,000 bytes > 64,512: Keras writes layer_names0, layer_names1.
        let names = (0..<3000).map { String(format: "layer_with_a_long_name_%07d", $0) }
        let layers = names.map { Layer(name: $0, kind: .unknown) }
        let graph = TensorGraph(layers: layers, sourceFormat: .safetensors, sourcePath: "-", sourceFiles: [])
        let dir = TestSupport.temporaryDirectory()
        try Checkpoint.write(graph, to: dir + "/many.h5")
        let h5 = try HDF5File.open(try InputFile(path: dir + "/many.h5"))
        #expect(try h5.hasAttribute("/", "layer_names") == false)
        #expect(try h5.hasAttribute("/", "layer_names0") && h5.hasAttribute("/", "layer_names1"))
        #expect(try h5.stringsAttribute("/", "layer_names") == names)
        // And the reader takes the split list as Keras does (the read-back before the commit found it did not).
        #expect(try Checkpoint.read(dir + "/many.h5").layers.map(\.name) == names)
    }
}

@Suite("writes are atomic and never touch the input")
struct OutputSafetyTests {
    @Test func failedWriteLeavesNothingBehind() throws {
        let graph = try Checkpoint.read(TestSupport.fixture("torch_resnet_tiny.safetensors"))
        let dir = TestSupport.temporaryDirectory()
        #expect(throws: WSurgeryError.self) { try Checkpoint.write(graph, to: dir + "/m.keras") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }

    @Test func refusesExistingOutputAndTheInputItself() throws {
        let dir = TestSupport.temporaryDirectory()
        let input = dir + "/in.safetensors"
        try FileManager.default.copyItem(atPath: TestSupport.fixture("dtypes.safetensors"), toPath: input)
        let before = try Data(contentsOf: URL(fileURLWithPath: input))
        #expect(throws: WSurgeryError.outputExists(path: input)) { try Checkpoint.precheckOutput(input, inputs: [dir + "/other"], force: false) }
        #expect(throws: WSurgeryError.outputIsInput(path: input)) { try Checkpoint.precheckOutput(input, inputs: [input], force: true) }
        let graph = try Checkpoint.read(input)
        #expect(throws: WSurgeryError.outputIsInput(path: input)) { try Checkpoint.write(graph, to: input, options: .init(force: true)) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: input)) == before)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["in.safetensors"])
    }

    @Test func unknownOutputExtensionIsAUsageError() {
        #expect(throws: WSurgeryError.self) { try Checkpoint.outputFormat(for: "model.pt", shardSize: nil) }
        #expect((try? Checkpoint.outputFormat(for: "model.pt", shardSize: nil)) == nil)
        #expect(WSurgeryError.unknownFormat(path: "x", reason: "").category == .usage)
    }

    @Test("a tensor given new values keeps its place in a legacy weight group")
    func newValuesKeepTheWeightOrder() throws {
        var graph = try Checkpoint.read(TestSupport.fixture("keras_cnn.h5"))
        let bn = try #require(graph.layer(named: "bn1"))
        let order = bn.tensors.map(\.name)
        let mean = try #require(bn.tensors.firstIndex { $0.name.contains("moving_mean") })
        var report = PassReport(pass: "test", options: [])
        graph.replaceTensor(
            layer: "bn1", index: mean, with: ValueArray(shape: [8], values: Array(repeating: 0.5, count: 8)), action: "x", in: &report)
        graph.optimizer = nil
        let output = TestSupport.temporaryDirectory() + "/bn.h5"
        try Checkpoint.write(graph, to: output)
        let back = try #require(try Checkpoint.read(output).layer(named: "bn1"))
        #expect(back.tensors.map(\.name) == order)
        #expect(try TensorValues.decode(back.tensors[mean], path: output).values == Array(repeating: 0.5, count: 8))
    }

    @Test("a config that contradicts a tensor is refused before writing, naming the layer")
    func inconsistentGraphIsRefused() throws {
        var graph = try Checkpoint.read(TestSupport.fixture("keras_cnn.h5"))
        try graph.editor.checkConsistency(of: graph)
        let conv = try #require(graph.layer(named: "conv1"))
        var report = PassReport(pass: "test", options: [])
        graph.replaceTensor(
            layer: "conv1", index: 0, with: ValueArray(shape: [3, 3, 2, 8], values: Array(repeating: 0, count: 144)), action: "x", in: &report)
        #expect(conv.tensors[0].shape == [3, 3, 3, 8])
        do {
            try graph.editor.checkConsistency(of: graph)
            Issue.record("a kernel for 2 channels on a 3-channel input was accepted")
        } catch let error as WSurgeryError {
            guard case .shapeMismatch(_, let layer, let reason) = error else { throw error }
            #expect(layer == "conv1")
            #expect(reason.contains("disagree"))
        }
    }

    @Test("a per-channel constant in the config that does not match its input's channels is refused, naming the layer")
    func inconsistentConfigConstantIsRefused() throws {
        var graph = try Checkpoint.read(TestSupport.fixture("keras_cnn.h5"))
        guard case .keras(let document)? = graph.architecture, let text = document.originalText else {
            Issue.record("keras_cnn.h5 has no model config")
            return
        }
        // A Normalization between the 3-channel input and conv1, its statistics given as config constants.
        func withNormalization(mean: String) throws -> Architecture {
            let layer =
                #"{"class_name": "Normalization", "config": {"name": "norm", "axis": [-1], "mean": \#(mean), "variance": \#(mean), "#
                + #""invert": false}, "name": "norm", "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": "#
                + #"{"shape": [null, 16, 16, 3], "dtype": "float32", "keras_history": ["image", 0, 0]}}], "kwargs": {}}]}, "#
            let conv = #"{"class_name": "Conv2D", "config": {"name": "conv1""#
            let edited = text.replacingOccurrences(of: conv, with: layer + conv)
                .replacingOccurrences(
                    of: #""keras_history": ["image", 0, 0]}}], "kwargs": {}}]}, {"class_name": "BatchNormalization""#,
                    with: #""keras_history": ["norm", 0, 0]}}], "kwargs": {}}]}, {"class_name": "BatchNormalization""#)
            #expect(edited.contains(#""name": "norm""#))
            return .keras(try ConfigDocument(text: edited))
        }
        graph.architecture = try withNormalization(mean: "[0.5, 0.5, 0.5]")
        try graph.editor.checkConsistency(of: graph)
        graph.architecture = try withNormalization(mean: "[0.5, 0.5]")
        do {
            try graph.editor.checkConsistency(of: graph)
            Issue.record("a Normalization with 2 means on a 3-channel input was accepted")
        } catch let error as WSurgeryError {
            guard case .shapeMismatch(_, let layer, let reason) = error else { throw error }
            #expect(layer == "norm")
            #expect(reason.contains("2 values for 'mean'"))
            #expect(reason.contains("3 channels"))
        }
    }
}
