import Foundation

/// Read, apply passes in order, write: what every surgery command does.
public enum Pipeline {
    /// The reports of each pass and the writer's notes.
    public struct Result: Sendable {
        /// Each pass's report, in order.
        public var reports: [PassReport]
        /// What the reader noted (where a training checkpoint keeps its weights, pickle globals not called).
        public var readerNotes: [String]
        /// What the writer noted (dropped state, extra files written).
        public var writerNotes: [String]
        /// Tensors and bytes of the graph that was (or would be) written.
        public var tensorCount: Int
        /// Bytes of tensor data written.
        public var byteCount: UInt64
        /// The input's format.
        public var sourceFormat: CheckpointFormat
        /// The graph that was (or would be) written.
        public var graph: TensorGraph
    }

    /// Runs `passes` on the checkpoint at `input` and writes the result to `output` (nothing is written
    /// when `output` is nil: a dry run). The options, the input and the output are all checked before any
    /// work, every failing check reported together; the output appears whole or not at all. With no passes
    /// this is a conversion.
    public static func run(_ passes: [any GraphPass], input: String, output: String?, options: Checkpoint.WriteOptions = .init()) throws -> Result {
        // Every check that can be made before the work is made, and every failing one reported at once:
        // the input (and, when it reads, the passes on it: a layer that is not there), the options, the output.
        var inputProblems: [WSurgeryError] = []
        var optionProblems: [WSurgeryError] = []
        var outputProblems: [WSurgeryError] = []
        for pass in passes {
            do { try pass.validate() } catch let error as WSurgeryError { optionProblems.append(error) }
        }
        if let output {
            do {
                _ = try Checkpoint.outputFormat(for: output, shardSize: options.shardSize)
                try Checkpoint.precheckOutput(output, inputs: [input], force: options.force, root: options.root)
            } catch let error as WSurgeryError { outputProblems.append(error) }
        }
        var read: TensorGraph?
        do { read = try Checkpoint.read(input) } catch let error as WSurgeryError { inputProblems.append(error) }
        if let read, optionProblems.isEmpty, !outputProblems.isEmpty {
            // The output cannot be written: say too whether the passes would have worked on this input.
            var trial = read
            do {
                for pass in passes { trial = try pass.apply(to: trial).0 }
            } catch let error as WSurgeryError { inputProblems.append(error) }
        }
        let problems = inputProblems + optionProblems + outputProblems
        if problems.count == 1 { throw problems[0] }
        if problems.count > 1 { throw WSurgeryError.several(problems) }
        guard var graph = read else { throw WSurgeryError.cannotOpen(path: input, reason: "not read") }
        // The input's digest for the provenance record, hashed while the passes run and the output is written.
        let digest = output != nil ? InputDigest(path: graph.sourcePath, algorithm: options.digest) : nil
        var done = false
        defer { if !done { digest?.cancel() } }
        var reports: [PassReport] = []
        if KerasConfigRoute.applies(to: graph, passes: passes) {
            (graph, reports) = try KerasConfigRoute.run(passes, on: graph)
        } else {
            for pass in passes {
                let (next, report) = try pass.apply(to: graph)
                graph = next
                reports.append(report)
            }
        }
        // An edited architecture must still describe its tensors: refuse before anything is written.
        if !passes.isEmpty { try graph.editor.checkConsistency(of: graph) }
        if let digest { Provenance.record(passes, input: input, digest: digest, in: &graph) }
        let notes = try output.map { try Checkpoint.write(graph, to: $0, options: options) } ?? []
        done = true
        return Result(
            reports: reports, readerNotes: graph.readerNotes, writerNotes: notes, tensorCount: graph.tensors.count, byteCount: graph.byteCount,
            sourceFormat: graph.sourceFormat, graph: graph)
    }

    /// Whether `output` already holds what running `passes` on `input` would write: the last entry of
    /// its provenance names the same tool version, passes with the same options, the same input name, and
    /// the digest of this input as it is now. What a re-submitted array job finds for its finished inputs.
    public static func isUpToDate(_ passes: [any GraphPass], input: String, output: String, shardSize: UInt64?) -> Bool {
        let written =
            (try? Checkpoint.outputFormat(for: output, shardSize: shardSize)) == .shardedSafetensors
            ? ShardedSafetensors.completionMarker(for: output) : output
        guard FileManager.default.fileExists(atPath: written), let entry = (try? Checkpoint.read(written))?.provenance?.entries.last else {
            return false
        }
        let planned = passes.map { ($0.name, $0.options) }
        let samePasses =
            entry.passes.count == planned.count
            && zip(entry.passes, planned).allSatisfy { recorded, now in
                recorded.name == now.0 && recorded.options.elementsEqual(now.1) { $0.0 == $1.0 && $0.1 == $1.1 }
            }
        guard entry.version == Provenance.toolVersion, samePasses, entry.inputName == (input.split(separator: "/").last.map(String.init) ?? input),
            let source = try? Checkpoint.read(input).sourcePath, let file = try? InputFile(path: source),
            let digest = try? entry.digestAlgorithm.file(file, cancelled: { false })
        else { return false }
        return digest == entry.inputDigest
    }
}
