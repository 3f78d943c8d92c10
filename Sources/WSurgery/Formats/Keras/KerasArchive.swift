import Foundation
import ZIPFoundation

/// Keras 3 `.keras` archives: a zip holding `metadata.json`, `config.json` and `model.weights.h5`.
/// Read through ZIPFoundation; the weights file is extracted to an unnamed temporary file (HDF5 cannot open a
/// file inside a zip), which is removed when the graph is released.
public enum KerasArchive {
    static let weightsEntry = "model.weights.h5"
    /// Entries get this fixed date so the same graph always gives the same archive bytes.
    static let entryDate = Date(timeIntervalSince1970: 315_532_800)  // 1980-01-01, the zip epoch

    /// Reads a `.keras` archive: its config, metadata and weights. The archive is checked as Keras reads
    /// it, and stricter: an entry name twice is refused (Python's zipfile would take the last), every
    /// entry's CRC-32 is verified, and the config is bounded by the `config-bytes` limit.
    public static func read(path: String) throws -> TensorGraph {
        let archiveFile = try InputFile(path: path)
        let archive: Archive
        do { archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read) } catch {
            throw WSurgeryError.invalidArchive(path: path, reason: "not a readable zip archive (\(error))")
        }
        var seen = Set<String>()
        for entry in archive where !seen.insert(entry.path).inserted {
            throw WSurgeryError.invalidArchive(path: path, reason: "the entry '\(entry.path)' appears twice (Keras would read the last one)")
        }
        /// Extracts `entry` through `consume`, refusing more than `limit` bytes and a wrong CRC-32.
        func extract(_ entry: Entry, limit: UInt64, _ consume: (Data) throws -> Void) throws {
            var total: UInt64 = 0
            let checksum: CRC32
            do {
                checksum = try archive.extract(entry, bufferSize: 1 << 20) { data in
                    total += UInt64(data.count)
                    if total > limit { throw WSurgeryError.invalidArchive(path: path, reason: "'\(entry.path)' decodes to more than \(limit) bytes") }
                    try consume(data)
                }
            } catch let error as WSurgeryError {
                throw error
            } catch {
                throw WSurgeryError.invalidArchive(path: path, reason: "'\(entry.path)' cannot be extracted (\(error))")
            }
            if checksum != entry.checksum {
                throw WSurgeryError.invalidArchive(
                    path: path,
                    reason:
                        "'\(entry.path)' is damaged: its CRC-32 is \(String(checksum, radix: 16)), the archive records \(String(entry.checksum, radix: 16))"
                )
            }
        }
        func text(_ name: String) throws -> String {
            guard let entry = archive[name] else { throw WSurgeryError.invalidArchive(path: path, reason: "no '\(name)' entry") }
            let limits = Limits.current
            try limits.checkConfig(bytes: UInt64(max(entry.uncompressedSize, 0)), path: path, what: "'\(name)'")
            var data = Data()
            try extract(entry, limit: limits.configBytes) { data.append($0) }
            guard let s = String(data: data, encoding: .utf8) else {
                throw WSurgeryError.invalidArchive(path: path, reason: "'\(name)' is not UTF-8")
            }
            return s
        }
        let configText = try text("config.json")
        let config: ConfigDocument
        do { config = try ConfigDocument(text: configText) } catch {
            throw WSurgeryError.invalidConfig(path: path, reason: "config.json: \(error)")
        }
        let metadata = archive["metadata.json"] != nil ? try? ConfigDocument(text: try text("metadata.json")) : nil
        guard let weights = archive[weightsEntry] else {
            throw WSurgeryError.invalidArchive(path: path, reason: "no '\(weightsEntry)' entry (only HDF5 weights are supported)")
        }
        // A deflated entry may not decode to more than `expansion` times its stored size.
        let declared = UInt64(max(weights.uncompressedSize, 0))
        try Limits.current.checkExpansion(
            decoded: declared, stored: UInt64(max(weights.compressedSize, 0)), path: path, dataset: weightsEntry)
        // Extracted to an unnamed file in $TMPDIR, which vanishes with the process however it ends.
        let extracted = try OutputFile(path: NSTemporaryDirectory() + "/wsurgery-\(weightsEntry)")
        // Extracted chunk by chunk, so a progress line can follow a multi-GB archive.
        WriteProgress.begin(total: declared, task: "extracting \(weightsEntry) from \(path)")
        try extract(weights, limit: declared) { data in
            do { try data.withUnsafeBytes { try extracted.write($0) } } catch WSurgeryError.io(_, _, let reason) {
                throw WSurgeryError.io(path: path, operation: "extracting '\(weightsEntry)' into \(NSTemporaryDirectory())", reason: reason)
            }
            WriteProgress.advance(UInt64(data.count))
        }
        let weightsFile = try InputFile(path: extracted.temporaryPath)
        let name = "\(path):\(weightsEntry)"
        var graph = try ProcessGuard.parsing(name) {
            let h5: HDF5File
            do { h5 = try HDF5File.open(weightsFile, name: name) } catch let error as WSurgeryError {
                if case .malformedHDF5 = error { throw error }
                throw WSurgeryError.invalidArchive(path: path, reason: "'\(weightsEntry)' is not an HDF5 file")
            }
            return try KerasH5Reader.readKeras3(h5, raw: weightsFile, config: config, sourceFormat: .kerasArchive, sourcePath: path)
        }
        graph.sourceFiles.append(archiveFile)
        if let metadata { graph.fileStates[KerasArchiveState.self] = KerasArchiveState(metadata: metadata) }
        graph.fileStates[KerasSavedBy.self] = KerasSavedBy(version: metadata?.json["keras_version"]?.stringValue)
        return graph
    }

    /// Writes a `.keras` archive: entries stored (not deflated) in Keras's order.
    public static func write(_ graph: TensorGraph, to output: OutputFile) throws -> [String] {
        guard case .keras(let config)? = graph.architecture else {
            throw WSurgeryError.cannotExpress(
                format: ".keras", tensor: nil,
                reason: "a .keras archive needs the model's Keras config and this checkpoint has none; write .h5, .weights.h5 or .safetensors instead"
            )
        }
        // The weights go to a temporary HDF5 file beside the output, then into the archive.
        let weightsOutput = try OutputFile(path: output.path + ".weights.h5", in: output.parent)
        var notes: [String]
        do {
            let h5 = try HDF5File.create(weightsOutput)
            notes = try KerasH5Writer.writeKeras3Weights(graph, into: h5)
        }
        try OutputCheck.verifyKerasH5(graph, at: weightsOutput.temporaryPath, name: output.path)
        let metadata =
            graph.fileStates[KerasArchiveState.self]?.metadata.text(style: .python)
            ?? JSONValue.object([("keras_version", .string(graph.fileStates[KerasSavedBy.self]?.version ?? "3.0.0"))]).serialized(.python)
        let url = URL(fileURLWithPath: output.temporaryPath)
        do {
            // An empty archive (its end-of-central-directory record) opened for update: ZIPFoundation's
            // create mode insists on making the file itself, and the output file already exists.
            try output.write([0x50, 0x4B, 0x05, 0x06] + [UInt8](repeating: 0, count: 18))
            try output.closeForReopen()
            let archive = try Archive(url: url, accessMode: .update)
            let keras3 = KerasConfig.keras3ModelConfig(config.json)
            let configText = keras3 == config.json ? config.text(style: .python) : keras3.serialized(.python)
            for (name, text) in [("metadata.json", metadata), ("config.json", configText)] {
                let data = Data(text.utf8)
                try archive.addEntry(
                    with: name, type: .file, uncompressedSize: Int64(data.count), modificationDate: entryDate,
                    compressionMethod: .none
                ) { position, size in
                    data.subdata(in: Int(position)..<Int(position) + size)
                }
            }
            let weightsFile = try InputFile(path: weightsOutput.temporaryPath)
            try archive.addEntry(
                with: weightsEntry, type: .file, uncompressedSize: Int64(weightsFile.size), modificationDate: entryDate,
                compressionMethod: .none, bufferSize: 1 << 20
            ) { position, size in
                Data(try weightsFile.read(count: size, at: UInt64(position)))
            }
        } catch let error as WSurgeryError {
            throw error
        } catch {
            throw WSurgeryError.io(path: output.path, operation: "write the zip archive", reason: "\(error)")
        }
        if let flavor = graph.fileStates[KerasH5FileState.self]?.kerasFlavor, flavor == .legacyFullModel || flavor == .legacyWeightsOnly {
            notes.append("the config comes from a legacy HDF5 file; Keras 3 rebuilds layers from it when loading")
        }
        return notes
    }
}
