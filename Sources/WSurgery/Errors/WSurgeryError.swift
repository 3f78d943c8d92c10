import Foundation

/// The broad class of a failure; the command-line tool maps each to one sysexits-style exit code.
public enum FailureCategory: String, Sendable {
    /// The command was used wrongly (bad option, unknown output extension, OUT == IN).
    case usage
    /// An input file exists but its content is malformed or unsupported.
    case badData
    /// An input file could not be opened.
    case cannotOpenInput
    /// The output could not be created (exists and replacing was not asked for, directory missing, permission).
    case cannotCreateOutput
    /// Reading or writing failed part way.
    case io
    /// A bug of this tool: an output read back before its commit did not hold what was meant.
    case software
}

/// Every failure the library reports. Each case names the file and, where it applies, the layer and
/// tensor involved, so a message points at the exact object that is wrong.
public enum WSurgeryError: Error, Sendable, Equatable {
    // Opening and creating files.
    /// An input file or directory cannot be opened (missing, unreadable).
    case cannotOpen(path: String, reason: String)
    /// The output exists and replacing was not asked for.
    case outputExists(path: String)
    /// The output names an input file (the input is never modified).
    case outputIsInput(path: String)
    /// The output cannot be created (its directory is missing, permissions).
    case cannotCreateOutput(path: String, reason: String)
    /// Reading or writing failed part way.
    case io(path: String, operation: String, reason: String)
    /// The file is none of the formats this tool reads, or an output name asks for none it writes.
    case unknownFormat(path: String, reason: String)

    // Safetensors.
    /// A safetensors file is shorter than its header says.
    case truncatedFile(path: String, expectedBytes: UInt64, actualBytes: UInt64)
    /// A safetensors header length past the 100 MB limit.
    case headerTooLarge(path: String, headerBytes: UInt64, limit: UInt64)
    /// A safetensors header length past the end of the file.
    case headerBeyondFile(path: String, headerBytes: UInt64, fileBytes: UInt64)
    /// A safetensors header that is not the JSON object the format requires.
    case invalidHeader(path: String, reason: String)
    /// One tensor's header entry is malformed.
    case invalidTensorEntry(path: String, tensor: String, reason: String)
    /// A tensor name appears twice.
    case duplicateTensor(path: String, tensor: String)
    /// Two tensors' byte ranges overlap.
    case overlappingTensors(path: String, first: String, second: String, offset: UInt64)
    /// Bytes between two tensors belong to neither.
    case gapBetweenTensors(path: String, before: String, after: String, gapStart: UInt64, gapEnd: UInt64)
    /// A tensor's byte range does not match its dtype and shape.
    case tensorSizeMismatch(path: String, tensor: String, dtype: String, shape: [Int], expectedBytes: UInt64, actualBytes: UInt64)
    /// Bytes after the last tensor.
    case trailingBytes(path: String, expectedBytes: UInt64, actualBytes: UInt64)
    /// A sharded checkpoint's index is malformed or disagrees with its shards.
    case invalidIndex(path: String, reason: String)

    /// An input whose content is no checkpoint format at all, whatever its extension; `content` says what
    /// it is when known ("a PNG image").
    case notACheckpoint(path: String, content: String)

    // HDF5 / Keras.
    /// A file named like HDF5 without HDF5's signature.
    case notHDF5(path: String)
    /// The file has HDF5's signature but libhdf5 cannot open it (truncated, damaged).
    case corruptHDF5(path: String)
    /// An HDF5 file that is not a Keras weights layout.
    case unknownHDF5Layout(path: String, reason: String)
    /// An HDF5 soft link (refused in untrusted files).
    case softLink(path: String, object: String, target: String)
    /// An HDF5 external link to another file (refused).
    case externalLink(path: String, object: String, target: String)
    /// An HDF5 dataset stored outside the file (external or virtual; refused).
    case externalStorage(path: String, dataset: String, kind: String)
    /// An HDF5 group or dataset the layout names is missing.
    case missingObject(path: String, object: String, layer: String?)
    /// A dataset's element type has no dtype here.
    case unsupportedHDF5Type(path: String, dataset: String, reason: String)
    /// A libhdf5 call failed.
    case hdf5(path: String, object: String, operation: String)
    /// A model config (Keras or config.json) that cannot be read.
    case invalidConfig(path: String, reason: String)
    /// A `.keras` archive that cannot be read.
    case invalidArchive(path: String, reason: String)
    /// A `torch.save` file that cannot be read (its zip, its pickle, its storages).
    case invalidPyTorch(path: String, reason: String)
    /// A PyTorch checkpoint holding tensors in several places, none of them the known state dict keys:
    /// `candidates` are the keys that hold tensors (pick one with `FILE#KEY`).
    case ambiguousStateDict(path: String, candidates: [String])

    // Writing.
    /// The output format cannot hold the graph as it is.
    case cannotExpress(format: String, tensor: String?, reason: String)
    /// An option's value cannot work whatever the input (`option` is its key, `classes`).
    case invalidOption(option: String, reason: String)

    // Surgery.
    /// A layer named by the user is not in the checkpoint.
    case unknownLayer(path: String, layer: String, candidates: [String], listing: String = "layers with weights")
    /// Detection of the first convolution or the head found none, or more than one.
    case detectionFailed(path: String, what: String, reason: String, candidates: [String])
    /// A layer the pass must change cannot be changed the way asked.
    case unsupportedLayer(path: String, layer: String, reason: String)
    /// The pass cannot apply to this checkpoint as a whole (no layer in particular is at fault).
    case unsupportedCheckpoint(path: String, reason: String)
    /// A tensor's values are needed in a dtype this tool does not compute with.
    case cannotComputeDType(path: String, tensor: String, dtype: String)
    /// Shape inference has no rule for a layer's class, and `needed` lies past it.
    case unknownLayerClass(path: String, layer: String, className: String, needed: String)
    /// A layer's input shapes do not fit it (after an edit, or in the config as read).
    case shapeMismatch(path: String, layer: String, reason: String)
    /// The input size makes a layer's spatial output empty.
    case inputTooSmall(path: String, layer: String, shape: [Int?])
    /// Weights that no longer fit the new shapes, when the dense policy says to stop.
    case weightsDoNotFit(path: String, layers: [String], hint: String)

    // Recipes and batch runs.
    /// A recipe (file or chain of steps) that cannot run: `location` is `recipe.yaml:7` or the step's position,
    /// `key` the offending key when there is one.
    case invalidRecipe(location: String, key: String?, reason: String)
    /// A child process of a parallel batch run ended without reporting (killed, crashed).
    case workerFailed(input: String, reason: String)
    /// The arguments given cannot work together (a missing input or output).
    case invalidArguments(reason: String)
    /// libhdf5 could not read an object of an input file (a damaged file).
    case damagedHDF5(path: String, object: String, operation: String)
    /// libhdf5 crashed or hung on the file (in the probe's child process).
    case malformedHDF5(path: String, reason: String)
    /// A file asks for more than a limit allows (see `Limits`).
    case limitExceeded(path: String, what: String, value: UInt64, limit: UInt64, key: String)
    /// An output read back before its commit does not hold what the pipeline meant to write (a bug).
    case outputCheckFailed(path: String, reason: String)
    /// Several checks made before any work failed: every one is reported, in the order input, layers,
    /// options, output; the exit code is the first one's.
    indirect case several([WSurgeryError])

    /// Which kind of failure this is, for exit codes.
    public var category: FailureCategory {
        switch self {
        case .several(let problems): return problems.first?.category ?? .software
        case .cannotOpen: return .cannotOpenInput
        case .outputExists, .cannotCreateOutput: return .cannotCreateOutput
        case .io, .hdf5, .workerFailed: return .io
        case .outputCheckFailed: return .software
        case .outputIsInput, .unknownFormat, .invalidOption, .unknownLayer, .inputTooSmall, .invalidRecipe, .invalidArguments,
            .ambiguousStateDict:
            return .usage
        case .truncatedFile, .headerTooLarge, .headerBeyondFile, .invalidHeader, .invalidTensorEntry, .duplicateTensor, .overlappingTensors,
            .gapBetweenTensors, .tensorSizeMismatch, .trailingBytes, .invalidIndex, .notACheckpoint, .notHDF5, .corruptHDF5, .unknownHDF5Layout,
            .softLink,
            .externalLink, .externalStorage, .missingObject, .unsupportedHDF5Type, .invalidConfig, .invalidArchive, .invalidPyTorch, .cannotExpress,
            .detectionFailed, .unsupportedLayer, .unsupportedCheckpoint, .cannotComputeDType, .unknownLayerClass, .shapeMismatch, .weightsDoNotFit,
            .limitExceeded, .malformedHDF5, .damagedHDF5:
            return .badData
        }
    }
}

extension WSurgeryError: CustomStringConvertible {
    /// The message, options spelled the way the front end set (`MessageStyle`).
    public var description: String { message(spelling: MessageStyle.optionSpelling) }

    /// The message, with every option mentioned spelled by `spelling` (the command line prefixes two dashes).
    public func message(spelling: (String) -> String) -> String { OptionMention.render(rawMessage, spelling) }

    /// The one mapping from every error to its text; option mentions are marked (see `OptionMention`).
    var rawMessage: String {
        switch self {
        case let .several(problems):
            return "\(problems.count) problems, all found before any work:" + problems.map { "\n  - " + $0.rawMessage }.joined()
        case let .cannotOpen(path, reason):
            return "\(path): cannot open: \(reason)"
        case let .outputExists(path):
            return "\(path): already exists (use \(option("force")) to replace it)"
        case let .outputIsInput(path):
            return "\(path): the output is the input file; write to a new file (the input is never modified)"
        case let .cannotCreateOutput(path, reason):
            return "\(path): cannot create output: \(reason)"
        case let .io(path, operation, reason):
            return "\(path): \(operation) failed: \(reason)"
        case let .unknownFormat(path, reason):
            return "\(path): unknown format: \(reason)"
        case let .truncatedFile(path, expected, actual):
            return "\(path): truncated: the header describes \(expected) bytes but the file has \(actual)"
        case let .headerTooLarge(path, header, limit):
            return "\(path): safetensors header length \(header) exceeds the limit of \(limit) bytes (corrupt or not a safetensors file)"
        case let .headerBeyondFile(path, header, file):
            return "\(path): safetensors header length \(header) runs past the end of the \(file)-byte file (truncated or not a safetensors file)"
        case let .invalidHeader(path, reason):
            return "\(path): invalid safetensors header: \(reason)"
        case let .invalidTensorEntry(path, tensor, reason):
            return "\(path): tensor '\(tensor)': \(reason)"
        case let .duplicateTensor(path, tensor):
            return "\(path): tensor '\(tensor)' appears more than once"
        case let .overlappingTensors(path, first, second, offset):
            return "\(path): tensors '\(first)' and '\(second)' overlap at data offset \(offset)"
        case let .gapBetweenTensors(path, before, after, start, end):
            return "\(path): data bytes \(start)..<\(end) between tensors '\(before)' and '\(after)' belong to no tensor"
        case let .tensorSizeMismatch(path, tensor, dtype, shape, expected, actual):
            return "\(path): tensor '\(tensor)' (\(dtype) \(shape)) needs \(expected) bytes but its offsets span \(actual)"
        case let .trailingBytes(path, expected, actual):
            return "\(path): the tensors end at byte \(expected) but the file has \(actual) bytes"
        case let .invalidIndex(path, reason):
            return "\(path): invalid sharded-checkpoint index: \(reason)"
        case let .notACheckpoint(path, content):
            return "\(path): \(content), not a checkpoint (wsurgery reads safetensors, Keras .h5/.weights.h5/.keras and torch.save files)"
        case let .notHDF5(path):
            return "\(path): not an HDF5 file"
        case let .corruptHDF5(path):
            return "\(path): has an HDF5 signature but HDF5 cannot open it (truncated or damaged)"
        case let .unknownHDF5Layout(path, reason):
            return "\(path): not a Keras weights layout this tool knows: \(reason)"
        case let .softLink(path, object, target):
            return "\(path): '\(object)' is a soft link to '\(target)'; links are refused in untrusted files"
        case let .externalLink(path, object, target):
            return "\(path): '\(object)' is an external link to '\(target)'; links to other files are refused"
        case let .externalStorage(path, dataset, kind):
            return "\(path): dataset '\(dataset)' keeps its data outside the file (\(kind)); refused"
        case let .missingObject(path, object, layer):
            return "\(path): \(layer.map { "layer '\($0)': " } ?? "")'\(object)' is missing"
        case let .unsupportedHDF5Type(path, dataset, reason):
            return "\(path): dataset '\(dataset)': unsupported data type: \(reason)"
        case let .hdf5(path, object, operation):
            return "\(path): HDF5 could not \(operation) '\(object)'"
        case let .invalidConfig(path, reason):
            return "\(path): invalid model config: \(reason)"
        case let .invalidArchive(path, reason):
            return "\(path): invalid .keras archive: \(reason)"
        case let .invalidPyTorch(path, reason):
            return "\(path): invalid PyTorch checkpoint: \(reason)"
        case let .ambiguousStateDict(path, candidates):
            return
                "\(path): tensors are held under several keys (\(candidates.map { "'\($0)'" }.joined(separator: ", "))) and none is a known state dict key; pick one as \(path)#KEY"
        case let .cannotExpress(format, tensor, reason):
            return "cannot write \(format)\(tensor.map { " (tensor '\($0)')" } ?? ""): \(reason)"
        case let .invalidOption(key, reason):
            return "\(option(key)): \(reason)"
        case let .unknownLayer(path, layer, candidates, listing):
            return "\(path): no layer named '\(layer)'" + WSurgeryError.listing(candidates, listing)
        case let .detectionFailed(path, what, reason, candidates):
            return "\(path): cannot find the \(what): \(reason)" + WSurgeryError.listing(candidates, "candidates")
                + "; name it with \(option("layer"))"
        case let .unsupportedLayer(path, layer, reason):
            return "\(path): layer '\(layer)': \(reason)"
        case let .unsupportedCheckpoint(path, reason):
            return "\(path): \(reason)"
        case let .unknownLayerClass(path, layer, className, needed):
            let past = needed == layer ? "" : " (needed for '\(needed)')"
            return
                "\(path): layer '\(layer)' is a \(className), a class whose output shape wsurgery cannot compute; shapes past it are unknown\(past)"
        case let .shapeMismatch(path, layer, reason):
            return "\(path): layer '\(layer)': shapes do not compose: \(reason)"
        case let .inputTooSmall(path, layer, shape):
            return "\(path): the input is too small: layer '\(layer)' would output \(ShapeText.python(shape)), a spatial size below 1"
        case let .weightsDoNotFit(path, layers, hint):
            return "\(path): the weights of \(layers.count) layer(s) no longer fit: \(layers.joined(separator: "; ")); \(hint)"
        case let .invalidRecipe(location, key, reason):
            return "\(location): \(key.map { "key '\($0)': " } ?? "")\(reason)"
        case let .workerFailed(input, reason):
            return "\(input): the worker process \(reason)"
        case let .invalidArguments(reason):
            return reason
        case let .damagedHDF5(path, object, operation):
            return "\(path): damaged HDF5 file: HDF5 could not \(operation) '\(object)'"
        case let .malformedHDF5(path, reason):
            return "\(path): malformed HDF5 file: \(reason); nothing was written"
        case let .limitExceeded(path, what, _, limit, key):
            return "\(path): \(what) exceeds the limit \(key)=\(limit); if the file is genuine, raise it with \(Limits.environmentKey)=\(key)=N"
        case let .outputCheckFailed(path, reason):
            return "\(path): the output, read back before it was given its name, does not hold what was meant to be written: \(reason); "
                + "nothing was written. This is a bug in wsurgery: please report it with the command and the input"
        case let .cannotComputeDType(path, tensor, dtype):
            return "\(path): tensor '\(tensor)': cannot compute with dtype \(dtype) (float16, bfloat16, float32 and float64 can be edited)"
        }
    }
}

extension WSurgeryError {
    /// "; candidates: a, b, c" (at most 12 names), or nothing for an empty list.
    static func listing(_ names: [String], _ label: String) -> String {
        guard !names.isEmpty else { return "" }
        let shown = names.prefix(12).joined(separator: ", ")
        return "; \(label): \(shown)" + (names.count > 12 ? " (and \(names.count - 12) more)" : "")
    }
}

/// How messages spell options (see `OptionMention`). A front end sets it once, before any work: the
/// command line prefixes the key with two dashes. The default quotes the key: `'classes'`.
public enum MessageStyle {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var spelling: @Sendable (String) -> String = { "'\($0)'" }

    /// The current spelling.
    public static var optionSpelling: @Sendable (String) -> String {
        get { lock.withLock { spelling } }
        set { lock.withLock { spelling = newValue } }
    }
}
