import CCUDA

/// Matrix products through cuBLASLt: bf16 (or f32) inputs, f32 accumulation, bf16 or f32 output,
/// alpha/beta accumulation. Row-major tensors are handed to the column-major library as their
/// transposes (C = A·B is computed as Cᵀ = Bᵀ·Aᵀ), so no data moves. Descriptors and the chosen
/// algorithm are cached per shape.
final class CUBLASLt {
    private let createHandle: PFN_cublasLtCreate
    private let descCreate: PFN_cublasLtMatmulDescCreate
    private let descSet: PFN_cublasLtMatmulDescSetAttribute
    private let layoutCreate: PFN_cublasLtMatrixLayoutCreate
    private let preferenceCreate: PFN_cublasLtMatmulPreferenceCreate
    private let preferenceSet: PFN_cublasLtMatmulPreferenceSetAttribute
    private let heuristic: PFN_cublasLtMatmulAlgoGetHeuristic
    private let matmulCall: PFN_cublasLtMatmul
    let version: Int
    private var handle: cublasLtHandle_t?
    private let workspace: DeviceBuffer
    private let stream: CUstream
    private let device: CUDADevice
    /// SWIFTLET_GEMM_TUNE=1: time cuBLASLt's candidate algorithms on a shape's first product and keep
    /// the fastest. Off by default: it measured within noise of the heuristic's first choice on the
    /// H200 (TinyLlama and llama2-7b steps, docs/PERFORMANCE.md), and the first choice gives the same
    /// algorithm, and so the same bits, in every process.
    nonisolated(unsafe) static var tunes = CUDALibrarySearch.processEnvironment["SWIFTLET_GEMM_TUNE"] == "1"

    private struct Key: Hashable {
        var m, n, k: Int
        var transA, transB: Bool
        var ab, c: Int32
        var lda, ldb, ldc: Int
        var alignment: Int
    }
    private struct Plan {
        var desc: cublasLtMatmulDesc_t
        var aLayout, bLayout, cLayout: cublasLtMatrixLayout_t
        var algo: cublasLtMatmulAlgo_t
        /// The heuristic's candidates, best guess first (`algo` is the one chosen).
        var candidates: [cublasLtMatmulAlgo_t]
    }
    private var plans: [Key: Plan] = [:]

    init(library: LoadedLibrary, device: CUDADevice) throws {
        createHandle = try library.symbol("cublasLtCreate", as: PFN_cublasLtCreate.self)
        descCreate = try library.symbol("cublasLtMatmulDescCreate", as: PFN_cublasLtMatmulDescCreate.self)
        descSet = try library.symbol("cublasLtMatmulDescSetAttribute", as: PFN_cublasLtMatmulDescSetAttribute.self)
        layoutCreate = try library.symbol("cublasLtMatrixLayoutCreate", as: PFN_cublasLtMatrixLayoutCreate.self)
        preferenceCreate = try library.symbol("cublasLtMatmulPreferenceCreate", as: PFN_cublasLtMatmulPreferenceCreate.self)
        preferenceSet = try library.symbol("cublasLtMatmulPreferenceSetAttribute", as: PFN_cublasLtMatmulPreferenceSetAttribute.self)
        heuristic = try library.symbol("cublasLtMatmulAlgoGetHeuristic", as: PFN_cublasLtMatmulAlgoGetHeuristic.self)
        matmulCall = try library.symbol("cublasLtMatmul", as: PFN_cublasLtMatmul.self)
        version = Int(try library.symbol("cublasLtGetVersion", as: PFN_cublasLtGetVersion.self)())
        try Self.check(createHandle(&handle), "cublasLtCreate")
        workspace = try device.memory.allocate(bytes: Self.workspaceBytes)
        stream = device.stream
        self.device = device
    }

    static let workspaceBytes = 32 << 20

    static func check(_ status: cublasStatus_t, _ call: String) throws {
        guard status == 0 else { throw CUDAError.invalid("\(call) failed with cublasStatus \(status)") }
    }

    static func dataType(_ dtype: DType) -> Int32 {
        switch dtype {
        case .bf16: return Int32(SWIFTLET_CUDA_R_16BF)
        case .f16: return Int32(SWIFTLET_CUDA_R_16F)
        case .f32: return Int32(SWIFTLET_CUDA_R_32F)
        default: preconditionFailure("cuBLASLt matmul of \(dtype)")
        }
    }

    /// c[m×n] = alpha·op(a)·op(b) + beta·c, all row-major device tensors.
    func matmul(a: CUdeviceptr, transA: Bool, lda: Int, b: CUdeviceptr, transB: Bool, ldb: Int,
                c: CUdeviceptr, ldc: Int, m: Int, n: Int, k: Int, inputType: DType, outputType: DType,
                alpha: Float, beta: Float) throws {
        var alignment = 256
        for p in [a, b, c] { while alignment > 1 && p % UInt64(alignment) != 0 { alignment /= 2 } }
        let key = Key(m: m, n: n, k: k, transA: transA, transB: transB, ab: Self.dataType(inputType),
                      c: Self.dataType(outputType), lda: lda, ldb: ldb, ldc: ldc, alignment: alignment)
        var plan = try plans[key] ?? makePlan(key)
        if plans[key] == nil, Self.tunes, beta == 0, plan.candidates.count > 1 {
            // c is overwritten (beta 0), so the candidates can run on the real operands
            plan.algo = try fastest(plan, a: a, b: b, c: c, alpha: alpha)
        }
        plans[key] = plan
        try run(plan, plan.algo, a: a, b: b, c: c, alpha: alpha, beta: beta)
    }

    private func run(_ plan: Plan, _ algo: cublasLtMatmulAlgo_t, a: CUdeviceptr, b: CUdeviceptr, c: CUdeviceptr,
                     alpha: Float, beta: Float) throws {
        var alpha = alpha, beta = beta
        var algo = algo
        // Column-major view: "A" of the library is our b, "B" is our a (Cᵀ = op(b)ᵀ·op(a)ᵀ).
        try Self.check(matmulCall(handle, plan.desc, &alpha,
                                  UnsafeRawPointer(bitPattern: UInt(b)), plan.aLayout,
                                  UnsafeRawPointer(bitPattern: UInt(a)), plan.bLayout,
                                  &beta, UnsafeRawPointer(bitPattern: UInt(c)), plan.cLayout,
                                  UnsafeMutableRawPointer(bitPattern: UInt(c)), plan.cLayout,
                                  &algo, UnsafeMutableRawPointer(bitPattern: UInt(workspace.pointer)),
                                  Self.workspaceBytes, UnsafeMutableRawPointer(stream)),
                       "cublasLtMatmul")
    }

    /// The candidate that runs fastest on these operands (median of 3 timed runs after a warm-up);
    /// candidates that fail to launch are skipped.
    private func fastest(_ plan: Plan, a: CUdeviceptr, b: CUdeviceptr, c: CUdeviceptr, alpha: Float) throws -> cublasLtMatmulAlgo_t {
        var best = plan.algo, bestMs = Float.infinity
        for algo in plan.candidates {
            guard (try? run(plan, algo, a: a, b: b, c: c, alpha: alpha, beta: 0)) != nil else { continue }
            var times: [Float] = []
            for _ in 0..<3 {
                guard let ms = try? device.time({ try run(plan, algo, a: a, b: b, c: c, alpha: alpha, beta: 0) }) else { break }
                times.append(ms)
            }
            guard times.count == 3 else { continue }
            let ms = times.sorted()[1]
            if ms < bestMs { (best, bestMs) = (algo, ms) }
        }
        return best
    }

    private func makePlan(_ key: Key) throws -> Plan {
        var desc: cublasLtMatmulDesc_t?
        try Self.check(descCreate(&desc, Int32(SWIFTLET_CUBLAS_COMPUTE_32F), Int32(SWIFTLET_CUDA_R_32F)),
                       "cublasLtMatmulDescCreate")
        // Library A = our b: op(b)ᵀ is [n×k]. Stored row-major b is [k×n] (ld n) → column-major n×k: no transpose;
        // transposed b is stored [n×k] (ld k) → column-major k×n: transpose.
        var opA: Int32 = key.transB ? Int32(SWIFTLET_CUBLAS_OP_T) : Int32(SWIFTLET_CUBLAS_OP_N)
        var opB: Int32 = key.transA ? Int32(SWIFTLET_CUBLAS_OP_T) : Int32(SWIFTLET_CUBLAS_OP_N)
        try Self.check(descSet(desc, Int32(SWIFTLET_CUBLASLT_MATMUL_DESC_TRANSA), &opA, 4), "TRANSA")
        try Self.check(descSet(desc, Int32(SWIFTLET_CUBLASLT_MATMUL_DESC_TRANSB), &opB, 4), "TRANSB")
        var aLayout: cublasLtMatrixLayout_t?, bLayout: cublasLtMatrixLayout_t?, cLayout: cublasLtMatrixLayout_t?
        let (aRows, aCols) = key.transB ? (key.k, key.n) : (key.n, key.k)
        let (bRows, bCols) = key.transA ? (key.m, key.k) : (key.k, key.m)
        try Self.check(layoutCreate(&aLayout, key.ab, UInt64(aRows), UInt64(aCols), Int64(key.ldb)), "layout A")
        try Self.check(layoutCreate(&bLayout, key.ab, UInt64(bRows), UInt64(bCols), Int64(key.lda)), "layout B")
        try Self.check(layoutCreate(&cLayout, key.c, UInt64(key.n), UInt64(key.m), Int64(key.ldc)), "layout C")
        var preference: cublasLtMatmulPreference_t?
        try Self.check(preferenceCreate(&preference), "cublasLtMatmulPreferenceCreate")
        var workspaceBytes = UInt64(Self.workspaceBytes)
        try Self.check(preferenceSet(preference, Int32(SWIFTLET_CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES),
                                     &workspaceBytes, 8), "MAX_WORKSPACE_BYTES")
        var alignment = UInt32(key.alignment)
        for attribute in 5...8 {  // MIN_ALIGNMENT_A/B/C/D_BYTES: our views may sit at any offset
            try Self.check(preferenceSet(preference, Int32(attribute), &alignment, 4), "MIN_ALIGNMENT")
        }
        var results = [cublasLtMatmulHeuristicResult_t](repeating: cublasLtMatmulHeuristicResult_t(), count: 8)
        var found: Int32 = 0
        try Self.check(heuristic(handle, desc, aLayout, bLayout, cLayout, cLayout, preference, Int32(results.count),
                                 &results, &found), "cublasLtMatmulAlgoGetHeuristic")
        let candidates = results.prefix(Int(found)).filter { $0.state == 0 }.map(\.algo)
        guard let first = candidates.first else {
            throw CUDAError.invalid("cuBLASLt has no algorithm for m \(key.m) n \(key.n) k \(key.k) (alignment \(key.alignment))")
        }
        return Plan(desc: desc!, aLayout: aLayout!, bLayout: bLayout!, cLayout: cLayout!, algo: first,
                    candidates: Self.tunes ? candidates : [first])
    }
}

extension CUBLASLt {
    /// (m, n, k) of c [m, n] = op(a) [m, k] · op(b) [k, n], checked.
    static func dimensions(_ a: Tensor, transposeA: Bool, _ b: Tensor, transposeB: Bool, _ c: Tensor) -> (m: Int, n: Int, k: Int) {
        precondition(a.shape.rank == 2 && b.shape.rank == 2 && c.shape.rank == 2, "matmul needs 2-D tensors")
        precondition(a.dtype == b.dtype, "matmul of \(a.dtype) by \(b.dtype): inputs must share a type")
        let m = transposeA ? a.shape[1] : a.shape[0], k = transposeA ? a.shape[0] : a.shape[1]
        let kb = transposeB ? b.shape[1] : b.shape[0], n = transposeB ? b.shape[0] : b.shape[1]
        precondition(k == kb && c.shape[0] == m && c.shape[1] == n,
                     "matmul \(a.shape)\(transposeA ? "ᵀ" : "") × \(b.shape)\(transposeB ? "ᵀ" : "") into \(c.shape)")
        return (m, n, k)
    }
}

extension CUDABackend {
    public func matmul(_ a: Tensor, transposeA: Bool, _ b: Tensor, transposeB: Bool,
                       into c: Tensor, alpha: Float, beta: Float) {
        let (m, n, k) = CUBLASLt.dimensions(a, transposeA: transposeA, b, transposeB: transposeB, c)
        if m == 0 || n == 0 { return }
        if k == 0 { scale(c, by: beta); return }
        // The profile tells the thin products (the LoRA path's, N or K of a few ranks) from the rest.
        run(Swift.min(m, n, k) <= CUDASplitBF16.thinWidth ? "matmul, thin" : "matmul") {
            try blas.matmul(a: a.device, transA: transposeA, lda: a.shape[1], b: b.device, transB: transposeB,
                            ldb: b.shape[1], c: c.device, ldc: c.shape[1], m: m, n: n, k: k,
                            inputType: a.dtype, outputType: c.dtype, alpha: alpha, beta: beta)
        }
    }
}
