/// The doctor's check of generation's attention (CUDA/Kernels/CachedAttentionKernels.swift) against
/// CPU/CachedAttention.swift: decode (one query, with and without key splits over blocks), prefill
/// from an empty cache, a chat turn's prefill on top of a filled cache, left padding, sliding
/// windows, GQA groups of 1 to 16 heads and head dims 64 to 256, and Gemma 2's softcapped scores
/// (the _softcap kernels; a cap of 1.5 keeps tanh far from linear, 50 is Gemma 2's own).
extension CUDAOpSelfTest {
    mutating func cachedAttention() throws {
        try cachedAttentionCase("decode 1×1 at 1500, 32/4 heads, d 64 (tinyllama)", rows: 1, queries: 1, start: 1500,
                                capacity: 2048, heads: 32, kvHeads: 4, headDim: 64, timed: true)
        try cachedAttentionCase("decode 4×1 at 300, left padding, 32/8 heads, d 128", rows: 4, queries: 1, start: 300,
                                capacity: 400, heads: 32, kvHeads: 8, headDim: 128, padding: [0, 17, 250, 3], timed: true)
        try cachedAttentionCase("decode 1×1 at 700, 32/2 heads (group 16), d 128, window 256", rows: 1, queries: 1,
                                start: 700, capacity: 800, heads: 32, kvHeads: 2, headDim: 128, window: 256)
        try cachedAttentionCase("decode 2×1 at 90, 8/1 heads, d 256", rows: 2, queries: 1, start: 90, capacity: 100,
                                heads: 8, kvHeads: 1, headDim: 256, padding: [5, 0])
        try cachedAttentionCase("prefill 2×200, left padding, 8/2 heads, d 96", rows: 2, queries: 200, start: 0,
                                capacity: 260, heads: 8, kvHeads: 2, headDim: 96, padding: [0, 50])
        try cachedAttentionCase("turn prefill 1×37 at 120, 12/2 heads, d 64, window 64", rows: 1, queries: 37, start: 120,
                                capacity: 300, heads: 12, kvHeads: 2, headDim: 64, window: 64)
        try cachedAttentionCase("prefill 1×512, 32/4 heads, d 64 (tinyllama)", rows: 1, queries: 512, start: 0,
                                capacity: 1024, heads: 32, kvHeads: 4, headDim: 64, timed: true)
        try cachedAttentionCase("decode 2×1 at 300, 16/8 heads, d 256, window 128, softcap 1.5", rows: 2, queries: 1,
                                start: 300, capacity: 400, heads: 16, kvHeads: 8, headDim: 256, window: 128,
                                padding: [0, 9], softcap: 1.5, scale: 1.0 / 16)
        try cachedAttentionCase("decode 1×1 at 1500, 8/4 heads, d 256, softcap 50 (gemma 2)", rows: 1, queries: 1,
                                start: 1500, capacity: 2048, heads: 8, kvHeads: 4, headDim: 256, softcap: 50, scale: 1.0 / 16)
        try cachedAttentionCase("prefill 2×150, left padding, 16/8 heads, d 256, window 64, softcap 1.5", rows: 2,
                                queries: 150, start: 0, capacity: 200, heads: 16, kvHeads: 8, headDim: 256, window: 64,
                                padding: [0, 40], softcap: 1.5, scale: 1.0 / 16)
    }

    /// One geometry: random q and cache, `padding[r]` invalid columns at the start of row r, and
    /// random flags past the new tokens (never written yet, so never to be read).
    mutating func cachedAttentionCase(_ label: String, rows: Int, queries: Int, start: Int, capacity: Int,
                                      heads: Int, kvHeads: Int, headDim: Int, window: Int = 0,
                                      padding: [Int]? = nil, softcap: Float? = nil, scale: Float? = nil,
                                      timed: Bool = false) throws {
        say("cached attention \(label):")
        var valid = [Int32](repeating: 0, count: rows * capacity)
        for r in 0..<rows {
            for c in 0..<capacity {
                valid[r * capacity + c] = c < (padding?[r] ?? 0) ? 0
                    : c < start + queries ? 1 : Int32(generator.next() % 2)
            }
        }
        let keyValid = try ints(valid)
        func layout(_ flags: Tensor) -> CachedAttentionLayout {
            CachedAttentionLayout(rows: rows, queries: queries, start: start, capacity: capacity, heads: heads,
                                  kvHeads: kvHeads, headDim: headDim, keyValid: flags,
                                  slidingWindow: window == 0 ? nil : window, scale: scale, softcap: softcap)
        }
        let layouts = (layout(keyValid.cpu), layout(keyValid.gpu))
        let q = try pair([rows * queries, heads * headDim], storage, in: -2...2)
        let k = try pair([rows * capacity, kvHeads * headDim], storage, in: -2...2)
        let v = try pair([rows * capacity, kvHeads * headDim], storage)
        let out = try output([rows * queries, heads * headDim], storage)
        cpu.cachedAttention(q.cpu, keys: k.cpu, values: v.cpu, layout: layouts.0, into: out.cpu)
        gpu.cachedAttention(q.gpu, keys: k.gpu, values: v.gpu, layout: layouts.1, into: out.gpu)
        let splits = CUDACachedAttention.splits(layouts.1, multiprocessors: gpu.device.multiprocessors)
        let path = start == 0 && queries > 1 ? "on the training attention" : "\(splits) key split\(splits == 1 ? "" : "s")"
        check("out (\(path))", out)
        guard timed else { return }
        // Decode reads each row's keys and values once: that traffic is the speed limit.
        let bytes = Double(2 * rows * (start + queries) * kvHeads * headDim * storage.size)
        time("forward", bytes: bytes) {
            gpu.cachedAttention(q.gpu, keys: k.gpu, values: v.gpu, layout: layouts.1, into: out.gpu)
        }
    }
}
