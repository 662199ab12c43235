import CCUDA
#if canImport(Glibc)
import Glibc
#endif

/// Errors of the CUDA backend. Each `description` is one line.
public enum CUDAError: Error, CustomStringConvertible {
    /// A shared library could not be loaded.
    case libraryMissing(library: String, looked: [String])
    /// A library loaded but lacks an entry point.
    case symbolMissing(symbol: String, library: String, path: String)
    /// A driver call returned an error.
    case driver(call: String, code: Int32, message: String)
    /// An NVRTC call returned an error.
    case nvrtc(call: String, code: Int32, message: String)
    /// NVRTC rejected a kernel; `log` is the full compiler log (several lines).
    case compile(name: String, log: String)
    case outOfMemory(requested: Int, inUse: Int, free: Int?)
    case invalid(String)

    public var description: String {
        switch self {
        case let .libraryMissing(library, looked):
            return "CUDA: \(library) not found (looked in \(looked.isEmpty ? "nowhere" : looked.joined(separator: ", ")))"
        case let .symbolMissing(symbol, library, path):
            return "CUDA: \(library) at \(path) has no symbol \(symbol) (driver or toolkit too old?)"
        case let .driver(call, code, message):
            return "CUDA: \(call) failed: \(message) (CUresult \(code))"
        case let .nvrtc(call, code, message):
            return "CUDA: \(call) failed: \(message) (nvrtcResult \(code))"
        case let .compile(name, log):
            return "CUDA: NVRTC could not compile \(name):\n\(log)"
        case let .outOfMemory(requested, inUse, free):
            let freeText = free.map { ", \(ByteCount($0)) free on the device" } ?? ""
            return "CUDA out of memory: asked for \(ByteCount(requested)), \(ByteCount(inUse)) in use by swiftlet\(freeText). "
                + "Try a smaller --batch-size or --max-seq-length, 4-bit base weights, or gradient checkpointing."
        case let .invalid(message):
            return "CUDA: \(message)"
        }
    }
}

/// Where to look for the CUDA libraries, as a pure function of the environment so it can be tested.
public enum CUDALibrarySearch {
    /// Candidate file names / paths for one library, in the order to try: the plain sonames first
    /// (the dynamic loader's own search: LD_LIBRARY_PATH, ldconfig cache), then each folder.
    /// Paths containing `/stubs/` are never returned.
    /// - Parameters:
    ///   - sonames: e.g. ["libnvrtc.so.13", "libnvrtc.so.12"], best first.
    ///   - environment: the process environment.
    ///   - glob: expands a shell pattern to existing paths (sorted).
    public static func candidates(sonames: [String], environment: [String: String],
                                  glob: (String) -> [String]) -> [String] {
        var result: [String] = sonames
        var seen = Set(result)
        for folder in folders(environment: environment, glob: glob) {
            for soname in sonames {
                let path = folder.hasSuffix("/") ? folder + soname : folder + "/" + soname
                if !isStub(path), seen.insert(path).inserted { result.append(path) }
            }
        }
        return result
    }

    /// Folders searched after the plain sonames, in order, without duplicates or stub folders.
    public static func folders(environment: [String: String], glob: (String) -> [String]) -> [String] {
        var folders: [String] = []
        if let ld = environment["LD_LIBRARY_PATH"] {
            folders += ld.split(separator: ":").map(String.init).filter { !$0.isEmpty }
        }
        for key in ["CUDA_HOME", "CUDA_PATH"] {
            if let root = environment[key], !root.isEmpty { folders.append(trimSlash(root) + "/lib64") }
        }
        folders += ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]
        // Versioned toolkits without the /usr/local/cuda symlink, newest first.
        for dir in glob("/usr/local/cuda-*").reversed() {
            folders += [dir + "/lib64", dir + "/targets/x86_64-linux/lib"]
        }
        var sitePackages = [
            "/usr/lib/python3*/site-packages", "/usr/local/lib/python3*/site-packages",
            "/usr/lib/python3*/dist-packages", "/usr/local/lib/python3*/dist-packages",
            "/usr/lib/python3/dist-packages",
        ]
        if let venv = environment["VIRTUAL_ENV"], !venv.isEmpty {
            sitePackages.insert(trimSlash(venv) + "/lib/python3*/site-packages", at: 0)
        }
        for site in sitePackages { folders += glob(site + "/nvidia/*/lib") }
        var seen = Set<String>()
        return folders.filter { !isStub($0 + "/") && seen.insert(trimSlash($0)).inserted }
    }

    /// Stub libraries (…/stubs/libcuda.so) load but do nothing; never use them.
    public static func isStub(_ path: String) -> Bool { path.contains("/stubs/") }

    static func trimSlash(_ s: String) -> String {
        var s = s
        while s.count > 1 && s.hasSuffix("/") { s.removeLast() }
        return s
    }

    /// glob(3), sorted.
    public static func systemGlob(_ pattern: String) -> [String] {
        var g = glob_t()
        defer { globfree(&g) }
        guard Glibc.glob(pattern, 0, nil, &g) == 0 else { return [] }
        var out: [String] = []
        for i in 0..<Int(g.gl_pathc) {
            if let p = g.gl_pathv[i] { out.append(String(cString: p)) }
        }
        return out.sorted()
    }

    public static var processEnvironment: [String: String] {
        var env: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { env[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return env
    }
}

/// One dlopen'ed library.
public struct LoadedLibrary: @unchecked Sendable {
    public let name: String
    public let path: String
    let handle: UnsafeMutableRawPointer

    func symbol<T>(_ name: String, as type: T.Type) throws -> T {
        guard let p = dlsym(handle, name) else {
            throw CUDAError.symbolMissing(symbol: name, library: self.name, path: path)
        }
        return unsafeBitCast(p, to: type)
    }

    /// Tries each candidate with dlopen(RTLD_NOW | RTLD_GLOBAL); skips anything that resolves to a stub.
    static func open(name: String, candidates: [String]) throws -> LoadedLibrary {
        var looked: [String] = []
        for candidate in candidates {
            looked.append(candidate)
            guard let handle = dlopen(candidate, RTLD_NOW | RTLD_GLOBAL) else { continue }
            let path = ccuda_loaded_path(handle).map { String(cString: $0) } ?? candidate
            if CUDALibrarySearch.isStub(path) {
                dlclose(handle)
                continue
            }
            return LoadedLibrary(name: name, path: path.isEmpty ? candidate : path, handle: handle)
        }
        // Report folders rather than every file: the line must stay readable.
        var folders: [String] = []
        for c in looked {
            let folder = c.contains("/") ? String(c[..<c.lastIndex(of: "/")!]) : "the loader's default path"
            if !folders.contains(folder) { folders.append(folder) }
        }
        throw CUDAError.libraryMissing(library: name, looked: folders)
    }
}

/// The CUDA driver and NVRTC, loaded at run time, with every entry point Swiftlet calls.
public final class CUDALibraries: @unchecked Sendable {
    public let driver: LoadedLibrary
    public let nvrtc: LoadedLibrary
    /// Located and reported only; nothing calls it yet.
    public let cublasLt: LoadedLibrary?
    public let cublasLtProblem: String?
    /// cuDNN 9, for fused attention where it has an engine; optional (the NVRTC kernels cover it).
    public let cudnn: LoadedLibrary?
    public let cudnnProblem: String?

    // Driver
    let cuInit: PFN_cuInit
    let cuDriverGetVersion: PFN_cuDriverGetVersion
    let cuDeviceGet: PFN_cuDeviceGet
    let cuDeviceGetCount: PFN_cuDeviceGetCount
    let cuDeviceGetName: PFN_cuDeviceGetName
    let cuDeviceGetAttribute: PFN_cuDeviceGetAttribute
    let cuDeviceTotalMem: PFN_cuDeviceTotalMem_v2
    let cuDevicePrimaryCtxRetain: PFN_cuDevicePrimaryCtxRetain
    let cuCtxSetCurrent: PFN_cuCtxSetCurrent
    let cuCtxSynchronize: PFN_cuCtxSynchronize
    let cuStreamCreate: PFN_cuStreamCreate
    let cuStreamSynchronize: PFN_cuStreamSynchronize
    let cuMemAlloc: PFN_cuMemAlloc_v2
    let cuMemFree: PFN_cuMemFree_v2
    let cuMemcpyHtoD: PFN_cuMemcpyHtoD_v2
    let cuMemcpyDtoH: PFN_cuMemcpyDtoH_v2
    let cuMemsetD8: PFN_cuMemsetD8_v2
    let cuMemcpyDtoDAsync: PFN_cuMemcpyDtoDAsync_v2
    let cuMemsetD8Async: PFN_cuMemsetD8Async
    let cuMemAllocHost: PFN_cuMemAllocHost_v2
    let cuMemFreeHost: PFN_cuMemFreeHost
    let cuMemcpyHtoDAsync: PFN_cuMemcpyHtoDAsync_v2
    let cuMemcpyDtoHAsync: PFN_cuMemcpyDtoHAsync_v2
    let cuMemGetInfo: PFN_cuMemGetInfo_v2
    let cuModuleLoadData: PFN_cuModuleLoadData
    let cuModuleGetFunction: PFN_cuModuleGetFunction
    let cuFuncSetAttribute: PFN_cuFuncSetAttribute
    let cuLaunchKernel: PFN_cuLaunchKernel
    let cuEventCreate: PFN_cuEventCreate
    let cuEventRecord: PFN_cuEventRecord
    let cuEventSynchronize: PFN_cuEventSynchronize
    let cuEventElapsedTime: PFN_cuEventElapsedTime
    let cuEventDestroy: PFN_cuEventDestroy_v2
    let cuStreamWaitEvent: PFN_cuStreamWaitEvent
    let cuGetErrorString: PFN_cuGetErrorString
    /// The run-time compiler.
    public let compiler: NVRTC

    public static let driverSonames = ["libcuda.so.1"]
    public static let nvrtcSonames = ["libnvrtc.so.13", "libnvrtc.so.12"]
    public static let cublasLtSonames = ["libcublasLt.so.13", "libcublasLt.so.12"]

    /// Loads the libraries with the given environment (the process's by default).
    public init(environment: [String: String] = CUDALibrarySearch.processEnvironment,
                glob: (String) -> [String] = CUDALibrarySearch.systemGlob) throws {
        func candidates(_ sonames: [String]) -> [String] {
            CUDALibrarySearch.candidates(sonames: sonames, environment: environment, glob: glob)
        }
        let d = try LoadedLibrary.open(name: "libcuda.so.1", candidates: candidates(Self.driverSonames))
        let n = try LoadedLibrary.open(name: "libnvrtc.so.13 (or .12)", candidates: candidates(Self.nvrtcSonames))
        driver = d
        nvrtc = n
        compiler = try NVRTC(library: n)
        do {
            cublasLt = try LoadedLibrary.open(name: "libcublasLt.so.13 (or .12)", candidates: candidates(Self.cublasLtSonames))
            cublasLtProblem = nil
        } catch {
            cublasLt = nil
            cublasLtProblem = "\(error)"
        }
        do {
            cudnn = try LoadedLibrary.open(name: "libcudnn.so.9", candidates: candidates(CUDNN.sonames))
            cudnnProblem = nil
        } catch {
            cudnn = nil
            cudnnProblem = "\(error)"
        }

        cuInit = try d.symbol("cuInit", as: PFN_cuInit.self)
        cuDriverGetVersion = try d.symbol("cuDriverGetVersion", as: PFN_cuDriverGetVersion.self)
        cuDeviceGet = try d.symbol("cuDeviceGet", as: PFN_cuDeviceGet.self)
        cuDeviceGetCount = try d.symbol("cuDeviceGetCount", as: PFN_cuDeviceGetCount.self)
        cuDeviceGetName = try d.symbol("cuDeviceGetName", as: PFN_cuDeviceGetName.self)
        cuDeviceGetAttribute = try d.symbol("cuDeviceGetAttribute", as: PFN_cuDeviceGetAttribute.self)
        cuDeviceTotalMem = try d.symbol("cuDeviceTotalMem_v2", as: PFN_cuDeviceTotalMem_v2.self)
        cuDevicePrimaryCtxRetain = try d.symbol("cuDevicePrimaryCtxRetain", as: PFN_cuDevicePrimaryCtxRetain.self)
        cuCtxSetCurrent = try d.symbol("cuCtxSetCurrent", as: PFN_cuCtxSetCurrent.self)
        cuCtxSynchronize = try d.symbol("cuCtxSynchronize", as: PFN_cuCtxSynchronize.self)
        cuStreamCreate = try d.symbol("cuStreamCreate", as: PFN_cuStreamCreate.self)
        cuStreamSynchronize = try d.symbol("cuStreamSynchronize", as: PFN_cuStreamSynchronize.self)
        cuMemAlloc = try d.symbol("cuMemAlloc_v2", as: PFN_cuMemAlloc_v2.self)
        cuMemFree = try d.symbol("cuMemFree_v2", as: PFN_cuMemFree_v2.self)
        cuMemcpyHtoD = try d.symbol("cuMemcpyHtoD_v2", as: PFN_cuMemcpyHtoD_v2.self)
        cuMemcpyDtoH = try d.symbol("cuMemcpyDtoH_v2", as: PFN_cuMemcpyDtoH_v2.self)
        cuMemsetD8 = try d.symbol("cuMemsetD8_v2", as: PFN_cuMemsetD8_v2.self)
        cuMemcpyDtoDAsync = try d.symbol("cuMemcpyDtoDAsync_v2", as: PFN_cuMemcpyDtoDAsync_v2.self)
        cuMemsetD8Async = try d.symbol("cuMemsetD8Async", as: PFN_cuMemsetD8Async.self)
        cuMemAllocHost = try d.symbol("cuMemAllocHost_v2", as: PFN_cuMemAllocHost_v2.self)
        cuMemFreeHost = try d.symbol("cuMemFreeHost", as: PFN_cuMemFreeHost.self)
        cuMemcpyHtoDAsync = try d.symbol("cuMemcpyHtoDAsync_v2", as: PFN_cuMemcpyHtoDAsync_v2.self)
        cuMemcpyDtoHAsync = try d.symbol("cuMemcpyDtoHAsync_v2", as: PFN_cuMemcpyDtoHAsync_v2.self)
        cuMemGetInfo = try d.symbol("cuMemGetInfo_v2", as: PFN_cuMemGetInfo_v2.self)
        cuModuleLoadData = try d.symbol("cuModuleLoadData", as: PFN_cuModuleLoadData.self)
        cuModuleGetFunction = try d.symbol("cuModuleGetFunction", as: PFN_cuModuleGetFunction.self)
        cuFuncSetAttribute = try d.symbol("cuFuncSetAttribute", as: PFN_cuFuncSetAttribute.self)
        cuLaunchKernel = try d.symbol("cuLaunchKernel", as: PFN_cuLaunchKernel.self)
        cuEventCreate = try d.symbol("cuEventCreate", as: PFN_cuEventCreate.self)
        cuEventRecord = try d.symbol("cuEventRecord", as: PFN_cuEventRecord.self)
        cuEventSynchronize = try d.symbol("cuEventSynchronize", as: PFN_cuEventSynchronize.self)
        cuEventElapsedTime = try d.symbol("cuEventElapsedTime", as: PFN_cuEventElapsedTime.self)
        cuEventDestroy = try d.symbol("cuEventDestroy_v2", as: PFN_cuEventDestroy_v2.self)
        cuStreamWaitEvent = try d.symbol("cuStreamWaitEvent", as: PFN_cuStreamWaitEvent.self)
        cuGetErrorString = try d.symbol("cuGetErrorString", as: PFN_cuGetErrorString.self)

    }

    /// The process-wide libraries, loaded once.
    public static let shared: Result<CUDALibraries, Error> = Result { try CUDALibraries() }

    /// Throws a `CUDAError.driver` naming `call` unless `result` is CUDA_SUCCESS.
    func check(_ result: CUresult, _ call: String) throws {
        guard result != CCUDA_SUCCESS else { return }
        throw CUDAError.driver(call: call, code: result, message: errorString(result))
    }

    func errorString(_ result: CUresult) -> String {
        var text: UnsafePointer<CChar>? = nil
        if cuGetErrorString(result, &text) == CCUDA_SUCCESS, let text { return String(cString: text) }
        return "unknown error"
    }

    public var driverVersion: (major: Int, minor: Int)? {
        var v: Int32 = 0
        guard cuDriverGetVersion(&v) == CCUDA_SUCCESS else { return nil }
        return (Int(v) / 1000, Int(v) % 1000 / 10)
    }

    public var nvrtcVersionNumber: (major: Int, minor: Int)? { compiler.version }
}
