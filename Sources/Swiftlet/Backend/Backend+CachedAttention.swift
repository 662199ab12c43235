/// The host fallback of `cachedAttention` for backends without a kernel (CUDA for now): copies
/// q and the cache to host memory, runs the CPU kernel in Float32 and copies the result back.
/// Correct but slow for long caches — a device kernel replaces it where it matters.
extension Backend {
    public func cachedAttention(_ q: Tensor, keys: Tensor, values: Tensor, layout: CachedAttentionLayout,
                                into out: Tensor) {
        let hostQ = download(q), hostK = download(keys), hostV = download(values)
        let valid = downloadInts(layout.keyValid)
        var result = [Float](repeating: 0, count: out.count)
        hostQ.withUnsafeBufferPointer { qp in hostK.withUnsafeBufferPointer { kp in
            hostV.withUnsafeBufferPointer { vp in valid.withUnsafeBufferPointer { validp in
                result.withUnsafeMutableBufferPointer { op in
                    CachedAttentionKernel.forward(q: qp, k: kp, v: vp, keyValid: validp, layout: layout, out: op)
                }
            } }
        } }
        // upload rounds to out's dtype once, as a device kernel writing out would.
        guard let staged = try? upload(result, out.shape, out.dtype) else {
            preconditionFailure("no memory for the cached attention's output")
        }
        copy(staged, into: out)
    }
}
