import Foundation
import Testing

@testable import WSurgery

@Suite("safetensors reader validates before trusting")
struct SafetensorsValidationTests {
    let dir = TestSupport.temporaryDirectory()
    let four = [UInt8](repeating: 1, count: 4)

    func read(_ path: String) throws { _ = try SafetensorsReader.read(path: path) }

    @Test func fileShorterThanLengthPrefixIsTruncated() throws {
        let path = dir + "/short.safetensors"
        _ = FileManager.default.createFile(atPath: path, contents: Data([1, 2, 3]))
        #expect(throws: WSurgeryError.truncatedFile(path: path, expectedBytes: 8, actualBytes: 3)) { try read(path) }
    }

    @Test func headerLongerThanCapIsRefused() throws {
        let path = TestSupport.safetensors(header: "{}", data: [], lengthOverride: 200_000_000, in: dir)
        #expect(throws: WSurgeryError.headerTooLarge(path: path, headerBytes: 200_000_000, limit: 100_000_000)) { try read(path) }
    }

    @Test func headerLongerThanFileIsRefused() throws {
        let path = TestSupport.safetensors(header: "{}", data: [], lengthOverride: 64, in: dir)
        #expect(throws: WSurgeryError.headerBeyondFile(path: path, headerBytes: 64, fileBytes: 10)) { try read(path) }
    }

    @Test func headerMustBeAJSONObject() throws {
        let path = TestSupport.safetensors(header: "[1, 2]  ", data: [], in: dir)
        #expect(throws: WSurgeryError.invalidHeader(path: path, reason: "the header does not start with '{'")) { try read(path) }
    }

    @Test func overlappingOffsetsAreRefused() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}"#
        let path = TestSupport.safetensors(header: header, data: four + four, in: dir)
        #expect(throws: WSurgeryError.overlappingTensors(path: path, first: "a", second: "b", offset: 2)) { try read(path) }
    }

    @Test func holesBetweenTensorsAreRefused() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
        let path = TestSupport.safetensors(header: header, data: four + four + four, in: dir)
        #expect(throws: WSurgeryError.gapBetweenTensors(path: path, before: "a", after: "b", gapStart: 4, gapEnd: 8)) { try read(path) }
    }

    @Test func sizeMustMatchDtypeTimesShape() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#
        let path = TestSupport.safetensors(header: header, data: four, in: dir)
        #expect(throws: WSurgeryError.tensorSizeMismatch(path: path, tensor: "a", dtype: "F32", shape: [2], expectedBytes: 8, actualBytes: 4)) {
            try read(path)
        }
    }

    @Test func dataEndingBeforeTheLastTensorIsTruncated() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        let path = TestSupport.safetensors(header: header, data: four, in: dir)
        let headerBytes = UInt64(header.utf8.count)
        #expect(throws: WSurgeryError.truncatedFile(path: path, expectedBytes: 8 + headerBytes + 8, actualBytes: 8 + headerBytes + 4)) {
            try read(path)
        }
    }

    @Test func trailingBytesAreRefused() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        let path = TestSupport.safetensors(header: header, data: four + [0], in: dir)
        let headerBytes = UInt64(header.utf8.count)
        #expect(throws: WSurgeryError.trailingBytes(path: path, expectedBytes: 8 + headerBytes + 4, actualBytes: 8 + headerBytes + 5)) {
            try read(path)
        }
    }

    @Test func duplicateNamesAreRefused() throws {
        let header = #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#
        let path = TestSupport.safetensors(header: header, data: [1, 2], in: dir)
        #expect(throws: WSurgeryError.duplicateTensor(path: path, tensor: "a")) { try read(path) }
    }

    @Test func unknownDtypePassesThroughByteIdentical() throws {
        let header = #"{"__metadata__":{"k":"v"},"q":{"dtype":"F3_FUTURE","shape":[5],"data_offsets":[0,3]}}  "#
        let path = TestSupport.safetensors(header: header, data: [7, 8, 9], in: dir)
        let graph = try SafetensorsReader.read(path: path)
        #expect(graph.tensors.first?.dtype == .opaque(name: "F3_FUTURE", bytesPerElement: nil))
        #expect(graph.fileStates[SafetensorsFileState.self]?.metadata?.first?.1 == "v")
        let out = dir + "/copy.safetensors"
        try Checkpoint.write(graph, to: out)
        let again = try SafetensorsReader.read(path: out)
        #expect(try again.tensors.first?.data.readAll() == [7, 8, 9])
        #expect(again.tensors.first?.dtype.safetensorsName == "F3_FUTURE")
    }
}

@Suite("safetensors writer follows the reference writer")
struct SafetensorsWriterTests {
    @Test("adjacent input regions go out as one copy; an unchanged file comes out byte-identical")
    func coalescesAdjacentRegions() throws {
        let input = TestSupport.fixture("torch_resnet_tiny.safetensors")
        let graph = try Checkpoint.read(input)
        let ordered = SafetensorsWriter.sortedForWriting(graph.tensors)
        let runs = SafetensorsWriter.coalesced(ordered.map(\.data))
        #expect(runs.count == 1)
        #expect(runs[0].byteCount == graph.byteCount)
        let mixed = SafetensorsWriter.coalesced([ordered[0].data, MemorySource(bytes: [1, 2]), ordered[1].data, ordered[2].data])
        #expect(mixed.count == 3)
        let dir = TestSupport.temporaryDirectory()
        try Checkpoint.write(graph, to: dir + "/same.safetensors")
        #expect(FileManager.default.contents(atPath: dir + "/same.safetensors") == FileManager.default.contents(atPath: input))
    }

    @Test("a new header is padded so the data starts at the input data's offset within a page")
    func dataKeepsTheInputPageOffset() throws {
        let input = TestSupport.fixture("torch_resnet_tiny.safetensors")
        let graph = try Checkpoint.read(input)
        let inputStart = try SafetensorsHeader.read(try InputFile(path: input)).dataStart
        let dir = TestSupport.temporaryDirectory()
        let output = try OutputFile(path: dir + "/meta.safetensors")
        try SafetensorsWriter.writeFile(graph.tensors, metadata: [("note", String(repeating: "x", count: 123))], to: output)
        try output.commit()
        let header = try SafetensorsHeader.read(try InputFile(path: dir + "/meta.safetensors"))
        #expect(header.dataStart != inputStart)
        #expect(header.dataStart % 4096 == inputStart % 4096)
        #expect(try TestSupport.tensorBytes(graph) == TestSupport.tensorBytes(try SafetensorsReader.read(path: dir + "/meta.safetensors")))
        // Computed first tensors have no input offset to follow: only the 8-byte padding.
        #expect(SafetensorsWriter.aligned([UInt8](repeating: 32, count: 16), to: nil).count == 16)
    }

    @Test func sortsByAlignmentThenNameAndPadsHeaderToEightBytes() throws {
        let graph = try SafetensorsReader.read(path: TestSupport.fixture("dtypes.safetensors"))
        let dir = TestSupport.temporaryDirectory()
        try Checkpoint.write(graph, to: dir + "/out.safetensors")
        let file = try InputFile(path: dir + "/out.safetensors")
        let header = try SafetensorsHeader.read(file)
        #expect((header.dataStart - 8) % 8 == 0)
        let ranks = header.entries.map { $0.dtype.safetensorsRank }
        #expect(ranks == ranks.sorted(by: >))
        // Every tensor starts on a multiple of its element size.
        for e in header.entries { #expect((header.dataStart + e.begin) % UInt64(max(1, (e.dtype.bitsPerElement ?? 8) / 8)) == 0) }
        #expect(try TestSupport.tensorBytes(graph) == TestSupport.tensorBytes(try SafetensorsReader.read(path: dir + "/out.safetensors")))
    }

    @Test func shardedRoundTripKeepsEveryTensor() throws {
        let graph = try SafetensorsReader.read(path: TestSupport.fixture("torch_resnet_tiny.safetensors"))
        let dir = TestSupport.temporaryDirectory()
        try Checkpoint.write(graph, to: dir + "/m.safetensors", options: .init(shardSize: 1500))
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(names.contains("m.safetensors.index.json"))
        #expect(names.filter { $0.hasPrefix("m-") }.count > 1)
        let back = try SafetensorsReader.readSharded(path: dir)
        #expect(try TestSupport.tensorBytes(graph) == TestSupport.tensorBytes(back))
    }

    @Test func sizesParseLikeHuggingFace() throws {
        #expect(try ShardedSafetensors.parseSize("5GB") == 5_000_000_000)
        #expect(try ShardedSafetensors.parseSize("2GiB") == 2 << 30)
        #expect(try ShardedSafetensors.parseSize("1000") == 1000)
        #expect(throws: WSurgeryError.self) { try ShardedSafetensors.parseSize("lots") }
    }
}
