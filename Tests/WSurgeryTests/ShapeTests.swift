import Foundation
import Testing

@testable import WSurgery

/// A Keras 3 Functional config from (name, class, config, inbound) rows; the first row is the input.
private func functional(_ input: KerasShape, _ rows: [(String, String, [(String, JSONValue)], [String])]) -> JSONValue {
    func tensor(_ source: String) -> JSONValue {
        .object([
            ("class_name", .string("__keras_tensor__")),
            ("config", .object([("shape", .null), ("keras_history", .array([.string(source), .int(0), .int(0)]))])),
        ])
    }
    var layers: [JSONValue] = [
        .object([
            ("class_name", .string("InputLayer")), ("name", .string("image")),
            ("config", .object([("batch_shape", ShapeText.json(input)), ("name", .string("image"))])), ("inbound_nodes", .array([])),
        ])
    ]
    for (name, className, config, inbound) in rows {
        let args: JSONValue = inbound.count == 1 ? tensor(inbound[0]) : .array(inbound.map(tensor))
        layers.append(
            .object([
                ("class_name", .string(className)), ("name", .string(name)), ("config", .object([("name", .string(name))] + config)),
                ("build_config", .object([("input_shape", .array([.null, .int(1)]))])),
                ("inbound_nodes", .array([.object([("args", .array([args])), ("kwargs", .object([]))])])),
            ]))
    }
    return .object([
        ("class_name", .string("Functional")),
        (
            "config",
            .object([
                ("name", .string("m")), ("layers", .array(layers)),
                ("input_layers", .array([.string("image"), .int(0), .int(0)])),
                ("output_layers", .array([.string(rows.last!.0), .int(0), .int(0)])),
            ])
        ),
    ])
}

@Suite("Shape inference")
struct ShapeInferenceTests {
    @Test("conv/pool arithmetic: same = ceil(n/s), valid = floor((n - d(k-1) - 1)/s) + 1, transposed per Keras")
    func lengths() {
        #expect(LayerShapes.convLength(224, 3, 2, 1, "same") == 112)
        #expect(LayerShapes.convLength(225, 3, 2, 1, "same") == 113)
        #expect(LayerShapes.convLength(224, 7, 2, 1, "valid") == 109)
        #expect(LayerShapes.convLength(10, 3, 1, 2, "valid") == 6)
        #expect(LayerShapes.convLength(2, 3, 1, 1, "valid")! < 1)
        #expect(LayerShapes.transposedLength(8, 3, 2, 1, "valid", nil) == 17)
        #expect(LayerShapes.transposedLength(8, 3, 2, 1, "same", nil) == 16)
        #expect(LayerShapes.transposedLength(8, 3, 2, 1, "same", 1) == 16)
    }

    @Test("a VGG-style stack at 256x256 flattens to 8*8*512 = 32768")
    func vggFlatten() throws {
        var rows: [(String, String, [(String, JSONValue)], [String])] = []
        var previous = "image"
        for block in 1...5 {
            rows.append(
                (
                    "conv\(block)", "Conv2D",
                    [("filters", .int(min(64 << (block - 1), 512))), ("kernel_size", .array([.int(3), .int(3)])), ("padding", .string("same"))],
                    [previous]
                ))
            rows.append(("pool\(block)", "MaxPooling2D", [("pool_size", .array([.int(2), .int(2)])), ("strides", .null)], ["conv\(block)"]))
            previous = "pool\(block)"
        }
        rows.append(("flatten", "Flatten", [], [previous]))
        rows.append(("fc1", "Dense", [("units", .int(4096))], ["flatten"]))
        let model = functional([nil, 224, 224, 3], rows)
        let at224 = try ShapeInference.infer(model: model, path: "vgg")
        #expect(try at224.output(of: "flatten") == [nil, 25088])
        let at256 = try ShapeInference.infer(model: model, inputShapes: [[nil, 256, 256, 3]], path: "vgg")
        #expect(try at256.output(of: "flatten") == [nil, 32768])
        #expect(at256.modelOutputs == [[nil, 4096]])
        let expected = WeightFit.expectedShapes(className: "Dense", config: .object([("units", .int(4096))]), input: try at256.input(of: "fc1"))
        #expect(expected?["kernel"] == [32768, 4096])
    }

    @Test("merges: Add broadcasts equal shapes and refuses different ones; Concatenate sums its axis")
    func merges() throws {
        let ok = functional(
            [nil, 8, 8, 3],
            [
                ("a", "Conv2D", [("filters", .int(4)), ("kernel_size", .int(3)), ("padding", .string("same"))], ["image"]),
                ("b", "Conv2D", [("filters", .int(6)), ("kernel_size", .int(1))], ["image"]),
                ("cat", "Concatenate", [("axis", .int(-1))], ["a", "b"]),
            ])
        #expect(try ShapeInference.infer(model: ok, path: "m").output(of: "cat") == [nil, 8, 8, 10])
        let bad = functional(
            [nil, 8, 8, 3],
            [
                ("a", "Conv2D", [("filters", .int(4)), ("kernel_size", .int(3))], ["image"]),
                ("b", "Conv2D", [("filters", .int(4)), ("kernel_size", .int(1))], ["image"]),
                ("add", "Add", [], ["a", "b"]),
            ])
        #expect(throws: WSurgeryError.self) { try ShapeInference.infer(model: bad, path: "m") }
        do {
            _ = try ShapeInference.infer(model: bad, path: "m")
        } catch {
            guard case .shapeMismatch(_, let layer, _) = error else {
                Issue.record("wrong error \(error)")
                return
            }
            #expect(layer == "add")
        }
    }

    @Test("an unknown class blocks only what comes after it, and the error names it")
    func unknownClass() throws {
        let model = functional(
            [nil, 8, 8, 3],
            [
                ("conv", "Conv2D", [("filters", .int(4)), ("kernel_size", .int(3))], ["image"]),
                ("magic", "MyCustomLayer", [], ["conv"]),
                ("head", "Dense", [("units", .int(2))], ["magic"]),
            ])
        let result = try ShapeInference.infer(model: model, path: "m.keras")
        #expect(try result.output(of: "conv") == [nil, 6, 6, 4])
        #expect(throws: WSurgeryError.unknownLayerClass(path: "m.keras", layer: "magic", className: "MyCustomLayer", needed: "head")) {
            try result.output(of: "head")
        }
    }

    @Test("a spatial size reaching zero is an input-too-small error naming the layer")
    func tooSmall() {
        let model = functional([nil, 4, 4, 3], [("conv", "Conv2D", [("filters", .int(4)), ("kernel_size", .int(5))], ["image"])])
        #expect(throws: WSurgeryError.inputTooSmall(path: "m", layer: "conv", shape: [nil, 0, 0, 4])) {
            try ShapeInference.infer(model: model, path: "m")
        }
    }

    @Test("removing a layer reconnects its reader and the outputs; the recorded shapes are refreshed")
    func removal() throws {
        let model = functional(
            [nil, 8, 8, 3],
            [
                ("conv", "Conv2D", [("filters", .int(4)), ("kernel_size", .int(3))], ["image"]),
                ("flatten", "Flatten", [], ["conv"]),
                ("drop", "Dropout", [], ["flatten"]),
                ("fc", "Dense", [("units", .int(2))], ["drop"]),
            ])
        let withoutDrop = try KerasLayerRemoval.removing(["drop"], from: model, path: "m")
        #expect(KerasConfig.layer(named: "fc", in: withoutDrop)?.inbound == ["flatten"])
        let top = try KerasLayerRemoval.removing(["flatten", "drop", "fc"], from: model, path: "m")
        #expect(KerasConfig.outputs(of: top) == ["conv"])
        let shapes = try ShapeInference.infer(model: top, path: "m")
        #expect(shapes.modelOutputs == [[nil, 6, 6, 4]])
        let (refreshed, fields) = KerasConfigEdit.refreshingShapes(
            ConfigDocument(json: withoutDrop), with: try ShapeInference.infer(model: withoutDrop, path: "m"))
        #expect(fields.contains("fc.build_config.input_shape"))
        let fc = refreshed.json["config"]?["layers"]?.arrayValue?.first { KerasConfig.entryName($0) == "fc" }
        #expect(fc?["build_config"]?["input_shape"] == ShapeText.json([nil, 144]))
        #expect(throws: WSurgeryError.self) { try KerasLayerRemoval.removing(["image"], from: model, path: "m") }
    }
}

@Suite("Resampling and transposes")
struct ResamplingTests {
    @Test("bilinear without antialiasing: 2x up is (0.75, 0.25) pairs, 2x down averages pairs; rows sum to 1")
    func bilinear() {
        let up = Resampling.matrix(from: 2, to: 4, filter: .linear, antialias: false)
        #expect(up == [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
        let down = Resampling.matrix(from: 4, to: 2, filter: .linear, antialias: false)
        #expect(down == [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
        for row in Resampling.matrix(from: 7, to: 3, filter: .cubic, antialias: true) {
            #expect(abs(row.reduce(0, +) - 1) < 1e-12)
        }
    }

    @Test("resampling a constant grid gives the constant")
    func constant() {
        let grid = ValueArray(shape: [3, 5, 2], values: Array(repeating: 2.5, count: 30))
        let resized = Resampling.resize(grid, axes: [0, 1], to: [7, 4], filter: .cubic, antialias: true)
        #expect(resized.shape == [7, 4, 2])
        #expect(resized.values.allSatisfy { abs($0 - 2.5) < 1e-12 })
    }

    @Test("byte transposes follow numpy's transpose and invert exactly")
    func transpose() {
        // (2, 3) int16 elements 0...5 -> (3, 2).
        let bytes: [UInt8] = (0..<6).flatMap { [UInt8($0), 0] }
        let t = Transpose.bytes(bytes, shape: [2, 3], elementSize: 2, axes: [1, 0])
        #expect(stride(from: 0, to: 12, by: 2).map { t[$0] } == [0, 3, 1, 4, 2, 5])
        let kernel: [UInt8] = (0..<(3 * 3 * 2 * 4)).map { UInt8($0) }
        let torch = Transpose.bytes(kernel, shape: [3, 3, 2, 4], elementSize: 1, axes: [3, 2, 0, 1])
        #expect(Transpose.bytes(torch, shape: [4, 2, 3, 3], elementSize: 1, axes: [2, 3, 1, 0]) == kernel)
    }

    @Test("picking keeps, reorders and grows slices along an axis")
    func picking() {
        let a = ValueArray(shape: [2, 3], values: [0, 1, 2, 10, 11, 12])
        let picked = a.picking(along: 1, sources: [2, 0, nil, nil]) { _ in -1 }
        #expect(picked == ValueArray(shape: [2, 4], values: [2, 0, -1, -1, 12, 10, -1, -1]))
    }

    @Test("--size parses HxW and a single number")
    func size() throws {
        #expect(try ImageSize(parsing: "256x192") == ImageSize(height: 256, width: 192))
        #expect(try ImageSize(parsing: "64") == ImageSize(height: 64, width: 64))
        #expect(throws: WSurgeryError.self) { try ImageSize(parsing: "a x b") }
        #expect(throws: WSurgeryError.self) { try InputShapeChange(height: 0, width: 3).validate() }
    }
}
