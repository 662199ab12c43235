/// GEMM on the CPU backend (the kernel is CPUGemm).
extension CPUBackend {
    public func matmul(_ a: Tensor, transposeA: Bool, _ b: Tensor, transposeB: Bool,
                       into c: Tensor, alpha: Float, beta: Float) {
        precondition(a.shape.rank == 2 && b.shape.rank == 2 && c.shape.rank == 2, "matmul needs 2-D tensors")
        let m = transposeA ? a.shape[1] : a.shape[0], k = transposeA ? a.shape[0] : a.shape[1]
        let kb = transposeB ? b.shape[1] : b.shape[0], n = transposeB ? b.shape[0] : b.shape[1]
        precondition(k == kb && c.shape[0] == m && c.shape[1] == n,
                     "matmul \(a.shape)\(transposeA ? "ᵀ" : "") × \(b.shape)\(transposeB ? "ᵀ" : "") into \(c.shape)")
        CPUGemm.sgemm(transA: transposeA, transB: transposeB, m: m, n: n, k: k, alpha: alpha,
                      a: UnsafePointer(a.floats.baseAddress!), lda: a.shape[1],
                      b: UnsafePointer(b.floats.baseAddress!), ldb: b.shape[1],
                      beta: beta, c: c.floats.baseAddress!, ldc: c.shape[1])
    }
}
