import CCUDA

/// The LoRA path's low-rank products on the GPU, with the semantics of `LoRAKernel` (CPU/LoRA.swift):
///   down      z[t, j]  = alpha · Σ_k f32(x[t, k]) · w(j, k)          (z = x Aᵀ, dz = s · dY B)
///   up_add    y[t, o]  = round(f32(y[t, o]) + scale · Σ_j z[t, j] · w(o, j))   (y += s · z Bᵀ, dx += dz A)
///   gradient  g(o, j) += alpha · Σ_t f32(m[t, o]) · z[t, j]          (dB += s · dYᵀ z, dA += dzᵀ x)
/// Activations are read once, straight from their 16-bit storage (never widened to an f32 copy), and
/// every sum is in f32. The rank is padded to R = 16, 32 or 64 (zeros), so each thread keeps a fixed
/// 64 f32 sums in registers: TM = 64 / R rows (down) or VO = 64 / R features (up_add, gradient).
///
/// Reductions over the long axis (k for down, t for gradient) are split over blocks, each writing
/// its partial sums to a scratch buffer; `lora_finalize` adds the partials in a fixed order. Within a
/// block the warps' sums meet in shared memory in warp order. No atomics: reruns are bit-identical.
enum CUDALoRA {
    static let source = """
    #define LORA_THREADS 256
    #define LORA_WARPS 8
    // f32 values in shared memory per block for the rank-side tile (the weight tile of down, the z
    // rows of up_add and gradient): 16 KB.
    #define LORA_TILE 4096

    // 8 storage values x[k .. k+8) as f32, zeros past n. vec: x's rows are 16-byte aligned and n % 8 == 0.
    __device__ __forceinline__ void lora_load8(const storage_t* __restrict__ p, int k, int n, int vec, float* v) {
        if (vec && k + 8 <= n) {
            const uint4 u = *reinterpret_cast<const uint4*>(p + k);
            const unsigned int b[4] = {u.x, u.y, u.z, u.w};
            #pragma unroll
            for (int i = 0; i < 4; ++i) {
                v[2 * i] = to_f32((storage_t)(b[i] & 0xffffu));
                v[2 * i + 1] = to_f32((storage_t)(b[i] >> 16));
            }
        } else {
            #pragma unroll
            for (int i = 0; i < 8; ++i) v[i] = k + i < n ? to_f32(p[k + i]) : 0.0f;
        }
    }

    // VO storage values p[o .. o+VO) as f32, zeros past n. vec: rows aligned to VO elements and n % VO == 0.
    template <int VO>
    __device__ __forceinline__ void lora_load_vo(const storage_t* __restrict__ p, int o, int n, int vec, float* v) {
        if (vec && VO == 4) {
            const uint2 u = *reinterpret_cast<const uint2*>(p + o);
            v[0] = to_f32((storage_t)(u.x & 0xffffu)); v[1] = to_f32((storage_t)(u.x >> 16));
            v[2] = to_f32((storage_t)(u.y & 0xffffu)); v[3] = to_f32((storage_t)(u.y >> 16));
        } else if (vec && VO == 2) {
            const unsigned int u = *reinterpret_cast<const unsigned int*>(p + o);
            v[0] = to_f32((storage_t)(u & 0xffffu)); v[1] = to_f32((storage_t)(u >> 16));
        } else {
            #pragma unroll
            for (int i = 0; i < VO; ++i) v[i] = o + i < n ? to_f32(p[o + i]) : 0.0f;
        }
    }

    template <int VO>
    __device__ __forceinline__ void lora_store_vo(storage_t* p, int o, int n, int vec, const float* v) {
        if (vec && VO == 4) {
            uint2 u;
            u.x = (unsigned int)to_storage(v[0]) | ((unsigned int)to_storage(v[1]) << 16);
            u.y = (unsigned int)to_storage(v[2]) | ((unsigned int)to_storage(v[3]) << 16);
            *reinterpret_cast<uint2*>(p + o) = u;
        } else if (vec && VO == 2) {
            *reinterpret_cast<unsigned int*>(p + o) = (unsigned int)to_storage(v[0]) | ((unsigned int)to_storage(v[1]) << 16);
        } else {
            #pragma unroll
            for (int i = 0; i < VO; ++i) if (o + i < n) p[o + i] = to_storage(v[i]);
        }
    }

    // Adds the block's per-warp sums acc[N] (N = 64 per thread) in warp order into red[N * 32]
    // (red[i * 32 + lane]); on return red holds the block's sums. Deterministic.
    template <int N>
    __device__ __forceinline__ void lora_block_sum(const float* acc, float* red) {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        for (int w = 0; w < LORA_WARPS; ++w) {
            if (warp == w) {
                #pragma unroll
                for (int i = 0; i < N; ++i) red[i * 32 + lane] = (w == 0 ? 0.0f : red[i * 32 + lane]) + acc[i];
            }
            __syncthreads();
        }
    }

    // down, one block: rows t0 .. t0 + 32·TM (lane l takes rows t0 + l + 32·m), k in the split
    // [blockIdx.y · ks, +ks), the block's 8 warps taking 8 consecutive k each in turn.
    // part[split][t][R]: this split's sums (zero for j >= r).
    template <int R>
    __device__ void lora_down(const storage_t* __restrict__ x, const float* __restrict__ w, int w_kr,
                              float* __restrict__ part, int T, int K, int r, int ks, int vec) {
        constexpr int TM = 64 / R;
        __shared__ __align__(16) float ws[LORA_TILE];          // ws[kk * R + j] = w(j, kbeg + kk), ks * R <= LORA_TILE
        __shared__ float red[64 * 32];
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        const int t0 = blockIdx.x * 32 * TM;
        const int kbeg = blockIdx.y * ks, kend = min(K, kbeg + ks);
        for (int i = threadIdx.x; i < ks * R; i += LORA_THREADS) {
            int kk, j;
            if (w_kr) { kk = i / R; j = i % R; } else { j = i / ks; kk = i % ks; }   // coalesced global reads
            const int k = kbeg + kk;
            ws[kk * R + j] = (j < r && k < kend) ? (w_kr ? w[(long long)k * r + j] : w[(long long)j * K + k]) : 0.0f;
        }
        __syncthreads();
        float acc[TM][R];
        #pragma unroll
        for (int m = 0; m < TM; ++m) {
            #pragma unroll
            for (int j = 0; j < R; ++j) acc[m][j] = 0.0f;
        }
        for (int k = kbeg + 8 * warp; k < kend; k += 8 * LORA_WARPS) {
            float xv[TM][8];
            #pragma unroll
            for (int m = 0; m < TM; ++m) {
                const int t = t0 + lane + 32 * m;
                if (t < T) lora_load8(x + (long long)t * K, k, kend, vec, xv[m]);
                else {
                    #pragma unroll
                    for (int i = 0; i < 8; ++i) xv[m][i] = 0.0f;
                }
            }
            #pragma unroll
            for (int i = 0; i < 8; ++i) {
                const float4* wk = reinterpret_cast<const float4*>(ws + (k - kbeg + i) * R);
                #pragma unroll
                for (int j4 = 0; j4 < R / 4; ++j4) {
                    const float4 w4 = wk[j4];   // the same address in every lane: a broadcast
                    #pragma unroll
                    for (int m = 0; m < TM; ++m) {
                        acc[m][4 * j4] = fmaf(xv[m][i], w4.x, acc[m][4 * j4]);
                        acc[m][4 * j4 + 1] = fmaf(xv[m][i], w4.y, acc[m][4 * j4 + 1]);
                        acc[m][4 * j4 + 2] = fmaf(xv[m][i], w4.z, acc[m][4 * j4 + 2]);
                        acc[m][4 * j4 + 3] = fmaf(xv[m][i], w4.w, acc[m][4 * j4 + 3]);
                    }
                }
            }
        }
        lora_block_sum<64>(&acc[0][0], red);
        for (int i = threadIdx.x; i < 64 * 32; i += LORA_THREADS) {
            const int v = i >> 5, l = i & 31;                 // sum v of lane l: row l + 32·(v / R), column v % R
            const int t = t0 + l + 32 * (v / R);
            if (t < T) part[((long long)blockIdx.y * T + t) * R + v % R] = red[i];
        }
    }

    // up_add, one block: features o0 .. o0 + 32·VO (lane l takes o0 + VO·l ..), rows
    // [blockIdx.y · tc, +tc), the 8 warps taking rows in turn. w(o, j) stays in registers.
    template <int R>
    __device__ void lora_up_add(const float* __restrict__ z, const float* __restrict__ w, int w_ro,
                                storage_t* __restrict__ y, float scale, int T, int O, int r, int tc, int vec) {
        constexpr int VO = 64 / R;
        __shared__ __align__(16) float zs[LORA_TILE];          // zs[tt * R + j] = z[tbeg + tt, j], tc * R <= LORA_TILE
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        const int o = blockIdx.x * 32 * VO + VO * lane;
        const int tbeg = blockIdx.y * tc, tend = min(T, tbeg + tc);
        for (int i = threadIdx.x; i < tc * R; i += LORA_THREADS) {
            const int tt = i / R, j = i % R, t = tbeg + tt;
            zs[i] = (j < r && t < tend) ? z[(long long)t * r + j] : 0.0f;
        }
        __syncthreads();
        if (o >= O) return;
        float wv[VO][R];
        #pragma unroll
        for (int v = 0; v < VO; ++v) {
            #pragma unroll
            for (int j = 0; j < R; ++j)
                wv[v][j] = (j < r && o + v < O) ? (w_ro ? w[(long long)j * O + o + v] : w[(long long)(o + v) * r + j]) : 0.0f;
        }
        for (int t = tbeg + warp; t < tend; t += LORA_WARPS) {
            float yv[VO], sum[VO];
            #pragma unroll
            for (int v = 0; v < VO; ++v) sum[v] = 0.0f;
            const float4* zt = reinterpret_cast<const float4*>(zs + (t - tbeg) * R);
            #pragma unroll
            for (int j4 = 0; j4 < R / 4; ++j4) {
                const float4 z4 = zt[j4];
                #pragma unroll
                for (int v = 0; v < VO; ++v) {
                    sum[v] = fmaf(z4.x, wv[v][4 * j4], sum[v]);
                    sum[v] = fmaf(z4.y, wv[v][4 * j4 + 1], sum[v]);
                    sum[v] = fmaf(z4.z, wv[v][4 * j4 + 2], sum[v]);
                    sum[v] = fmaf(z4.w, wv[v][4 * j4 + 3], sum[v]);
                }
            }
            storage_t* row = y + (long long)t * O;
            lora_load_vo<VO>(row, o, O, vec, yv);
            #pragma unroll
            for (int v = 0; v < VO; ++v) yv[v] = yv[v] + scale * sum[v];
            lora_store_vo<VO>(row, o, O, vec, yv);
        }
    }

    // gradient, one block: features o0 .. o0 + 32·VO (lane l takes o0 + VO·l ..), rows
    // [blockIdx.y · tc, +tc) (the 8 warps taking rows in turn). part[split][o][R].
    template <int R>
    __device__ void lora_gradient(const storage_t* __restrict__ m, const float* __restrict__ z,
                                  float* __restrict__ part, int T, int O, int r, int tc, int vec) {
        constexpr int VO = 64 / R;
        __shared__ __align__(16) float zs[LORA_TILE];
        __shared__ float red[64 * 32];
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        const int o0 = blockIdx.x * 32 * VO, o = o0 + VO * lane;
        const int tbeg = blockIdx.y * tc, tend = min(T, tbeg + tc);
        for (int i = threadIdx.x; i < tc * R; i += LORA_THREADS) {
            const int tt = i / R, j = i % R, t = tbeg + tt;
            zs[i] = (j < r && t < tend) ? z[(long long)t * r + j] : 0.0f;
        }
        __syncthreads();
        float acc[VO][R];
        #pragma unroll
        for (int v = 0; v < VO; ++v) {
            #pragma unroll
            for (int j = 0; j < R; ++j) acc[v][j] = 0.0f;
        }
        if (o < O) {
            for (int t = tbeg + warp; t < tend; t += LORA_WARPS) {
                float mv[VO];
                lora_load_vo<VO>(m + (long long)t * O, o, O, vec, mv);
                const float4* zt = reinterpret_cast<const float4*>(zs + (t - tbeg) * R);
                #pragma unroll
                for (int j4 = 0; j4 < R / 4; ++j4) {
                    const float4 z4 = zt[j4];
                    #pragma unroll
                    for (int v = 0; v < VO; ++v) {
                        acc[v][4 * j4] = fmaf(mv[v], z4.x, acc[v][4 * j4]);
                        acc[v][4 * j4 + 1] = fmaf(mv[v], z4.y, acc[v][4 * j4 + 1]);
                        acc[v][4 * j4 + 2] = fmaf(mv[v], z4.z, acc[v][4 * j4 + 2]);
                        acc[v][4 * j4 + 3] = fmaf(mv[v], z4.w, acc[v][4 * j4 + 3]);
                    }
                }
            }
        }
        lora_block_sum<64>(&acc[0][0], red);
        for (int i = threadIdx.x; i < 64 * 32; i += LORA_THREADS) {
            const int v = i >> 5, l = i & 31;                 // sum v of lane l: feature o0 + VO·l + v / R, column v % R
            const int of = o0 + VO * l + v / R;
            if (of < O) part[((long long)blockIdx.y * O + of) * R + v % R] = red[i];
        }
    }

    #define LORA_INSTANTIATE(R) \\
    extern "C" __global__ void __launch_bounds__(LORA_THREADS) lora_down_r##R(const storage_t* x, const float* w, int w_kr, \\
            float* part, int T, int K, int r, int ks, int vec) { lora_down<R>(x, w, w_kr, part, T, K, r, ks, vec); } \\
    extern "C" __global__ void __launch_bounds__(LORA_THREADS) lora_up_add_r##R(const float* z, const float* w, int w_ro, \\
            storage_t* y, float scale, int T, int O, int r, int tc, int vec) { lora_up_add<R>(z, w, w_ro, y, scale, T, O, r, tc, vec); } \\
    extern "C" __global__ void __launch_bounds__(LORA_THREADS) lora_gradient_r##R(const storage_t* m, const float* z, \\
            float* part, int T, int O, int r, int tc, int vec) { lora_gradient<R>(m, z, part, T, O, r, tc, vec); }
    LORA_INSTANTIATE(16)
    LORA_INSTANTIATE(32)
    LORA_INSTANTIATE(64)

    // out(i, j) (+)= alpha · Σ_s part[s][i][j] for i < rows, j < r, the splits added in order s = 0, 1, ...
    // out(i, j) = out[i * r + j], or out[j * rows + i] when transposed.
    extern "C" __global__ void lora_finalize(const float* __restrict__ part, int splits, int rows, int R, int r,
                                             float alpha, float* __restrict__ out, int accumulate, int transposed) {
        for (long long n = blockIdx.x * (long long)blockDim.x + threadIdx.x; n < (long long)rows * r;
             n += (long long)gridDim.x * blockDim.x) {
            // transposed outputs walk i fastest, so both layouts write consecutive addresses
            const int i = transposed ? (int)(n % rows) : (int)(n / r), j = transposed ? (int)(n / rows) : (int)(n % r);
            float sum = 0.0f;
            for (int s = 0; s < splits; ++s) sum += part[((long long)s * rows + i) * R + j];
            const long long at = transposed ? (long long)j * rows + i : (long long)i * r + j;
            out[at] = accumulate ? out[at] + alpha * sum : alpha * sum;
        }
    }
    """

    static let threads = 256
    /// f32 values of the per-block tile in shared memory (LORA_TILE).
    static let tile = 4096

    /// The padded rank the kernels use: 16, 32 or 64.
    static func paddedRank(_ r: Int) -> Int {
        precondition(r >= 1 && r <= LoRAShapes.maxRank, "LoRA rank \(r) outside 1...\(LoRAShapes.maxRank) for the CUDA kernels")
        return r <= 16 ? 16 : r <= 32 ? 32 : 64
    }

    /// Whether 16-bit rows of `width` elements at `pointer` allow `elements`-wide vector access.
    static func aligned(_ pointer: CUdeviceptr, width: Int, elements: Int) -> Bool {
        width % elements == 0 && pointer % UInt64(2 * elements) == 0
    }

    /// How a reduction axis of `length` splits over blocks: pieces of `tile / R` (256, 128 or 64,
    /// a multiple of 8), so a piece's rank-side tile fits LORA_TILE. (count, piece length).
    static func split(_ length: Int, R: Int) -> (count: Int, piece: Int) {
        let piece = Swift.max(8, tile / R)
        return (Swift.max(1, (length + piece - 1) / piece), piece)
    }
}

extension CUDABackend {
    public func loraDown(_ x: Tensor, _ w: Tensor, weightTransposed: Bool, into z: Tensor, alpha: Float) {
        LoRAShapes.checkDown(x, w, weightTransposed: weightTransposed, z)
        expect(x, computeType); expect(w, .f32); expect(z, .f32)
        let tokens = x.shape[0], k = x.shape[1], r = z.shape[1], R = CUDALoRA.paddedRank(r)
        guard tokens > 0 else { return }
        let (splits, piece) = CUDALoRA.split(k, R: R)
        let part = try! empty([splits, tokens, R], .f32)
        let vec = CUDALoRA.aligned(x.device, width: k, elements: 8)
        let rowsPerBlock = 32 * (64 / R)
        run {
            try kernels.launch(try function("lora_down_r\(R)", CUDALoRA.source),
                               grid: ((tokens + rowsPerBlock - 1) / rowsPerBlock, splits, 1), block: (CUDALoRA.threads, 1, 1),
                               arguments: [.pointer(x.device), .pointer(w.device), .int32(weightTransposed ? 1 : 0),
                                           .pointer(part.device), .int32(Int32(tokens)), .int32(Int32(k)), .int32(Int32(r)),
                                           .int32(Int32(piece)), .int32(vec ? 1 : 0)])
        }
        finalizeLoRA(part, splits: splits, rows: tokens, R: R, r: r, alpha: alpha, into: z, accumulate: false, transposed: false)
    }

    public func loraUpAdd(_ z: Tensor, _ w: Tensor, weightTransposed: Bool, scale: Float, into y: Tensor) {
        LoRAShapes.checkUpAdd(z, w, weightTransposed: weightTransposed, y)
        expect(z, .f32); expect(w, .f32); expect(y, computeType)
        let tokens = y.shape[0], o = y.shape[1], r = z.shape[1], R = CUDALoRA.paddedRank(r), vo = 64 / R
        guard tokens > 0 && o > 0 else { return }
        let (chunks, piece) = CUDALoRA.split(tokens, R: R)
        let vec = CUDALoRA.aligned(y.device, width: o, elements: vo)
        run {
            try kernels.launch(try function("lora_up_add_r\(R)", CUDALoRA.source),
                               grid: ((o + 32 * vo - 1) / (32 * vo), chunks, 1), block: (CUDALoRA.threads, 1, 1),
                               arguments: [.pointer(z.device), .pointer(w.device), .int32(weightTransposed ? 1 : 0),
                                           .pointer(y.device), .float(scale), .int32(Int32(tokens)), .int32(Int32(o)),
                                           .int32(Int32(r)), .int32(Int32(piece)), .int32(vec ? 1 : 0)])
        }
    }

    public func loraGradient(_ m: Tensor, _ z: Tensor, into g: Tensor, gradientTransposed: Bool, alpha: Float) {
        LoRAShapes.checkGradient(m, z, g, gradientTransposed: gradientTransposed)
        expect(m, computeType); expect(z, .f32); expect(g, .f32)
        let tokens = m.shape[0], o = m.shape[1], r = z.shape[1], R = CUDALoRA.paddedRank(r), vo = 64 / R
        guard tokens > 0 && o > 0 else { return }
        let (chunks, piece) = CUDALoRA.split(tokens, R: R)
        let part = try! empty([chunks, o, R], .f32)
        let vec = CUDALoRA.aligned(m.device, width: o, elements: vo)
        run {
            try kernels.launch(try function("lora_gradient_r\(R)", CUDALoRA.source),
                               grid: ((o + 32 * vo - 1) / (32 * vo), chunks, 1), block: (CUDALoRA.threads, 1, 1),
                               arguments: [.pointer(m.device), .pointer(z.device), .pointer(part.device),
                                           .int32(Int32(tokens)), .int32(Int32(o)), .int32(Int32(r)),
                                           .int32(Int32(piece)), .int32(vec ? 1 : 0)])
        }
        finalizeLoRA(part, splits: chunks, rows: o, R: R, r: r, alpha: alpha, into: g, accumulate: true,
                     transposed: gradientTransposed)
    }

    /// out (+)= alpha · Σ over the splits of `part` ([splits, rows, R]), in split order.
    private func finalizeLoRA(_ part: Tensor, splits: Int, rows: Int, R: Int, r: Int, alpha: Float, into out: Tensor,
                              accumulate: Bool, transposed: Bool) {
        let n = rows * r
        let blocks = Swift.max(1, Swift.min((n + 255) / 256, device.multiprocessors * 8))
        run {
            try kernels.launch(try function("lora_finalize", CUDALoRA.source), grid: (blocks, 1, 1), block: (256, 1, 1),
                               arguments: [.pointer(part.device), .int32(Int32(splits)), .int32(Int32(rows)),
                                           .int32(Int32(R)), .int32(Int32(r)), .float(alpha), .pointer(out.device),
                                           .int32(accumulate ? 1 : 0), .int32(transposed ? 1 : 0)])
        }
    }
}
