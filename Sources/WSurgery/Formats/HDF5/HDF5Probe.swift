import CHDF5
import Foundation

/// libhdf5 is not hardened against malicious files: a damaged object header can crash it or make it
/// loop. Before this process trusts an HDF5 file, a child process (`wsurgery __probe-hdf5 FILE`) first
/// makes the calls the Keras reader and the HDF5 writer make, in their order, then walks every object,
/// attribute and dataset the file holds (a superset of what the readers touch) and reads the data
/// libhdf5 decodes. If the child crashes or runs past its time, the file is refused with exit
/// 65 and this process never parses it. libhdf5 is deterministic, so a file the child read whole does
/// not crash the same calls here; should something still crash, the handlers of `ProcessGuard` turn it
/// into the same exit 65.
public enum HDF5Probe {
    /// The executable to run the probe with; nil (library use, tests) skips the probe.
    nonisolated(unsafe) public static var executable: String?
    /// The hidden subcommand the child runs.
    public static let subcommand = "__probe-hdf5"
    nonisolated(unsafe) static var isChild = false
    /// The in-memory file datasets are copied into.
    nonisolated(unsafe) static var scratch: HDF5File?
    nonisolated(unsafe) static var copies = 0
    nonisolated(unsafe) static var visitedGroups = Set<UInt64>()
    /// Set in the child when libhdf5 failed to allocate memory (see `memoryBound`).
    nonisolated(unsafe) static var outOfMemory = false
    /// The child's exit status when the file needs more memory than it can explain.
    static let outOfMemoryStatus: Int32 = 3

    /// The address space the child may use: 2 GiB for the runtime and the model config, plus twice the
    /// file's size.
    static func memoryBound(fileSize: UInt64) -> UInt64 { (2 << 30) + 2 * min(fileSize, 1 << 50) }

    /// Probes `path` (named `name` in errors) in a child process; throws `malformedHDF5` when it crashes
    /// or hangs.
    static func check(path: String, name: String) throws {
        guard let executable, !isChild else { return }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64) ?? 0
        let seconds = Double(Limits.current.probeSeconds) + Double(size >> 26)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [subcommand, path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        let done = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in done.signal() }
        do { try process.run() } catch {
            throw WSurgeryError.io(path: name, operation: "start the HDF5 probe", reason: "\(error)")
        }
        if done.wait(timeout: .now() + seconds) == .timedOut {
            kill(process.processIdentifier, SIGKILL)
            done.wait()
            throw WSurgeryError.malformedHDF5(
                path: name, reason: "the HDF5 library did not finish reading it in \(Int(seconds)) s (a loop in its structure?)")
        }
        let status = process.terminationStatus
        switch (process.terminationReason, status) {
        case (.exit, 0): return
        case (.exit, 65): throw WSurgeryError.malformedHDF5(path: name, reason: "the HDF5 library crashed reading it")
        case (.exit, outOfMemoryStatus):
            throw WSurgeryError.malformedHDF5(
                path: name, reason: "reading it needs more memory than its size explains (a damaged attribute or heap object claims gigabytes)")
        case (.exit, _): throw WSurgeryError.malformedHDF5(path: name, reason: "the HDF5 probe exited with status \(status)")
        case (.uncaughtSignal, SIGILL), (.uncaughtSignal, SIGTRAP):
            throw WSurgeryError.malformedHDF5(path: name, reason: "the HDF5 probe stopped on a runtime trap (signal \(status)), a bug in wsurgery")
        case (.uncaughtSignal, _): throw WSurgeryError.malformedHDF5(path: name, reason: "the HDF5 library crashed reading it (signal \(status))")
        @unknown default: throw WSurgeryError.malformedHDF5(path: name, reason: "the HDF5 probe failed")
        }
    }

    /// The child's work: walk `path` whole. Errors are not reported (the parent finds and reports them
    /// itself); only a crash or a hang is the probe's finding. Returns the exit status.
    public static func runChild(path: String) -> Int32 {
        isChild = true
        ProcessGuard.install()
        return ProcessGuard.parsing(path) {
            guard let file = try? InputFile(path: path) else { return 0 }
            // A damaged variable-length string or heap object can make libhdf5 allocate (and zero)
            // gigabytes for a small file: the child's address space is bounded, so such an allocation
            // fails here, quickly, and is reported instead of being repeated by the parent.
            let bound = rlim_t(memoryBound(fileSize: file.size))
            var limit = rlimit(rlim_cur: bound, rlim_max: bound)
            setrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &limit)
            // Writers copy chunked datasets with H5Ocopy, which walks structures reading does not: such
            // datasets are copied here too, into a file held in memory.
            scratch = try? HDF5File.scratch()
            // First the very calls the readers and writers make, in their order: libhdf5's state (its
            // metadata cache, its heap) then matches the parent's, so a crash that depends on it happens
            // here. The reader's own errors are the parent's to report.
            if let graph = try? KerasH5Reader.read(path: path), let scratch {
                for (i, tensor) in graph.layers.flatMap(\.tensors).enumerated() {
                    try? KerasH5Writer.write(tensor, to: scratch, at: "w\(i)")
                    if tensor.data is HDF5DatasetSource {
                        do { try tensor.data.forEachChunk(maxChunk: 4 << 20) { _ in } } catch { if errno == ENOMEM { outOfMemory = true } }
                    }
                }
            }
            // Then everything else the file holds.
            guard let h5 = try? HDF5File.open(file) else { return outOfMemory ? outOfMemoryStatus : 0 }
            var visits = 0
            h5.readEveryAttribute(of: "/", noting: &outOfMemory)
            walk(h5, "/", depth: 0, visits: &visits)
            return outOfMemory ? outOfMemoryStatus : 0
        }
    }

    /// Visits every hard-linked object under `group` (at most 64 deep and a million objects, so a cycle
    /// of hard links ends), reading attributes and datasets.
    static func walk(_ h5: HDF5File, _ group: String, depth: Int, visits: inout Int) {
        guard depth < 64 else { return }
        for name in (try? h5.linkNames(of: group)) ?? [] {
            visits += 1
            guard visits < 1_000_000 else { return }
            let child = group == "/" ? name : group + "/" + name
            guard wsh5_link_type(h5.id, child) == H5L_TYPE_HARD.rawValue else { continue }
            h5.readEveryAttribute(of: child, noting: &outOfMemory)
            switch wsh5_object_type(h5.id, child) {
            case Int32(H5O_TYPE_GROUP.rawValue):
                // Each group once: a cycle of hard links ends here.
                if visitedGroups.insert(h5.objectAddress(child)).inserted { walk(h5, child, depth: depth + 1, visits: &visits) }
            case Int32(H5O_TYPE_DATASET.rawValue): read(h5, dataset: child)
            default: break
            }
        }
    }

    /// Reads a dataset the way a reader would: its description, and its bytes when libhdf5 decodes them
    /// (within the expansion limit).
    static func read(_ h5: HDF5File, dataset: String) {
        guard let info = try? h5.datasetInfo(dataset) else { return }
        // The datasets a writer copies whole (see KerasH5Writer.write): chunked, compressed, or with
        // attributes of their own. Plain contiguous ones are placed by byte range, never copied.
        if let scratch, info.contiguousOffset == nil || info.attributeCount > (info.dtypeAttribute == nil ? 0 : 1) {
            copies += 1
            try? scratch.copyDataset(from: h5, dataset, to: "d\(copies)", dtype: .u8)
        }
        guard info.contiguousOffset == nil,
            let elements = Checked.product(info.shape), let size = info.dtype.bitsPerElement.map({ max($0 / 8, 1) }),
            let bytes = Checked.multiply(elements, size),
            (try? Limits.current.checkExpansion(decoded: UInt64(bytes), stored: info.storedBytes, path: h5.path, dataset: dataset)) != nil
        else { return }
        let source = HDF5DatasetSource(file: h5, datasetPath: dataset, dtype: info.dtype, shape: info.shape, byteCount: UInt64(bytes))
        do { try source.forEachChunk(maxChunk: 4 << 20) { _ in } } catch { if errno == ENOMEM { outOfMemory = true } }
    }
}
