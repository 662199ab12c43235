import CCUDA

/// Causal grouped-query attention on the GPU: the straightforward version (one warp per query,
/// exact online softmax in f32, O(T) memory: only the log-sum-exp is kept for the backward). The
/// tiled tensor-core kernels (FlashAttentionKernels.swift) take over on compute capability 8.0+ for
/// head dims 64 and 128; these remain for the rest, and both are twins of CPU/Attention.swift.
enum CUDAAttention {
    static let source = """
    // Causal grouped-query attention over packed rows, exact softmax with fp32 accumulation.
    // One warp per (query, head); lanes split the head dimension (headDim <= 256). The backward
    // recomputes probabilities from the saved log-sum-exp (O(T) memory): one kernel for dQ (which
    // also writes D = rowsum(dO*O)), one for dK and dV per key (no atomics, deterministic).
    // A query i sees key j of its row when seq[j] == seq[i] >= 0, j <= i, and i - j < window.
    // SOFTCAP (Gemma 2, a template parameter: the plain kernels compile as without it): scores are
    // cap·tanh(score / cap) before the softmax, and dS carries the factor 1 − tanh².
    #define MAXD 8  // headDim / 32 rounded up, at most 256 / 32

    // The capped score and d capped / d score (1 without a cap).
    template <bool SOFTCAP>
    __device__ __forceinline__ float attention_cap(float score, float softcap, float* slope) {
        if (!SOFTCAP) { *slope = 1.f; return score; }
        const float c = tanhf(score / softcap) * softcap, t = c / softcap;
        *slope = 1.f - t * t;
        return c;
    }

    template <bool SOFTCAP>
    __device__ __forceinline__ void attention_forward_body(
        const storage_t* __restrict__ q, const storage_t* __restrict__ k, const storage_t* __restrict__ v,
        const int* __restrict__ seq, storage_t* __restrict__ out, float* __restrict__ lse,
        int rows, int columns, int heads, int kvHeads, int headDim, int window, float scale, float softcap)
    {
        int warpsPerBlock = blockDim.x >> 5, lane = threadIdx.x & 31;
        int i = blockIdx.x * warpsPerBlock + (threadIdx.x >> 5);
        int rh = blockIdx.y, row = rh / heads, h = rh % heads;
        if (i >= columns) return;
        int g = h / (heads / kvHeads);
        long long n = (long long)row * columns + i;
        int qs = seq[n];
        const storage_t* qp = q + n * heads * headDim + h * headDim;
        float qr[MAXD], acc[MAXD];
        #pragma unroll
        for (int t = 0; t < MAXD; t++) {
            int c = lane + 32 * t;
            qr[t] = c < headDim ? to_f32(qp[c]) * scale : 0.f;
            acc[t] = 0.f;
        }
        float m = NEG_INF, l = 0.f;
        if (qs >= 0) {
            int first = window > 0 ? max(0, i - window + 1) : 0;
            for (int j = first; j <= i; j++) {
                long long kn = (long long)row * columns + j;
                if (seq[kn] != qs) continue;
                const storage_t* kp = k + kn * kvHeads * headDim + g * headDim;
                float s = 0.f;
                #pragma unroll
                for (int t = 0; t < MAXD; t++) { int c = lane + 32 * t; if (c < headDim) s += qr[t] * to_f32(kp[c]); }
                s = warp_sum(s);
                if (SOFTCAP) { float slope; s = attention_cap<true>(s, softcap, &slope); }
                float mNew = fmaxf(m, s);
                float correction = __expf(m - mNew), p = __expf(s - mNew);
                l = l * correction + p;
                const storage_t* vp = v + kn * kvHeads * headDim + g * headDim;
                #pragma unroll
                for (int t = 0; t < MAXD; t++) { int c = lane + 32 * t; if (c < headDim) acc[t] = acc[t] * correction + p * to_f32(vp[c]); }
                m = mNew;
            }
        }
        storage_t* op = out + n * heads * headDim + h * headDim;
        float inv = l > 0.f ? 1.f / l : 0.f;
        #pragma unroll
        for (int t = 0; t < MAXD; t++) { int c = lane + 32 * t; if (c < headDim) op[c] = to_storage(acc[t] * inv); }
        if (lane == 0) lse[n * heads + h] = l > 0.f ? m + __logf(l) : NEG_INF;
    }

    template <bool SOFTCAP>
    __device__ __forceinline__ void attention_backward_dq_body(
        const storage_t* __restrict__ dOut, const storage_t* __restrict__ q, const storage_t* __restrict__ k,
        const storage_t* __restrict__ v, const storage_t* __restrict__ out, const float* __restrict__ lse,
        const int* __restrict__ seq, storage_t* __restrict__ dQ, float* __restrict__ rowDot,
        int rows, int columns, int heads, int kvHeads, int headDim, int window, float scale, float softcap)
    {
        int warpsPerBlock = blockDim.x >> 5, lane = threadIdx.x & 31;
        int i = blockIdx.x * warpsPerBlock + (threadIdx.x >> 5);
        int rh = blockIdx.y, row = rh / heads, h = rh % heads;
        if (i >= columns) return;
        int g = h / (heads / kvHeads);
        long long n = (long long)row * columns + i;
        int qs = seq[n];
        long long qOff = n * heads * headDim + h * headDim;
        float qr[MAXD], dor[MAXD], dq[MAXD];
        float d = 0.f;
        #pragma unroll
        for (int t = 0; t < MAXD; t++) {
            int c = lane + 32 * t;
            qr[t] = c < headDim ? to_f32(q[qOff + c]) : 0.f;
            dor[t] = c < headDim ? to_f32(dOut[qOff + c]) : 0.f;
            d += c < headDim ? dor[t] * to_f32(out[qOff + c]) : 0.f;
            dq[t] = 0.f;
        }
        d = warp_sum(d);
        if (lane == 0) rowDot[n * heads + h] = d;
        float L = lse[n * heads + h];
        if (qs >= 0) {
            int first = window > 0 ? max(0, i - window + 1) : 0;
            for (int j = first; j <= i; j++) {
                long long kn = (long long)row * columns + j;
                if (seq[kn] != qs) continue;
                long long kvOff = kn * kvHeads * headDim + g * headDim;
                float s = 0.f, dp = 0.f;
                #pragma unroll
                for (int t = 0; t < MAXD; t++) {
                    int c = lane + 32 * t;
                    if (c < headDim) { s += qr[t] * to_f32(k[kvOff + c]); dp += dor[t] * to_f32(v[kvOff + c]); }
                }
                s = warp_sum(s); dp = warp_sum(dp);
                float slope;
                const float z = attention_cap<SOFTCAP>(s * scale, softcap, &slope);
                float p = __expf(z - L);
                float ds = SOFTCAP ? p * (dp - d) * slope * scale : p * (dp - d) * scale;
                #pragma unroll
                for (int t = 0; t < MAXD; t++) { int c = lane + 32 * t; if (c < headDim) dq[t] += ds * to_f32(k[kvOff + c]); }
            }
        }
        #pragma unroll
        for (int t = 0; t < MAXD; t++) { int c = lane + 32 * t; if (c < headDim) dQ[qOff + c] = to_storage(dq[t]); }
    }
    
    // One warp per (key j, kv head g): loops over the query heads of the group and the queries that see j.
    template <bool SOFTCAP>
    __device__ __forceinline__ void attention_backward_dkdv_body(
        const storage_t* __restrict__ dOut, const storage_t* __restrict__ q, const storage_t* __restrict__ k,
        const storage_t* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ rowDot,
        const int* __restrict__ seq, storage_t* __restrict__ dK, storage_t* __restrict__ dV,
        int rows, int columns, int heads, int kvHeads, int headDim, int window, float scale, float softcap)
    {
        int warpsPerBlock = blockDim.x >> 5, lane = threadIdx.x & 31;
        int j = blockIdx.x * warpsPerBlock + (threadIdx.x >> 5);
        int rg = blockIdx.y, row = rg / kvHeads, g = rg % kvHeads;
        if (j >= columns) return;
        int group = heads / kvHeads;
        long long kn = (long long)row * columns + j;
        int ks = seq[kn];
        long long kvOff = kn * kvHeads * headDim + g * headDim;
        float kr[MAXD], vr[MAXD], dk[MAXD], dv[MAXD];
        #pragma unroll
        for (int t = 0; t < MAXD; t++) {
            int c = lane + 32 * t;
            kr[t] = c < headDim ? to_f32(k[kvOff + c]) : 0.f;
            vr[t] = c < headDim ? to_f32(v[kvOff + c]) : 0.f;
            dk[t] = 0.f; dv[t] = 0.f;
        }
        if (ks >= 0) {
            int last = window > 0 ? min(columns - 1, j + window - 1) : columns - 1;
            for (int i = j; i <= last; i++) {
                long long n = (long long)row * columns + i;
                if (seq[n] != ks) continue;
                for (int h = g * group; h < (g + 1) * group; h++) {
                    long long qOff = n * heads * headDim + h * headDim;
                    float s = 0.f, dp = 0.f;
                    #pragma unroll
                    for (int t = 0; t < MAXD; t++) {
                        int c = lane + 32 * t;
                        if (c < headDim) { s += to_f32(q[qOff + c]) * kr[t]; dp += to_f32(dOut[qOff + c]) * vr[t]; }
                    }
                    s = warp_sum(s); dp = warp_sum(dp);
                    float slope;
                    const float z = attention_cap<SOFTCAP>(s * scale, softcap, &slope);
                    float p = __expf(z - lse[n * heads + h]);
                    float ds = SOFTCAP ? p * (dp - rowDot[n * heads + h]) * slope * scale
                                       : p * (dp - rowDot[n * heads + h]) * scale;
                    #pragma unroll
                    for (int t = 0; t < MAXD; t++) {
                        int c = lane + 32 * t;
                        if (c < headDim) { dv[t] += p * to_f32(dOut[qOff + c]); dk[t] += ds * to_f32(q[qOff + c]); }
                    }
                }
            }
        }
        #pragma unroll
        for (int t = 0; t < MAXD; t++) {
            int c = lane + 32 * t;
            if (c < headDim) { dK[kvOff + c] = to_storage(dk[t]); dV[kvOff + c] = to_storage(dv[t]); }
        }
    }

    // The kernels: plain (as before softcapping existed) and softcapped (one more argument).
    #define ATTENTION_ARGS int rows, int columns, int heads, int kvHeads, int headDim, int window, float scale
    #define ATTENTION_PASS rows, columns, heads, kvHeads, headDim, window, scale
    #define ATTENTION_KERNELS(SUFFIX, SOFTCAP, CAP_PARAM, CAP)                                                       \\
    extern "C" __global__ void attention_forward##SUFFIX(                                                            \\
        const storage_t* __restrict__ q, const storage_t* __restrict__ k, const storage_t* __restrict__ v,           \\
        const int* __restrict__ seq, storage_t* __restrict__ out, float* __restrict__ lse, ATTENTION_ARGS CAP_PARAM) \\
    { attention_forward_body<SOFTCAP>(q, k, v, seq, out, lse, ATTENTION_PASS, CAP); }                                \\
    extern "C" __global__ void attention_backward_dq##SUFFIX(                                                        \\
        const storage_t* __restrict__ dOut, const storage_t* __restrict__ q, const storage_t* __restrict__ k,        \\
        const storage_t* __restrict__ v, const storage_t* __restrict__ out, const float* __restrict__ lse,           \\
        const int* __restrict__ seq, storage_t* __restrict__ dQ, float* __restrict__ rowDot, ATTENTION_ARGS CAP_PARAM) \\
    { attention_backward_dq_body<SOFTCAP>(dOut, q, k, v, out, lse, seq, dQ, rowDot, ATTENTION_PASS, CAP); }          \\
    extern "C" __global__ void attention_backward_dkdv##SUFFIX(                                                      \\
        const storage_t* __restrict__ dOut, const storage_t* __restrict__ q, const storage_t* __restrict__ k,        \\
        const storage_t* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ rowDot,            \\
        const int* __restrict__ seq, storage_t* __restrict__ dK, storage_t* __restrict__ dV, ATTENTION_ARGS CAP_PARAM) \\
    { attention_backward_dkdv_body<SOFTCAP>(dOut, q, k, v, lse, rowDot, seq, dK, dV, ATTENTION_PASS, CAP); }
    #define ATTENTION_NO_PARAM
    #define ATTENTION_CAP_PARAM , float softcap
    ATTENTION_KERNELS(, false, ATTENTION_NO_PARAM, 0.f)
    ATTENTION_KERNELS(_softcap, true, ATTENTION_CAP_PARAM, softcap)
    """
    static let warpsPerBlock = 4
}

extension CUDABackend {
    /// The geometry arguments, and the cap where the softcapped kernels run.
    private func attentionArguments(_ layout: AttentionLayout) -> [KernelArgument] {
        [.int32(Int32(layout.rows)), .int32(Int32(layout.columns)), .int32(Int32(layout.heads)),
         .int32(Int32(layout.kvHeads)), .int32(Int32(layout.headDim)), .int32(Int32(layout.slidingWindow ?? 0)),
         .float(layout.scale)] + (layout.softcap.map { [.float($0)] } ?? [])
    }

    /// A kernel's name for this layout: the softcapped specialisation when it caps.
    func attentionKernel(_ name: String, _ layout: AttentionLayout) -> String {
        layout.softcap == nil ? name : name + "_softcap"
    }

    private func attentionGrid(_ layout: AttentionLayout, heads: Int) -> (Int, Int, Int) {
        ((layout.columns + CUDAAttention.warpsPerBlock - 1) / CUDAAttention.warpsPerBlock, layout.rows * heads, 1)
    }

    public func attention(_ q: Tensor, _ k: Tensor, _ v: Tensor, layout: AttentionLayout,
                          into out: Tensor, logSumExp: Tensor) {
        precondition(layout.headDim <= 256, "head_dim \(layout.headDim) > 256 is not supported by the CUDA attention")
        for t in [q, k, v, out] { expect(t, computeType) }
        expect(logSumExp, .f32)
        if usesCUDNNAttention(layout, [q, k, v, out]),
           cudnnAttention(q, k, v, layout: layout, into: out, logSumExp: logSumExp) { return }
        if usesFlashAttention(headDim: layout.headDim, [q, k, v, out]),
           flashAttention(q, k, v, layout: layout, into: out, logSumExp: logSumExp) { return }
        run {
            try kernels.launch(try function(attentionKernel("attention_forward", layout), CUDAAttention.source),
                               grid: attentionGrid(layout, heads: layout.heads), block: (32 * CUDAAttention.warpsPerBlock, 1, 1),
                               arguments: [.pointer(q.device), .pointer(k.device), .pointer(v.device),
                                           .pointer(layout.sequenceIds.device), .pointer(out.device),
                                           .pointer(logSumExp.device)] + attentionArguments(layout))
        }
    }

    public func attentionBackward(dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor,
                                  logSumExp: Tensor, layout: AttentionLayout,
                                  dQ: Tensor, dK: Tensor, dV: Tensor) {
        if usesCUDNNAttention(layout, [dOut, q, k, v, out, dQ, dK, dV]),
           cudnnAttentionBackward(dOut: dOut, q: q, k: k, v: v, out: out, logSumExp: logSumExp, layout: layout,
                                  dQ: dQ, dK: dK, dV: dV) { return }
        if usesFlashAttention(headDim: layout.headDim, [dOut, q, k, v, out, dQ, dK, dV]),
           flashAttentionBackward(dOut: dOut, q: q, k: k, v: v, out: out, logSumExp: logSumExp,
                                  layout: layout, dQ: dQ, dK: dK, dV: dV) { return }
        let rowDot = try! empty([q.shape[0], layout.heads], .f32)   // written for every (token, head)
        run {
            try kernels.launch(try function(attentionKernel("attention_backward_dq", layout), CUDAAttention.source),
                               grid: attentionGrid(layout, heads: layout.heads), block: (32 * CUDAAttention.warpsPerBlock, 1, 1),
                               arguments: [.pointer(dOut.device), .pointer(q.device), .pointer(k.device), .pointer(v.device),
                                           .pointer(out.device), .pointer(logSumExp.device),
                                           .pointer(layout.sequenceIds.device), .pointer(dQ.device),
                                           .pointer(rowDot.device)] + attentionArguments(layout))
            try kernels.launch(try function(attentionKernel("attention_backward_dkdv", layout), CUDAAttention.source),
                               grid: attentionGrid(layout, heads: layout.kvHeads), block: (32 * CUDAAttention.warpsPerBlock, 1, 1),
                               arguments: [.pointer(dOut.device), .pointer(q.device), .pointer(k.device), .pointer(v.device),
                                           .pointer(logSumExp.device), .pointer(rowDot.device),
                                           .pointer(layout.sequenceIds.device), .pointer(dK.device),
                                           .pointer(dV.device)] + attentionArguments(layout))
        }
    }
}
