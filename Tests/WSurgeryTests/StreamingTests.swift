import Foundation
import Testing

@testable import WSurgery

/// All bytes of a source read in pieces of `chunk`.
private func bytes(_ source: any TensorSource, chunk: Int = 1 << 20) throws -> [UInt8] {
    var out: [UInt8] = []
    try source.forEachChunk(maxChunk: chunk) {
        #expect($0.count <= chunk)
        out.append(contentsOf: $0)
    }
    return out
}

/// Float32 bytes of `values`.
private func f32(_ values: [Double]) -> MemorySource { MemorySource(bytes: TensorValues.encode(values, as: .f32)) }

/// A source that can only be read front to back (like a compressed HDF5 dataset).
private struct SequentialSource: TensorSource {
    let inner: MemorySource
    var byteCount: UInt64 { inner.byteCount }
    var fileRegion: FileRegion? { nil }
    func forEachChunk(maxChunk: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws { try inner.forEachChunk(maxChunk: maxChunk, body) }
}

@Suite("New tensors in blocks")
struct StreamingTests {
    @Test("Philox4x32-10 matches the Random123 known-answer vectors")
    func philoxKnownAnswers() {
        let zero = Philox(key: (0, 0)).block((0, 0, 0, 0))
        #expect([zero.0, zero.1, zero.2, zero.3] == [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8])
        let ones = Philox(key: (0xffff_ffff, 0xffff_ffff)).block((0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff))
        #expect([ones.0, ones.1, ones.2, ones.3] == [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd])
        let pi = Philox(key: (0xa409_3822, 0x299f_31d0)).block((0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344))
        #expect([pi.0, pi.1, pi.2, pi.3] == [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1])
    }

    @Test(
        "a drawn tensor has the same bytes whatever the block and chunk sizes",
        arguments: [
            Initializer.torchDefault, .glorotUniform, .kaimingNormal, .heNormal, .truncNormal(0.02), .constant(1.5),
        ])
    func drawnBlockIndependence(initializer: Initializer) throws {
        let fans = Fans(fanIn: 64, fanOut: 32)
        let stream = Philox(seed: 7, stream: "dense/kernel")
        let whole = initializer.sample(count: 1001, fans: fans, stream: stream)
        var pieces: [Double] = []
        for (start, n) in [(0, 3), (3, 1), (4, 250), (254, 747)] {
            var part = [Double](repeating: 0, count: n)
            part.withUnsafeMutableBufferPointer { initializer.fill($0, start: start, fans: fans, stream: stream) }
            pieces += part
        }
        #expect(pieces == whole)
        let source = ComputedSource(dtype: .f32, values: DrawnValues(count: 1001, initializer: initializer, fans: fans, stream: stream))
        #expect(try bytes(source, chunk: 12) == TensorValues.encode(whole, as: .f32))
        #expect(try bytes(source, chunk: 4096) == TensorValues.encode(whole, as: .f32))
    }

    @Test("uniform draws fill their interval evenly")
    func uniformMoments() {
        let values = Initializer.uniform(1).sample(count: 200_000, fans: Fans(fanIn: 1, fanOut: 1), stream: Philox(seed: 3, stream: "t"))
        let mean = values.reduce(0, +) / Double(values.count)
        let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)
        #expect(abs(mean) < 0.01)
        #expect(abs(variance / (1.0 / 3) - 1) < 0.01)
        let normal = Initializer.kaimingNormal.sample(count: 200_000, fans: Fans(fanIn: 2, fanOut: 1), stream: Philox(seed: 3, stream: "n"))
        let std = (normal.map { $0 * $0 }.reduce(0, +) / Double(normal.count)).squareRoot()
        #expect(abs(std - 1) < 0.01)
    }

    @Test("kept slices and drawn slices, in blocks, equal the whole-array rebuild", arguments: [0, 1, 2])
    func picked(axis: Int) throws {
        let shape = [3, 5, 4]
        let old = (0..<60).map { Double($0) * 0.25 }
        let oldTensor = ValueArray(shape: shape, values: old)
        var sources: [Int?] = [2, nil, 0, nil, nil, 1]
        sources = Array(sources.prefix(shape[axis] + 2))
        var newShape = shape
        newShape[axis] = sources.count
        let drawn = Initializer.glorotUniform.stream(shape: newShape, fans: Fans(fanIn: 4, fanOut: 4), seed: 5, tensor: "k")
        let expected = oldTensor.picking(along: axis, sources: sources) { i in
            Initializer.glorotUniform.sample(count: i + 1, fans: Fans(fanIn: 4, fanOut: 4), stream: drawn.stream)[i]
        }
        let values = PickedValues(old: f32(old), dtype: .f32, shape: shape, axis: axis, sources: sources, drawn: drawn)
        let tensor = Tensor(name: "k", dtype: .f32, shape: newShape, layout: .unknown, data: ComputedSource(dtype: .f32, values: values))
        #expect(try TensorValues.decode(tensor, path: "mem").values == expected.values.map { Double(Float($0)) })
    }

    @Test("a resampled grid, long or short vectors, equals the separable whole-array resize", arguments: [1, 5000])
    func resampled(inner: Int) throws {
        let (h, w, h2, w2) = (3, 4, 5, 2)
        let old = (0..<(h * w * inner)).map { Double(($0 * 37) % 101) / 8 }
        let expected = Resampling.resize(
            ValueArray(shape: [h, w, inner], values: old), axes: [0, 1], to: [h2, w2], filter: .linear, antialias: false
        ).values.map { $0 * 0.5 }
        let values = ResampledValues(
            old: try RandomAccess.of(SequentialSource(inner: MemorySource(bytes: TensorValues.encode(old, as: .f64))), memoryLimit: 0),
            dtype: .f64, outer: 1, inner: inner,
            rows: Resampling.matrix(from: h, to: h2, filter: .linear, antialias: false),
            columns: Resampling.matrix(from: w, to: w2, filter: .linear, antialias: false), scale: 0.5)
        var got: [Double] = []
        try values.forEachBlock { got += $0 }
        #expect(got.count == expected.count)
        #expect(zip(got, expected).allSatisfy { abs($0 - $1) <= 1e-12 * max(1, abs($1)) })
    }

    @Test(
        "a transposed tensor read in small blocks equals the element-by-element permutation",
        arguments: [
            ([2, 3, 4, 5], [3, 2, 0, 1], 4), ([6, 7], [1, 0], 2), ([2, 3, 4], [1, 2, 0], 8), ([4, 3, 2], [2, 0, 1], 3),
        ])
    func transposed(shape: [Int], axes: [Int], elementSize: Int) throws {
        let count = shape.reduce(1, *)
        let input = (0..<(count * elementSize)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 / 5) }
        // The reference: output element at multi-index i is input element at the permuted index.
        var expected = [UInt8](repeating: 0, count: input.count)
        let outShape = axes.map { shape[$0] }
        for target in 0..<count {
            var rest = target
            var sourceIndex = [Int](repeating: 0, count: shape.count)
            for axis in stride(from: outShape.count - 1, through: 0, by: -1) {
                sourceIndex[axes[axis]] = rest % outShape[axis]
                rest /= outShape[axis]
            }
            let source = sourceIndex.enumerated().reduce(0) { $0 * shape[$1.offset] + $1.element }
            for b in 0..<elementSize { expected[target * elementSize + b] = input[source * elementSize + b] }
        }
        #expect(Transpose.bytes(input, shape: shape, elementSize: elementSize, axes: axes) == expected)
        for block in [1, elementSize * 5, 1 << 20] {
            let source = TransposedSource(
                base: SequentialSource(inner: MemorySource(bytes: input)), shape: shape, elementSize: elementSize, axes: axes, blockBytes: block)
            #expect(try bytes(source, chunk: 7 * elementSize) == expected)
        }
    }

    @Test("a source that reads only front to back is spilled to an unlinked file for random access")
    func spill() throws {
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 13) }
        let spilled = try RandomAccess.of(SequentialSource(inner: MemorySource(bytes: data)), memoryLimit: 100)
        #expect(spilled.fileRegion != nil)
        #expect(!FileManager.default.fileExists(atPath: spilled.fileRegion!.file.path))
        var middle = [UInt8](repeating: 0, count: 100)
        try middle.withUnsafeMutableBytes { try spilled.read(into: $0, at: 5000) }
        #expect(middle == Array(data[5000..<5100]))
    }
}
