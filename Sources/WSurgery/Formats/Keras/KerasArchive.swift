import Foundation
import ZIPFoundation

/// Keras 3 `.keras` archives: a zip holding `metadata.json`, `config.json` and `model.weights.h5`.
/// Read through ZIPFoundation; the weights file is extracted to a temporary file (HDF5 cannot open a
/// file inside a zip), which is removed when the graph is released.
public enum KerasArchive {
    static let weightsEntry = "model.weights.h5"
    /// Entries get this fixed date so the same graph always gives the same archive bytes.
    static let entryDate = Date(timeIntervalSince1970: 315_532_800)  // 1980-01-01, the zip epoch

    /// Reads a `.keras` archive: its config, metadata and weights.
    public static func read(path: String) throws -> TensorGraph {
        let archiveFile = try InputFile(path: path)
        let archive: Archive
        do { archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read) } catch {
            throw WSurgeryError.invalidArchive(path: path, reason: "not a readable zip archive (\(error))")
        }
        func text(_ name: String) throws -> String {
            guard let entry = archive[name] else { throw WSurgeryError.invalidArchive(path: path, reason: "no '\(name)' entry") }
            var data = Data()
            do { _ = try archive.extract(entry) { data.append($0) } } catch {
                throw WSurgeryError.invalidArchive(path: path, reason: "'\(name)' cannot be extracted (\(error))")
            }
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
        let temporary = NSTemporaryDirectory() + "/wsurgery-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString).weights.h5"
        // Extracted chunk by chunk, so a progress line can follow a multi-GB archive.
        WriteProgress.begin(total: UInt64(max(weights.uncompressedSize, 0)), task: "extracting \(weightsEntry) from \(path)")
        do {
            guard FileManager.default.createFile(atPath: temporary, contents: nil) else {
                throw WSurgeryError.cannotCreateOutput(path: temporary, reason: "cannot create a temporary file")
            }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: temporary))
            defer { try? handle.close() }
            _ = try archive.extract(weights, bufferSize: 1 << 20) { data in
                try handle.write(contentsOf: data)
                WriteProgress.advance(UInt64(data.count))
            }
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw WSurgeryError.invalidArchive(path: path, reason: "'\(weightsEntry)' cannot be extracted (\(error))")
        }
        let extracted = try InputFile(path: temporary, deleteOnClose: true)
        let h5: HDF5File
        do { h5 = try HDF5File.open(temporary) } catch {
            throw WSurgeryError.invalidArchive(path: path, reason: "'\(weightsEntry)' is not an HDF5 file")
        }
        var graph = try KerasH5Reader.readKeras3(h5, raw: extracted, config: config, sourceFormat: .kerasArchive, sourcePath: path)
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
        let weightsOutput = try OutputFile(path: output.path + ".weights.h5")
        try weightsOutput.closeForReopen()
        var notes: [String]
        do {
            let h5 = try HDF5File.create(weightsOutput.temporaryPath)
            notes = try KerasH5Writer.writeKeras3Weights(graph, into: h5)
            try h5.flush()
        }
        let metadata =
            graph.fileStates[KerasArchiveState.self]?.metadata.text(style: .python)
            ?? JSONValue.object([("keras_version", .string(graph.fileStates[KerasSavedBy.self]?.version ?? "3.0.0"))]).serialized(.python)
        try output.closeForReopen()
        let url = URL(fileURLWithPath: output.temporaryPath)
        try? FileManager.default.removeItem(at: url)
        do {
            let archive = try Archive(url: url, accessMode: .create)
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
