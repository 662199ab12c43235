import CCUDA

/// Generation's attention on the GPU: the new tokens' queries against the KV cache
/// (CachedAttentionLayout), twin of CPU/CachedAttention.swift. Exact softmax, f32 accumulation,
/// 16-bit storage; no log-sum-exp (generation runs no backward).
///
/// Decode is memory-bound (one query per row against the whole cache), so a block takes one query
/// of one row with all the query heads that share a KV head: each key and value row is read once
/// for the group, not once per head. Its warps split the keys, each with an online softmax, and
/// merge through shared memory. When rows × kv heads × queries blocks cannot fill the GPU (decode
/// at batch 1), the keys are also split over blocks (flash-decoding): each split writes its
/// partial (max, sum, unnormalised output) in f32 and a second kernel merges the splits.
/// A prefill from an empty cache is plain causal attention and runs on the training kernels
/// (AttentionKernels / FlashAttentionKernels) instead.
enum CUDACachedAttention {
    static let source = """
    // Query i of a row sits at cache column start + i and sees the row's columns j <= start + i
    // whose keyValid flag is set and, with a window w > 0, start + i - j < w.
    #define CA_WARPS 4
    #define CA_HEADS 8  // query heads per pass; larger groups take several passes over the keys

    // D: head dim / 32 rounded up to 2, 4 or 8 (head dims up to 256).
    // Grid (queries, rows * kvHeads * headPasses, splits); block 32 * CA_WARPS threads.
    // SOFTCAP (Gemma 2): scores are cap·tanh(score / cap) before the softmax (the _softcap kernels).
    template <int D, bool SOFTCAP>
    __device__ __forceinline__ void cached_attention_body(
        const storage_t* __restrict__ q, const storage_t* __restrict__ k, const storage_t* __restrict__ v,
        const int* __restrict__ keyValid, storage_t* __restrict__ out,
        float* __restrict__ partialMax, float* __restrict__ partialSum, float* __restrict__ partialOut,
        int queries, int start, int capacity, int heads, int kvHeads, int headDim, int window, float scale, float softcap)
    {
        __shared__ float shMax[CA_WARPS][CA_HEADS], shSum[CA_WARPS][CA_HEADS];
        __shared__ float shOut[CA_WARPS][CA_HEADS][32 * D];
        const int group = heads / kvHeads, passes = (group + CA_HEADS - 1) / CA_HEADS;
        const int i = blockIdx.x, splits = gridDim.z, split = blockIdx.z;
        const int pass = blockIdx.y % passes, rg = blockIdx.y / passes, row = rg / kvHeads, g = rg % kvHeads;
        const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
        const int firstHead = g * group + pass * CA_HEADS, count = min(CA_HEADS, group - pass * CA_HEADS);
        const int column = start + i;
        const int first = window > 0 ? max(0, column - window + 1) : 0;
        // This split's share of the keys first..column.
        const int span = column - first + 1, chunk = (span + splits - 1) / splits;
        const int lo = first + split * chunk, hi = min(column, lo + chunk - 1);
        const long long qRow = (long long)row * queries + i;

        float qr[CA_HEADS][D], acc[CA_HEADS][D], m[CA_HEADS], l[CA_HEADS];
        #pragma unroll
        for (int x = 0; x < CA_HEADS; x++) {
            const storage_t* qp = q + (qRow * heads + firstHead + x) * headDim;
            #pragma unroll
            for (int t = 0; t < D; t++) {
                int c = lane + 32 * t;
                qr[x][t] = x < count && c < headDim ? to_f32(qp[c]) * scale : 0.f;
                acc[x][t] = 0.f;
            }
            m[x] = NEG_INF; l[x] = 0.f;
        }
        for (int j = lo + warp; j <= hi; j += CA_WARPS) {
            long long kn = (long long)row * capacity + j;
            if (keyValid[kn] == 0) continue;  // the same j for the whole warp: no divergence
            const storage_t* kp = k + (kn * kvHeads + g) * headDim;
            const storage_t* vp = v + (kn * kvHeads + g) * headDim;
            float kr[D], vr[D];
            #pragma unroll
            for (int t = 0; t < D; t++) {
                int c = lane + 32 * t;
                kr[t] = c < headDim ? to_f32(kp[c]) : 0.f;
                vr[t] = c < headDim ? to_f32(vp[c]) : 0.f;
            }
            #pragma unroll
            for (int x = 0; x < CA_HEADS; x++) {
                if (x >= count) break;
                float s = 0.f;
                #pragma unroll
                for (int t = 0; t < D; t++) s += qr[x][t] * kr[t];
                s = warp_sum(s);
                if (SOFTCAP) s = tanhf(s / softcap) * softcap;
                float mNew = fmaxf(m[x], s);
                float correction = __expf(m[x] - mNew), p = __expf(s - mNew);
                l[x] = l[x] * correction + p;
                #pragma unroll
                for (int t = 0; t < D; t++) acc[x][t] = acc[x][t] * correction + p * vr[t];
                m[x] = mNew;
            }
        }
        #pragma unroll
        for (int x = 0; x < CA_HEADS; x++) {
            if (lane == 0) { shMax[warp][x] = m[x]; shSum[warp][x] = l[x]; }
            #pragma unroll
            for (int t = 0; t < D; t++) shOut[warp][x][lane + 32 * t] = acc[x][t];
        }
        __syncthreads();
        // Merge the warps: element (x, c) per thread.
        for (int e = threadIdx.x; e < count * headDim; e += blockDim.x) {
            int x = e / headDim, c = e % headDim;
            float mAll = NEG_INF;
            for (int w = 0; w < CA_WARPS; w++) mAll = fmaxf(mAll, shMax[w][x]);
            float lAll = 0.f, a = 0.f;
            if (mAll != NEG_INF) {
                for (int w = 0; w < CA_WARPS; w++) {
                    if (shMax[w][x] == NEG_INF) continue;
                    float f = __expf(shMax[w][x] - mAll);
                    lAll += shSum[w][x] * f;
                    a += shOut[w][x][c] * f;
                }
            }
            long long o = qRow * heads + firstHead + x;
            if (splits == 1) {
                // a query that sees nothing (left padding) writes zeros, as the CPU does
                out[o * headDim + c] = to_storage(lAll > 0.f ? a / lAll : 0.f);
            } else {
                partialOut[(o * splits + split) * headDim + c] = a;
                if (c == 0) { partialMax[o * splits + split] = mAll; partialSum[o * splits + split] = lAll; }
            }
        }
    }

    #define CA_NO_CAP_PARAM
    #define CA_CAP_PARAM , float softcap
    #define CACHED_ATTENTION(D, SUFFIX, SOFTCAP, CAP_PARAM, CAP) \\
    extern "C" __global__ void __launch_bounds__(32 * CA_WARPS) cached_attention_##D##SUFFIX( \\
        const storage_t* __restrict__ q, const storage_t* __restrict__ k, const storage_t* __restrict__ v, \\
        const int* __restrict__ keyValid, storage_t* __restrict__ out, \\
        float* __restrict__ partialMax, float* __restrict__ partialSum, float* __restrict__ partialOut, \\
        int queries, int start, int capacity, int heads, int kvHeads, int headDim, int window, float scale CAP_PARAM) \\
    { \\
        cached_attention_body<D, SOFTCAP>(q, k, v, keyValid, out, partialMax, partialSum, partialOut, \\
                                          queries, start, capacity, heads, kvHeads, headDim, window, scale, CAP); \\
    }
    CACHED_ATTENTION(2, , false, CA_NO_CAP_PARAM, 0.f)
    CACHED_ATTENTION(4, , false, CA_NO_CAP_PARAM, 0.f)
    CACHED_ATTENTION(8, , false, CA_NO_CAP_PARAM, 0.f)
    CACHED_ATTENTION(2, _softcap, true, CA_CAP_PARAM, softcap)
    CACHED_ATTENTION(4, _softcap, true, CA_CAP_PARAM, softcap)
    CACHED_ATTENTION(8, _softcap, true, CA_CAP_PARAM, softcap)

    // A prefill row's training-attention sequence ids: 0 for a real token, -1 for (left) padding.
    extern "C" __global__ void cached_attention_sequence_ids(const int* __restrict__ keyValid, int* __restrict__ seq, int n)
    {
        int i = blockIdx.x * blockDim.x + threadIdx.x;
        if (i < n) seq[i] = keyValid[i] != 0 ? 0 : -1;
    }

    // Merges the key splits of one (query, head) per block: out = Σ_s acc_s e^(m_s - M) / Σ_s l_s e^(m_s - M).
    extern "C" __global__ void cached_attention_merge(
        const float* __restrict__ partialMax, const float* __restrict__ partialSum,
        const float* __restrict__ partialOut, storage_t* __restrict__ out, int splits, int headDim)
    {
        const long long o = blockIdx.x;
        float mAll = NEG_INF;
        for (int s = 0; s < splits; s++) mAll = fmaxf(mAll, partialMax[o * splits + s]);
        float lAll = 0.f;
        if (mAll != NEG_INF) {
            for (int s = 0; s < splits; s++) {
                float ms = partialMax[o * splits + s];
                if (ms != NEG_INF) lAll += partialSum[o * splits + s] * __expf(ms - mAll);
            }
        }
        for (int c = threadIdx.x; c < headDim; c += blockDim.x) {
            float a = 0.f;
            if (mAll != NEG_INF) {
                for (int s = 0; s < splits; s++) {
                    float ms = partialMax[o * splits + s];
                    if (ms != NEG_INF) a += partialOut[(o * splits + s) * headDim + c] * __expf(ms - mAll);
                }
            }
            out[o * headDim + c] = to_storage(lAll > 0.f ? a / lAll : 0.f);
        }
    }
    """

    static let warps = 4
    /// Query heads a block handles per pass over the keys (CA_HEADS).
    static let headsPerPass = 8
    /// Fewest keys a split is worth launching for.
    static let keysPerSplit = 32

    /// Key splits over blocks: enough blocks for about two waves on `multiprocessors`, none with
    /// fewer than `keysPerSplit` keys. Prefill (many queries) gets 1.
    static func splits(_ layout: CachedAttentionLayout, multiprocessors: Int) -> Int {
        let passes = (layout.heads / layout.kvHeads + headsPerPass - 1) / headsPerPass
        let blocks = layout.queries * layout.rows * layout.kvHeads * passes
        let wanted = (2 * multiprocessors + blocks - 1) / blocks
        let keys = layout.start + layout.queries
        return Swift.max(1, Swift.min(wanted, keys / keysPerSplit))
    }
}

extension CUDABackend {
    public func cachedAttention(_ q: Tensor, keys: Tensor, values: Tensor, layout: CachedAttentionLayout,
                                into out: Tensor) {
        precondition(layout.headDim <= 256, "head_dim \(layout.headDim) > 256 is not supported by the CUDA cached attention")
        for t in [q, keys, values, out] { expect(t, computeType) }
        expect(layout.keyValid, .i32)
        guard layout.rows > 0, layout.queries > 0 else { return }
        if layout.start == 0, layout.queries > 1 { return prefillOnTrainingAttention(q, keys: keys, values: values, layout: layout, into: out) }
        let d = layout.headDim <= 64 ? 2 : layout.headDim <= 128 ? 4 : 8
        let passes = (layout.heads / layout.kvHeads + CUDACachedAttention.headsPerPass - 1) / CUDACachedAttention.headsPerPass
        let splits = CUDACachedAttention.splits(layout, multiprocessors: device.multiprocessors)
        let outputs = layout.rows * layout.queries * layout.heads
        // Partial results exist only with splits > 1; the kernel writes `out` itself otherwise.
        let partial = splits > 1
            ? (max: try! empty([outputs * splits], .f32), sum: try! empty([outputs * splits], .f32),
               out: try! empty([outputs * splits * layout.headDim], .f32))
            : (max: out, sum: out, out: out)
        run {
            try kernels.launch(try function("cached_attention_\(d)" + (layout.softcap == nil ? "" : "_softcap"),
                                            CUDACachedAttention.source),
                               grid: (layout.queries, layout.rows * layout.kvHeads * passes, splits),
                               block: (32 * CUDACachedAttention.warps, 1, 1),
                               arguments: [.pointer(q.device), .pointer(keys.device), .pointer(values.device),
                                           .pointer(layout.keyValid.device), .pointer(out.device),
                                           .pointer(partial.max.device), .pointer(partial.sum.device),
                                           .pointer(partial.out.device),
                                           .int32(Int32(layout.queries)), .int32(Int32(layout.start)),
                                           .int32(Int32(layout.capacity)), .int32(Int32(layout.heads)),
                                           .int32(Int32(layout.kvHeads)), .int32(Int32(layout.headDim)),
                                           .int32(Int32(layout.slidingWindow ?? 0)), .float(layout.scale)]
                                           + (layout.softcap.map { [.float($0)] } ?? []))
            guard splits > 1 else { return }
            try kernels.launch(try function("cached_attention_merge", CUDACachedAttention.source),
                               grid: (outputs, 1, 1), block: (Swift.min(128, (layout.headDim + 31) / 32 * 32), 1, 1),
                               arguments: [.pointer(partial.max.device), .pointer(partial.sum.device),
                                           .pointer(partial.out.device), .pointer(out.device),
                                           .int32(Int32(splits)), .int32(Int32(layout.headDim))])
        }
    }

    /// A prefill from an empty cache is causal attention within each row's new tokens: the
    /// training kernels (tensor-core tiles on 8.0+) run it, one row at a time since the rows' keys
    /// lie `capacity` apart. Real tokens see exactly what the cached layout lets them see; a
    /// padding query sees nothing here (its output is never used: its key is masked everywhere).
    private func prefillOnTrainingAttention(_ q: Tensor, keys: Tensor, values: Tensor, layout: CachedAttentionLayout,
                                            into out: Tensor) {
        let n = layout.queries
        let sequenceIds = try! empty([n], .i32), logSumExp = try! empty([n, layout.heads], .f32)
        let training = AttentionLayout(rows: 1, columns: n, heads: layout.heads, kvHeads: layout.kvHeads,
                                       headDim: layout.headDim, sequenceIds: sequenceIds,
                                       slidingWindow: layout.slidingWindow, scale: layout.scale, softcap: layout.softcap)
        for r in 0..<layout.rows {
            run {
                try kernels.launch(try function("cached_attention_sequence_ids", CUDACachedAttention.source),
                                   grid: ((n + 255) / 256, 1, 1), block: (256, 1, 1),
                                   arguments: [.pointer(layout.keyValid.device + CUdeviceptr(r * layout.capacity * 4)),
                                               .pointer(sequenceIds.device), .int32(Int32(n))])
            }
            let cacheRows = (r * layout.capacity)..<(r * layout.capacity + n)
            attention(q.rows((r * n)..<((r + 1) * n)), keys.rows(cacheRows), values.rows(cacheRows), layout: training,
                      into: out.rows((r * n)..<((r + 1) * n)), logSumExp: logSumExp)
        }
    }
}
