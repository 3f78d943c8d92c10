import Foundation
import Testing

@testable import WSurgery

/// A layer of float32 tensors with the given names and shapes (zeros), as a state dict would give.
private func stateDict(_ entries: [(String, [Int])], path: String = "synthetic.safetensors") -> TensorGraph {
    let tensors = entries.map { name, shape in
        Tensor(
            name: name, dtype: .f32, shape: shape, layout: StateDictGrouping.layout(name: name, shape: shape),
            data: MemorySource(bytes: [UInt8](repeating: 0, count: 4 * shape.reduce(1, *))))
    }
    return TensorGraph(layers: StateDictGrouping.layers(from: tensors), sourceFormat: .safetensors, sourcePath: path, sourceFiles: [])
}

@Suite("Surgery math")
struct SurgeryMathTests {
    @Test("a linear map along the input axis sums a Keras kernel's channels")
    func collapseSumsChannels() {
        // (kh=1, kw=1, in=3, out=2): channel c of output o holds 10*c + o.
        let kernel = ValueArray(shape: [1, 1, 3, 2], values: [0, 1, 10, 11, 20, 21])
        let collapsed = kernel.mapped(along: 2, by: [[1, 1, 1]])
        #expect(collapsed == ValueArray(shape: [1, 1, 1, 2], values: [30, 33]))
        #expect(kernel.sums(keeping: 3) == [30, 33])
    }

    @Test("timm's adapt_input_conv rules: repeat cyclically, keep N, scale by 3/N; sum for 1")
    func timmRules() throws {
        func rows(_ n: Int, source: Int = 3) throws -> [[Double]] {
            try ChannelAdaptation(rule: .adapt(channels: n, extra: nil, rescale: true)).matrix(source: source)
        }
        #expect(try rows(1) == [[1, 1, 1]])
        #expect(try rows(2) == [[1.5, 0, 0], [0, 1.5, 0]])
        #expect(try rows(4) == [[0.75, 0, 0], [0, 0.75, 0], [0, 0, 0.75], [0.75, 0, 0]])
        #expect(try rows(3, source: 1) == [[1.0 / 3], [1.0 / 3], [1.0 / 3]])
        let copyRed = try ChannelAdaptation(rule: .adapt(channels: 4, extra: .copy(0), rescale: false)).matrix(source: 3)
        #expect(copyRed == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
        let zeros = try ChannelAdaptation(rule: .adapt(channels: 5, extra: .zeros, rescale: true)).matrix(source: 3)
        #expect(zeros[3] == [0, 0, 0] && zeros[0] == [1, 0, 0])
        let luma = try ChannelAdaptation(rule: .collapse(.luma)).matrix(source: 3)
        #expect(abs(luma[0].reduce(0, +) - 3) < 1e-12)
    }

    @Test("option parsing rejects what it cannot use")
    func optionParsing() throws {
        #expect(try ChannelAdaptation.Normalization(parsing: "imagenet") == .imagenet)
        #expect(try ChannelAdaptation.Normalization(parsing: "0.5,0.5/0.25,0.5") == .init(mean: [0.5, 0.5], std: [0.25, 0.5]))
        #expect(throws: WSurgeryError.self) { try ChannelAdaptation.Normalization(parsing: "0.5,0.5/0.25") }
        #expect(throws: WSurgeryError.self) { try ChannelAdaptation.Normalization(parsing: "0.5/0") }
        #expect(try ChannelAdaptation.ExtraFill(parsing: "copy:2") == .copy(2))
        #expect(throws: WSurgeryError.self) { try ChannelAdaptation.ExtraFill(parsing: "copy:x") }
        #expect(try Initializer(parsing: "trunc-normal:0.02", option: "--init") == .truncNormal(0.02))
        #expect(try Initializer(parsing: "zeros", option: "--init") == .constant(0))
        #expect(throws: WSurgeryError.self) { try Initializer(parsing: "uniform", option: "--init") }
        #expect(throws: WSurgeryError.self) { try Initializer(parsing: "xavier", option: "--init") }
        #expect(throws: WSurgeryError.self) { try HeadReplacement(classes: 0).validate() }
        #expect(throws: WSurgeryError.self) { try HeadReplacement(classes: 2, keepClasses: [1, 2, 3]).validate() }
        #expect(throws: WSurgeryError.self) { try HeadReplacement(classes: 5, keepClasses: [1, 1]).validate() }
        // The pipeline reports a bad option and an input it cannot open together, the input first.
        for pass in [HeadReplacement(classes: 0) as any GraphPass, ChannelAdaptation(rule: .adapt(channels: 0, extra: nil, rescale: true))] {
            #expect {
                try Pipeline.run([pass], input: "/nonexistent/model.h5", output: nil)
            } throws: { error in
                guard case WSurgeryError.several(let problems) = error, problems.count == 2 else { return false }
                guard case .cannotOpen = problems[0], case .invalidOption = problems[1] else { return false }
                return (error as? WSurgeryError)?.category == .cannotOpenInput
            }
        }
    }

    @Test("fans follow each framework's layout")
    func fans() {
        #expect(Fans(shape: [3, 3, 16, 32], layout: .keras) == Fans(fanIn: 144, fanOut: 288))
        #expect(Fans(shape: [32, 16, 3, 3], layout: .torch) == Fans(fanIn: 144, fanOut: 288))
        #expect(Fans(shape: [512, 10], layout: .keras) == Fans(fanIn: 512, fanOut: 10))
        #expect(Fans(shape: [10, 512], layout: .torch) == Fans(fanIn: 512, fanOut: 10))
    }

    @Test("each tensor's stream is deterministic per seed and name, and draws stay in bounds")
    func generator() {
        let a = Philox(seed: 1, stream: "fc.weight")
        let b = Philox(seed: 1, stream: "fc.weight")
        let c = Philox(seed: 1, stream: "fc.bias")
        #expect(a == b && a != c && Philox(seed: 2, stream: "fc.weight") != a)
        let fans = Fans(fanIn: 100, fanOut: 10)
        #expect(
            Initializer.torchDefault.sample(count: 100, fans: fans, stream: a) == Initializer.torchDefault.sample(count: 100, fans: fans, stream: b))
        #expect(
            Initializer.torchDefault.sample(count: 100, fans: fans, stream: a) != Initializer.torchDefault.sample(count: 100, fans: fans, stream: c))
        let draws = Initializer.torchDefault.sample(count: 20_000, fans: fans, stream: a)
        #expect(draws.allSatisfy { abs($0) < 0.1 })
        #expect(draws.max()! > 0.099 && draws.min()! < -0.099)
        let normal = Initializer.heNormal.sample(count: 20_000, fans: Fans(fanIn: 50, fanOut: 10), stream: a)
        let limit = 2 * (2.0 / 50).squareRoot() / 0.87962566103423978
        #expect(normal.allSatisfy { abs($0) <= limit })
        let trunc = Initializer.truncNormal(3).sample(count: 20_000, fans: fans, stream: a)
        #expect(trunc.allSatisfy { abs($0) <= 2 } && trunc.max()! > 1.9)
    }

    @Test("values round-trip through every editable dtype; bfloat16 rounds to nearest even")
    func dtypes() throws {
        let values: [Double] = [0, 1, -2.5, 0.1, 65504]
        for dtype in [DType.f16, .bf16, .f32, .f64] {
            let tensor = Tensor(
                name: "t", dtype: dtype, shape: [5], layout: .unknown, data: MemorySource(bytes: TensorValues.encode(values, as: dtype)))
            let back = try TensorValues.decode(tensor, path: "mem")
            for (x, y) in zip(values, back.values) { #expect(abs(x - y) <= abs(x) * 0.01) }
        }
        #expect(TensorValues.bfloat16Bits(Float(bitPattern: 0x3F80_8000)) == 0x3F80)  // tie -> even
        #expect(TensorValues.bfloat16Bits(Float(bitPattern: 0x3F81_8000)) == 0x3F82)
        let ints = Tensor(name: "q", dtype: .i8, shape: [1], layout: .unknown, data: MemorySource(bytes: [1]))
        #expect(throws: WSurgeryError.self) { try TensorValues.decode(ints, path: "mem") }
    }
}

@Suite("Layer detection")
struct LayerDetectionTests {
    @Test("state-dict names people use: Hugging Face, VGG, DeiT")
    func names() throws {
        let hf = stateDict([
            ("resnet.embedder.embedder.convolution.weight", [8, 3, 7, 7]), ("resnet.encoder.conv.weight", [8, 8, 3, 3]),
            ("classifier.1.weight", [10, 8]), ("classifier.1.bias", [10]),
        ])
        #expect(try LayerDetection.firstConvolution(in: hf) == "resnet.embedder.embedder.convolution")
        #expect(try LayerDetection.classifierHeads(in: hf) == ["classifier.1"])
        let vgg = stateDict([
            ("features.0.weight", [64, 3, 3, 3]), ("features.2.weight", [64, 64, 3, 3]),
            ("classifier.0.weight", [4096, 25088]), ("classifier.3.weight", [4096, 4096]), ("classifier.6.weight", [1000, 4096]),
        ])
        #expect(try LayerDetection.firstConvolution(in: vgg) == "features.0")
        #expect(try LayerDetection.classifierHeads(in: vgg) == ["classifier.6"])
        let deit = stateDict([
            ("patch_embed.proj.weight", [192, 3, 16, 16]), ("blocks.0.mlp.fc1.weight", [768, 192]),
            ("head.weight", [1000, 192]), ("head_dist.weight", [1000, 192]),
        ])
        #expect(try LayerDetection.firstConvolution(in: deit) == "patch_embed.proj")
        #expect(try LayerDetection.classifierHeads(in: deit) == ["head", "head_dist"])
        let wrapped = stateDict([("module.conv1.weight", [8, 3, 3, 3]), ("module.fc.weight", [10, 8])])
        #expect(try LayerDetection.classifierHeads(in: wrapped) == ["module.fc"])
    }

    @Test("ambiguity and absence are errors listing the candidates")
    func ambiguity() {
        let two = stateDict([("a.weight", [8, 3, 3, 3]), ("b.weight", [8, 3, 3, 3]), ("p.weight", [4, 8]), ("q.weight", [2, 4])])
        #expect {
            try LayerDetection.firstConvolution(in: two)
        } throws: { error in
            "\(error)".contains("several convolutions have 3 input channels") && "\(error)".contains("a (conv2d (8, 3, 3, 3))")
        }
        #expect {
            try LayerDetection.classifierHeads(in: two)
        } throws: { error in
            "\(error)".contains("p (dense") && "\(error)".contains("q (dense") && "\(error)".contains("name it with 'layer'")
        }
    }

    @Test("Keras graphs are followed from the input and back from the output, nested models included")
    func kerasGraphs() throws {
        let nested = try Checkpoint.read(TestSupport.fixture("keras_nested.keras"))
        #expect(try LayerDetection.firstConvolution(in: nested) == "base_conv")
        #expect(try LayerDetection.classifierHeads(in: nested) == ["classifier"])
        let keras2 = try Checkpoint.read(TestSupport.fixture("keras2_style.h5"))
        #expect(try LayerDetection.firstConvolution(in: keras2) == "conv2d_1")
    }
}

@Suite("Surgery round trips")
struct SurgeryRoundTripTests {
    @Test("collapse then write: the conv kernel has one channel, every other tensor is byte-identical, in every format")
    func collapseRoundTrip() throws {
        let dir = TestSupport.temporaryDirectory()
        let input = TestSupport.fixture("keras_cnn.h5")
        let before = try TestSupport.tensorBytes(try Checkpoint.read(input))
        for name in ["out.h5", "out.keras", "out.safetensors", "out.weights.h5"] {
            let result = try Pipeline.run([ChannelAdaptation(rule: .collapse(.sum))], input: input, output: dir + "/" + name)
            #expect(result.reports[0].changes.map(\.tensor) == ["conv1/kernel"])
            let back = try Checkpoint.read(dir + "/" + name)
            let kernel = try #require(
                back.tensors.first {
                    StateDictGrouping.localName($0.name) == "kernel" && $0.shape.count == 4 && $0.shape[3] == 8 && $0.shape[0] == 3
                        && $0.shape[2] == 1
                })
            #expect(kernel.shape == [3, 3, 1, 8])
            let after = try TestSupport.tensorBytes(back)
            var unchanged = 0
            for (tensorName, bytes) in before where !tensorName.hasPrefix("conv1/kernel") {
                if let match = after.first(where: { $0.key.hasSuffix(tensorName) || tensorName.hasSuffix($0.key) }) {
                    #expect(match.value == bytes, "\(name): \(tensorName)")
                    unchanged += 1
                }
            }
            #expect(unchanged >= 9, "\(name): compared \(unchanged) tensors")
            #expect(back.optimizer == nil)
        }
    }

    @Test("the same seed gives byte-identical output; --dry-run writes nothing")
    func determinism() throws {
        let dir = TestSupport.temporaryDirectory()
        let input = TestSupport.fixture("torch_resnet_tiny.safetensors")
        let pass = HeadReplacement(classes: 3, seed: 9)
        _ = try Pipeline.run([pass], input: input, output: dir + "/a.safetensors")
        _ = try Pipeline.run([pass], input: input, output: dir + "/b.safetensors")
        #expect(FileManager.default.contents(atPath: dir + "/a.safetensors") == FileManager.default.contents(atPath: dir + "/b.safetensors"))
        let dry = try Pipeline.run([pass], input: input, output: nil)
        #expect(dry.reports[0].changes.count == 2)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["a.safetensors", "b.safetensors"])
    }
}
