import CCUDA
#if canImport(Glibc)
import Glibc
#endif

/// NVRTC, the CUDA run-time compiler: CUDA C source → CUBIN for one architecture. It needs no GPU
/// and no driver, so the tests compile every kernel with it wherever the library can be found.
public final class NVRTC: @unchecked Sendable {
    let library: LoadedLibrary
    private let versionCall: PFN_nvrtcVersion
    private let createProgram: PFN_nvrtcCreateProgram
    private let compileProgram: PFN_nvrtcCompileProgram
    private let logSize: PFN_nvrtcGetProgramLogSize
    private let log: PFN_nvrtcGetProgramLog
    private let cubinSize: PFN_nvrtcGetCUBINSize
    private let cubin: PFN_nvrtcGetCUBIN
    private let destroyProgram: PFN_nvrtcDestroyProgram
    private let errorString: PFN_nvrtcGetErrorString

    init(library n: LoadedLibrary) throws {
        library = n
        versionCall = try n.symbol("nvrtcVersion", as: PFN_nvrtcVersion.self)
        createProgram = try n.symbol("nvrtcCreateProgram", as: PFN_nvrtcCreateProgram.self)
        compileProgram = try n.symbol("nvrtcCompileProgram", as: PFN_nvrtcCompileProgram.self)
        logSize = try n.symbol("nvrtcGetProgramLogSize", as: PFN_nvrtcGetProgramLogSize.self)
        log = try n.symbol("nvrtcGetProgramLog", as: PFN_nvrtcGetProgramLog.self)
        cubinSize = try n.symbol("nvrtcGetCUBINSize", as: PFN_nvrtcGetCUBINSize.self)
        cubin = try n.symbol("nvrtcGetCUBIN", as: PFN_nvrtcGetCUBIN.self)
        destroyProgram = try n.symbol("nvrtcDestroyProgram", as: PFN_nvrtcDestroyProgram.self)
        errorString = try n.symbol("nvrtcGetErrorString", as: PFN_nvrtcGetErrorString.self)
    }

    /// NVRTC alone, found by the same search as the other CUDA libraries.
    public static func load(environment: [String: String] = CUDALibrarySearch.processEnvironment,
                            glob: (String) -> [String] = CUDALibrarySearch.systemGlob) throws -> NVRTC {
        let candidates = CUDALibrarySearch.candidates(sonames: CUDALibraries.nvrtcSonames, environment: environment, glob: glob)
        return try NVRTC(library: LoadedLibrary.open(name: "libnvrtc.so.13 (or .12)", candidates: candidates))
    }

    public var version: (major: Int, minor: Int)? {
        var major: Int32 = 0, minor: Int32 = 0
        guard versionCall(&major, &minor) == CCUDA_NVRTC_SUCCESS else { return nil }
        return (Int(major), Int(minor))
    }

    private func check(_ result: nvrtcResult, _ call: String) throws {
        guard result != CCUDA_NVRTC_SUCCESS else { return }
        let message = errorString(result).map { String(cString: $0) } ?? "unknown error"
        throw CUDAError.nvrtc(call: call, code: result, message: message)
    }

    /// The CUBIN of `source`; a compile error carries NVRTC's whole log.
    public func compile(source: String, name: String, options: [String]) throws -> [UInt8] {
        try compileWithLog(source: source, name: name, options: options).cubin
    }

    /// The CUBIN and NVRTC's log (with `--ptxas-options=-v`, each kernel's registers and spills).
    public func compileWithLog(source: String, name: String, options: [String]) throws -> (cubin: [UInt8], log: String) {
        var program: nvrtcProgram? = nil
        try check(createProgram(&program, source, name + ".cu", 0, nil, nil), "nvrtcCreateProgram")
        defer { _ = destroyProgram(&program) }
        let cOptions = options.map { strdup($0) }
        defer { cOptions.forEach { Glibc.free($0) } }
        let optionPointers: [UnsafePointer<CChar>?] = cOptions.map { UnsafePointer($0) }
        let result = optionPointers.withUnsafeBufferPointer { compileProgram(program, Int32(options.count), $0.baseAddress) }
        var text = ""
        var logBytes = 0
        if logSize(program, &logBytes) == CCUDA_NVRTC_SUCCESS, logBytes > 1 {
            var buffer = [CChar](repeating: 0, count: logBytes + 1)
            if log(program, &buffer) == CCUDA_NVRTC_SUCCESS { text = String(cString: buffer) }
        }
        if result != CCUDA_NVRTC_SUCCESS {
            let message = errorString(result).map { String(cString: $0) } ?? "error \(result)"
            throw CUDAError.compile(name: name, log: "\(message) (options: \(options.joined(separator: " ")))\n\(text)")
        }
        var size = 0
        try check(cubinSize(program, &size), "nvrtcGetCUBINSize")
        guard size > 0 else { throw CUDAError.invalid("NVRTC produced an empty CUBIN for \(name)") }
        var bytes = [UInt8](repeating: 0, count: size)
        try bytes.withUnsafeMutableBytes {
            try check(cubin(program, $0.baseAddress!.assumingMemoryBound(to: CChar.self)), "nvrtcGetCUBIN")
        }
        return (bytes, text)
    }
}
