import CCUDA

/// libnccl.so.2, loaded at run time like the other CUDA libraries (the same search: the loader's
/// path, LD_LIBRARY_PATH, CUDA_HOME, /usr/local/cuda, pip's nvidia-nccl-cu12 under site-packages),
/// with the entry points data-parallel training calls.
public final class NCCLLibrary: @unchecked Sendable {
    public let library: LoadedLibrary
    let getVersion: PFN_ncclGetVersion
    let getUniqueId: PFN_ncclGetUniqueId
    let commInitRank: PFN_ncclCommInitRank
    let commDestroy: PFN_ncclCommDestroy
    let commAbort: PFN_ncclCommAbort
    let commGetAsyncError: PFN_ncclCommGetAsyncError
    let getErrorString: PFN_ncclGetErrorString
    let allReduce: PFN_ncclAllReduce
    let broadcast: PFN_ncclBroadcast
    let groupStart: PFN_ncclGroupStart
    let groupEnd: PFN_ncclGroupEnd

    public static let sonames = ["libnccl.so.2"]

    public init(environment: [String: String] = CUDALibrarySearch.processEnvironment,
                glob: (String) -> [String] = CUDALibrarySearch.systemGlob) throws {
        let candidates = CUDALibrarySearch.candidates(sonames: Self.sonames, environment: environment, glob: glob)
        let l = try LoadedLibrary.open(name: "libnccl.so.2", candidates: candidates)
        library = l
        getVersion = try l.symbol("ncclGetVersion", as: PFN_ncclGetVersion.self)
        getUniqueId = try l.symbol("ncclGetUniqueId", as: PFN_ncclGetUniqueId.self)
        commInitRank = try l.symbol("ncclCommInitRank", as: PFN_ncclCommInitRank.self)
        commDestroy = try l.symbol("ncclCommDestroy", as: PFN_ncclCommDestroy.self)
        commAbort = try l.symbol("ncclCommAbort", as: PFN_ncclCommAbort.self)
        commGetAsyncError = try l.symbol("ncclCommGetAsyncError", as: PFN_ncclCommGetAsyncError.self)
        getErrorString = try l.symbol("ncclGetErrorString", as: PFN_ncclGetErrorString.self)
        allReduce = try l.symbol("ncclAllReduce", as: PFN_ncclAllReduce.self)
        broadcast = try l.symbol("ncclBroadcast", as: PFN_ncclBroadcast.self)
        groupStart = try l.symbol("ncclGroupStart", as: PFN_ncclGroupStart.self)
        groupEnd = try l.symbol("ncclGroupEnd", as: PFN_ncclGroupEnd.self)
    }

    /// "2.21.5" from NCCL's integer version (major·10000 + minor·100 + patch since 2.9).
    public var version: String {
        var v: Int32 = 0
        guard getVersion(&v) == SWIFTLET_NCCL_SUCCESS else { return "unknown" }
        let n = Int(v)
        return n >= 10000 ? "\(n / 10000).\(n / 100 % 100).\(n % 100)" : "\(n / 1000).\(n / 100 % 10).\(n % 100)"
    }

    /// Throws `DistributedError.nccl` naming `call` unless `result` is ncclSuccess.
    func check(_ result: ncclResult_t, _ call: String) throws(DistributedError) {
        guard result != SWIFTLET_NCCL_SUCCESS else { return }
        let message = getErrorString(result).map { String(cString: $0) } ?? "unknown error"
        throw DistributedError.nccl(call: call, code: result, message: message)
    }

    /// A fresh unique id as bytes (rank 0 makes it; the rendezvous hands it to the others).
    func uniqueId() throws(DistributedError) -> [UInt8] {
        var id = ncclUniqueId()
        try check(getUniqueId(&id), "ncclGetUniqueId")
        return withUnsafeBytes(of: &id) { Array($0) }
    }
}
