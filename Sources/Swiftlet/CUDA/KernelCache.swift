import CCUDA
#if canImport(Glibc)
import Glibc
#endif

/// A kernel argument, passed to cuLaunchKernel by address.
public enum KernelArgument {
    case pointer(CUdeviceptr)
    case buffer(DeviceBuffer)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case uint64(UInt64)
    case float(Float)
    /// A struct passed by value (its bytes as the kernel lays it out; at most 4 KB of arguments in all).
    case bytes([UInt8])

    /// Bytes the argument takes, rounded up to 8 (every slot 8-aligned).
    var slotSize: Int {
        if case let .bytes(b) = self { return Swift.max(8, (b.count + 7) / 8 * 8) }
        return 8
    }
}

/// A compiled kernel function.
public struct CUDAKernel: @unchecked Sendable {
    public let name: String
    let function: CUfunction
}

/// Compiles CUDA C with NVRTC for the device's own architecture (CUBIN), caches the CUBIN on disk,
/// loads it with cuModuleLoadData and hands out functions by name.
public final class KernelCache: @unchecked Sendable {
    let device: CUDADevice
    private var modules: [String: CUmodule] = [:]
    /// The dynamic shared memory each function has been allowed beyond the default 48 KiB.
    private var sharedLimits: [CUfunction: Int] = [:]
    /// Where CUBINs are cached: $XDG_CACHE_HOME/swiftlet/kernels or ~/.cache/swiftlet/kernels.
    public let directory: String?
    /// Whether the last `module(…)` call compiled (false: memory or disk cache hit).
    public private(set) var lastCompiled = false

    public init(device: CUDADevice, environment: [String: String] = CUDALibrarySearch.processEnvironment) {
        self.device = device
        self.directory = Self.cacheDirectory(environment: environment)
    }

    public static func cacheDirectory(environment: [String: String]) -> String? {
        if let xdg = environment["XDG_CACHE_HOME"], xdg.hasPrefix("/") { return xdg + "/swiftlet/kernels" }
        if let home = environment["HOME"], !home.isEmpty { return home + "/.cache/swiftlet/kernels" }
        return nil
    }

    public static func options(architecture: String) -> [String] {
        ["--gpu-architecture=\(architecture)", "-default-device", "--std=c++17"]
    }

    /// FNV-1a 64 of everything that determines the CUBIN, as 16 hex digits.
    public static func cacheKey(source: String, options: [String], architecture: String, nvrtcVersion: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
            for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        }
        for part in [source] + options + [architecture, nvrtcVersion, "swiftlet-kernels-v1"] {
            mix(part.utf8)
            mix([0])  // separator: ("ab","c") and ("a","bc") differ
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The function `name` of the module built from `source`.
    public func function(_ name: String, source: String) throws -> CUDAKernel {
        let module = try self.module(source: source, name: name)
        var f: CUfunction? = nil
        try device.libs.check(device.libs.cuModuleGetFunction(&f, module, name), "cuModuleGetFunction(\(name))")
        guard let f else { throw CUDAError.invalid("cuModuleGetFunction(\(name)) returned nothing") }
        return CUDAKernel(name: name, function: f)
    }

    func module(source: String, name: String) throws -> CUmodule {
        let libs = device.libs
        let options = Self.options(architecture: device.architecture)
        let nv = libs.nvrtcVersionNumber.map { "\($0.major).\($0.minor)" } ?? "?"
        let key = Self.cacheKey(source: source, options: options, architecture: device.architecture, nvrtcVersion: nv)
        if let m = modules[key] { lastCompiled = false; return m }
        var cubin: [UInt8]
        let path = directory.map { "\($0)/\(key).cubin" }
        if let path, let cached = Self.readFile(path), !cached.isEmpty {
            cubin = cached
            lastCompiled = false
        } else {
            cubin = try compile(source: source, name: name, options: options)
            lastCompiled = true
            if let directory, let path { Self.writeAtomically(cubin, to: path, directory: directory) }
        }
        var m: CUmodule? = nil
        try cubin.withUnsafeBytes { try libs.check(libs.cuModuleLoadData(&m, $0.baseAddress), "cuModuleLoadData(\(name))") }
        guard let m else { throw CUDAError.invalid("cuModuleLoadData(\(name)) returned no module") }
        modules[key] = m
        return m
    }

    func compile(source: String, name: String, options: [String]) throws -> [UInt8] {
        try device.libs.compiler.compile(source: source, name: name, options: options)
    }

    /// Enqueues `kernel` on the device's stream. Each argument's value is stored in memory that lives
    /// until cuLaunchKernel returns (the driver copies the values at launch).
    public func launch(_ kernel: CUDAKernel, grid: (Int, Int, Int), block: (Int, Int, Int), sharedBytes: Int = 0,
                       arguments: [KernelArgument]) throws {
        let bytes = arguments.reduce(0) { $0 + $1.slotSize }
        precondition(bytes <= 4096, "\(kernel.name): \(bytes) bytes of kernel arguments (at most 4 KB)")
        if sharedBytes > 48 * 1024, sharedLimits[kernel.function, default: 48 * 1024] < sharedBytes {
            // A kernel gets more than 48 KiB of dynamic shared memory only once it has asked for it.
            try device.libs.check(device.libs.cuFuncSetAttribute(kernel.function, CCUDA_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                                                 Int32(sharedBytes)),
                                  "cuFuncSetAttribute(\(kernel.name), max dynamic shared memory \(sharedBytes))")
            sharedLimits[kernel.function] = sharedBytes
        }
        let storage = UnsafeMutableRawPointer.allocate(byteCount: max(8, bytes), alignment: 8)
        defer { storage.deallocate() }
        var params: [UnsafeMutableRawPointer?] = []
        var offset = 0
        for a in arguments {
            let slot = storage + offset
            offset += a.slotSize
            switch a {
            case let .pointer(p): slot.storeBytes(of: p, as: CUdeviceptr.self)
            case let .buffer(b): slot.storeBytes(of: b.pointer, as: CUdeviceptr.self)
            case let .int32(v): slot.storeBytes(of: v, as: Int32.self)
            case let .uint32(v): slot.storeBytes(of: v, as: UInt32.self)
            case let .int64(v): slot.storeBytes(of: v, as: Int64.self)
            case let .uint64(v): slot.storeBytes(of: v, as: UInt64.self)
            case let .float(v): slot.storeBytes(of: v, as: Float.self)
            case let .bytes(b): b.withUnsafeBytes { slot.copyMemory(from: $0.baseAddress!, byteCount: b.count) }
            }
            params.append(slot)
        }
        let libs = device.libs
        let r = params.withUnsafeMutableBufferPointer { p in
            libs.cuLaunchKernel(kernel.function, UInt32(grid.0), UInt32(grid.1), UInt32(grid.2),
                                UInt32(block.0), UInt32(block.1), UInt32(block.2), UInt32(sharedBytes),
                                device.stream, p.baseAddress, nil)
        }
        try libs.check(r, "cuLaunchKernel(\(kernel.name))")
    }

    // MARK: files

    static func readFile(_ path: String) -> [UInt8]? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            if n > 0 { out.append(contentsOf: chunk[0..<n]) }
            if n < chunk.count { break }
        }
        return ferror(f) == 0 ? out : nil
    }

    /// Writes to a temporary file in the same folder, then renames it over `path`. Failures are
    /// ignored: the cache is an optimisation.
    @discardableResult
    static func writeAtomically(_ bytes: [UInt8], to path: String, directory: String) -> Bool {
        makeDirectories(directory)
        let temp = "\(path).tmp.\(getpid())"
        guard let f = fopen(temp, "wb") else { return false }
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, bytes.count, f) }
        let closed = fclose(f) == 0
        guard written == bytes.count, closed, rename(temp, path) == 0 else {
            unlink(temp)
            return false
        }
        return true
    }

    static func makeDirectories(_ path: String) {
        var prefix = ""
        for part in path.split(separator: "/") {
            prefix += "/" + part
            mkdir(prefix, 0o755)
        }
    }
}
