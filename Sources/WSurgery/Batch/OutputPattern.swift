import Foundation

/// How a batch run names each output inside the output directory: a pattern such as `{stem}-gray5.h5` whose
/// placeholders come from the input path:
/// - `{name}`: the file name (`fold3.weights.h5`);
/// - `{stem}`: the name without its checkpoint extension (`fold3`);
/// - `{ext}`: that extension (`.weights.h5`, `.safetensors`; `/` for a sharded checkpoint's directory, so
///   the output is a directory of shards too);
/// - `{parent}`: the name of the directory holding the input (`run7` for `runs/run7/model.h5`).
/// The output's extension picks its format, as for single commands. Subdirectories are allowed
/// (`{parent}/{stem}.h5`); absolute paths and `..` are not.
public struct OutputPattern: Sendable, Equatable {
    /// The placeholders a pattern may use.
    public static let placeholders = ["name", "stem", "ext", "parent"]
    /// Extensions that name a checkpoint format, longest first.
    static let extensions = [
        ".safetensors.index.json", ".weights.h5", ".safetensors", ".pth.tar", ".keras", ".hdf5", ".ckpt", ".pth", ".bin", ".h5", ".pt",
    ]

    /// The pattern as given.
    public var text: String

    /// Checks the placeholders and the shape of the pattern.
    public init(_ text: String) throws {
        self.text = text
        if text.hasPrefix("/") || text.split(separator: "/").contains("..") {
            throw WSurgeryError.invalidOption(option: "output", reason: "'\(text)' must stay inside \(option("out-dir")) (no leading '/', no '..')")
        }
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "{") {
            guard let close = rest[open...].firstIndex(of: "}") else {
                throw WSurgeryError.invalidOption(option: "output", reason: "'\(text)' has a '{' without '}'")
            }
            let name = String(rest[rest.index(after: open)..<close])
            if !OutputPattern.placeholders.contains(name) {
                throw WSurgeryError.invalidOption(
                    option: "output",
                    reason: "unknown placeholder {\(name)}; use \(OutputPattern.placeholders.map { "{\($0)}" }.joined(separator: ", "))")
            }
            rest = rest[rest.index(after: close)...]
        }
    }

    /// The input's file name split into stem and checkpoint extension.
    public static func split(_ input: String) -> (name: String, stem: String, ext: String, parent: String) {
        var trimmed = input
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
        let components = trimmed.split(separator: "/").map(String.init)
        let name = components.last ?? trimmed
        let parent = components.count > 1 ? components[components.count - 2] : "."
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: trimmed, isDirectory: &isDirectory), isDirectory.boolValue {
            return (name, name, "/", parent)
        }
        if let ext = extensions.first(where: { name.hasSuffix($0) && name.count > $0.count }) {
            return (name, String(name.dropLast(ext.count)), ext, parent)
        }
        return (name, name, "", parent)
    }

    /// The output's path relative to the output directory. Each placeholder is expanded once, left to
    /// right: text an input name brings in (`{parent}.h5`) is never expanded again.
    /// A `torch.save` input under the default pattern `{name}` becomes `{stem}.safetensors`: outputs are
    /// never pickles, and safetensors is what torch loads without one.
    public func relativeOutput(for input: String) -> String {
        let parts = OutputPattern.split(input)
        if text == "{name}", TorchCheckpointReader.suffixes.contains(where: { parts.ext == $0 }) { return parts.stem + ".safetensors" }
        let values = ["name": parts.name, "stem": parts.stem, "ext": parts.ext, "parent": parts.parent]
        var result = ""
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            result += rest[..<open]
            let key = String(rest[rest.index(after: open)..<close])
            result += values[key] ?? String(rest[open...close])
            rest = rest[rest.index(after: close)...]
        }
        return result + rest
    }

    /// Refuses an output that would leave `outDir`: a `..` or an absolute path brought in by an input's
    /// name, or a directory below `outDir` that is a symlink (wherever it leads: the writer walks from
    /// `outDir` with O_NOFOLLOW and would refuse it too, so the plan refuses it before any work).
    public static func checkContained(_ relative: String, in outDir: String, input: String) throws {
        func refuse(_ why: String) -> WSurgeryError {
            .invalidOption(option: "output", reason: "the output \(relative) for \(input) \(why); it must stay inside \(option("out-dir"))")
        }
        if relative.hasPrefix("/") || relative.split(separator: "/").contains(where: { $0 == ".." }) {
            throw refuse("climbs out through '..' or an absolute path")
        }
        var walked = outDir
        for component in relative.split(separator: "/").dropLast() where component != "." {
            walked += "/" + component
            var info = stat()
            guard lstat(walked, &info) == 0 else { return }  // not created yet: nothing below can be a symlink
            if (info.st_mode & S_IFMT) == S_IFLNK {
                let target = realPath(walked).map { " (to \($0))" } ?? ""
                throw refuse("lies under the symlink \(walked)\(target): outputs are written only through real directories")
            }
        }
    }

    /// The canonical path of an existing file or directory.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
