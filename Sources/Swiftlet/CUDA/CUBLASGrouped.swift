import CCUDA
import Foundation

/// cuBLAS's grouped GEMM (cublasGemmGroupedBatchedEx, cuBLAS 12.5+) for a mixture's expert products:
/// every expert's block in one launch. The library takes bf16 or f16 in and out, or f32 in and out
/// (f32 accumulation; with CUBLAS_COMPUTE_32F and the default math mode, plain f32 FMAs, no TF32), but
/// no bf16-to-f32 form: the frozen products go bf16 to bf16, and the LoRA products of many experts in
/// f32 on f32 copies of their activations (`CUDAExpertProducts`). Opt-in (`SWIFTLET_GROUPED_GEMM=1`)
/// until it has run on a GPU; a library without it, or a call it refuses, leaves the GEMMs one by one.
final class CUBLASGrouped {
    private let create: PFN_cublasCreate_v2
    private let destroy: PFN_cublasDestroy_v2
    private let setStream: PFN_cublasSetStream_v2
    private let gemm: PFN_cublasGemmGroupedBatchedEx
    private var handle: cublasHandle_t?
    /// Keeps the library loaded.
    private let library: LoadedLibrary

    nonisolated(unsafe) static var enabled = CUDALibrarySearch.processEnvironment["SWIFTLET_GROUPED_GEMM"] == "1"
    static let sonames = ["libcublas.so.13", "libcublas.so.12"]

    /// `besideCUBLASLt`: the loaded cuBLASLt's path; the libcublas of the same folder (the same toolkit)
    /// comes first.
    init(stream: CUstream, besideCUBLASLt: String?) throws {
        var candidates = CUDALibrarySearch.candidates(sonames: Self.sonames, environment: CUDALibrarySearch.processEnvironment,
                                                      glob: CUDALibrarySearch.systemGlob)
        if let lt = besideCUBLASLt, let slash = lt.lastIndex(of: "/") {
            candidates = Self.sonames.map { String(lt[...slash]) + $0 } + candidates
        }
        library = try LoadedLibrary.open(name: "libcublas.so.13 (or .12)", candidates: candidates)
        create = try library.symbol("cublasCreate_v2", as: PFN_cublasCreate_v2.self)
        destroy = try library.symbol("cublasDestroy_v2", as: PFN_cublasDestroy_v2.self)
        setStream = try library.symbol("cublasSetStream_v2", as: PFN_cublasSetStream_v2.self)
        gemm = try library.symbol("cublasGemmGroupedBatchedEx", as: PFN_cublasGemmGroupedBatchedEx.self)
        try CUBLASLt.check(create(&handle), "cublasCreate_v2")
        try CUBLASLt.check(setStream(handle, stream), "cublasSetStream_v2")
    }

    deinit { if let handle { _ = destroy(handle) } }

    /// Whether cuBLAS can take the problem: it faults (it does not return an error) on 16-bit or f32
    /// operands whose rows are not 16-byte aligned, so those stay with cuBLASLt.
    static func takes(_ p: Problem) -> Bool {
        [p.a, p.b, p.c].allSatisfy { $0.device % 16 == 0 && ($0.shape[1] * $0.dtype.size) % 16 == 0 }
    }

    /// One product c = alpha · op(a) · op(b) + beta · c of row-major tensors, as `CUDABackend.matmul`
    /// computes it; every problem of a call has one type (a, b and c).
    struct Problem {
        var a: Tensor
        var transposeA = false
        var b: Tensor
        var transposeB: Bool
        var c: Tensor
        var alpha: Float = 1
        var beta: Float = 0
    }

    /// Every problem in one call, each a group of its own (their row counts differ). `pointers` is a
    /// device array of 3 × count words already holding the library A, B and C addresses, in that
    /// order, problem by problem (`CUDABackend.storeWords`).
    func run(_ problems: [Problem], pointers: CUdeviceptr) throws {
        let count = problems.count
        // Column-major view, as CUBLASLt: the library's A is our b, its B our a; C is cᵀ.
        func op(_ transposed: Bool) -> Int32 { transposed ? Int32(SWIFTLET_CUBLAS_OP_T) : Int32(SWIFTLET_CUBLAS_OP_N) }
        var transA = problems.map { op($0.transposeB) }, transB = problems.map { op($0.transposeA) }
        var m = problems.map { Int32($0.c.shape[1]) }, n = problems.map { Int32($0.c.shape[0]) }
        var k = problems.map { Int32($0.transposeA ? $0.a.shape[0] : $0.a.shape[1]) }
        var lda = problems.map { Int32($0.b.shape[1]) }, ldb = problems.map { Int32($0.a.shape[1]) }
        var ldc = problems.map { Int32($0.c.shape[1]) }
        var alpha = problems.map(\.alpha), beta = problems.map(\.beta)
        var sizes = [Int32](repeating: 1, count: count)
        let type = CUBLASLt.dataType(problems[0].a.dtype)
        let a = UnsafeRawPointer(bitPattern: UInt(pointers)), b = UnsafeRawPointer(bitPattern: UInt(pointers + UInt64(8 * count)))
        let c = UnsafeMutableRawPointer(bitPattern: UInt(pointers + UInt64(16 * count)))
        try CUBLASLt.check(gemm(handle, &transA, &transB, &m, &n, &k, &alpha,
                                a?.assumingMemoryBound(to: UnsafeRawPointer?.self), type, &lda,
                                b?.assumingMemoryBound(to: UnsafeRawPointer?.self), type, &ldb, &beta,
                                c?.assumingMemoryBound(to: UnsafeMutableRawPointer?.self), type, &ldc,
                                Int32(count), &sizes, Int32(SWIFTLET_CUBLAS_COMPUTE_32F)),
                           "cublasGemmGroupedBatchedEx")
    }

    /// Writes a launch's own arguments into device memory, in stream order: the pointer arrays of a
    /// grouped GEMM, without a host buffer to keep alive until a copy has run.
    static let source = """
    struct Words { unsigned long long word[496]; };
    extern "C" __global__ void store_words(const __grid_constant__ Words words, unsigned long long* out, int count) {
        for (int i = threadIdx.x; i < count; i += blockDim.x) out[i] = words.word[i];
    }
    """
    static let wordsPerLaunch = 496
}

extension CUDABackend {
    /// `words` written at `out` (device), up to 496 a launch.
    func storeWords(_ words: [UInt64], at out: CUdeviceptr) {
        var start = 0
        while start < words.count {
            let chunk = words[start..<Swift.min(start + CUBLASGrouped.wordsPerLaunch, words.count)]
            var job = KernelJob()
            for word in chunk { job.append(word) }
            let bytes = job.bytes + [UInt8](repeating: 0, count: (CUBLASGrouped.wordsPerLaunch - chunk.count) * 8)
            let destination = out + UInt64(8 * start)
            run("storeWords") {
                try kernels.launch(try function("store_words", CUBLASGrouped.source), grid: (1, 1, 1), block: (256, 1, 1),
                                   arguments: [.bytes(bytes), .pointer(destination), .int32(Int32(chunk.count))])
            }
            start += chunk.count
        }
    }

    /// The problems in one grouped GEMM where cuBLAS has it (`CUBLASGrouped.enabled`) and takes them;
    /// false where it does not run them (the caller then runs them one by one). Throws only when out
    /// of device memory.
    func groupedGEMM(_ problems: [CUBLASGrouped.Problem]) throws -> Bool {
        guard CUBLASGrouped.enabled, problems.count > 1, problems.allSatisfy(CUBLASGrouped.takes),
              let grouped = groupedBLAS else { return false }
        let type = problems[0].a.dtype
        precondition(problems.allSatisfy { $0.a.dtype == type && $0.b.dtype == type && $0.c.dtype == type },
                     "a grouped GEMM of one type in and out")
        for p in problems { _ = CUBLASLt.dimensions(p.a, transposeA: p.transposeA, p.b, transposeB: p.transposeB, p.c) }
        let table = try empty([3 * problems.count], .u64)
        storeWords(problems.map { UInt64($0.b.device) } + problems.map { UInt64($0.a.device) } + problems.map { UInt64($0.c.device) },
                   at: table.device)
        do {
            // runThrowing: a refusal falls back to one by one instead of stopping the program
            try withExtendedLifetime(table) { try runThrowing("matmul, grouped") { try grouped.run(problems, pointers: table.device) } }
            return true
        } catch {
            CUBLASGrouped.enabled = false
            FileHandle.standardError.write(Data("swiftlet: cuBLAS's grouped GEMM is unavailable (\(error)); the experts' GEMMs run one by one\n".utf8))
            return false
        }
    }
}
