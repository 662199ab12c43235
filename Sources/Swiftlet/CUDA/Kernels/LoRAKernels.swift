import CCUDA

/// The LoRA path's low-rank products on the GPU, with the semantics of `LoRAKernel` (CPU/LoRA.swift):
///   down      z[t, j]  = alpha · Σ_k f32(x[t, k]) · w(j, k)          (z = x Aᵀ, dz = s · dY B)
///   up_add    y[t, o]  = round(f32(y[t, o]) + scale · Σ_j z[t, j] · w(o, j))   (y += s · z Bᵀ, dx += dz A)
///   gradient  g(o, j) += alpha · Σ_t f32(m[t, o]) · z[t, j]          (dB += s · dYᵀ z, dA += dzᵀ x)
/// Activations are read once, straight from their 16-bit storage (never widened to an f32 copy), and
/// every sum is in f32. The rank is padded to R = 16, 32 or 64 (zeros), so each thread keeps a fixed
/// 64 f32 sums in registers: TM = 64 / R rows (down) or VO = 64 / R features (up_add, gradient).
///
/// down has one warp per TM rows walking all of k (coalesced 16-byte loads of x, the weight in a
/// shared-memory tile per k-chunk, a fixed warp-shuffle reduction at the end): no split, no partials.
/// gradient splits its tokens over blocks only as far as needed to fill the GPU; with more than one
/// split each block writes its sums in g's own layout to a scratch buffer and `lora_finalize` adds
/// them elementwise in split order. Within a block the warps' sums meet in shared memory in warp
/// order. No atomics: reruns are bit-identical.
enum CUDALoRA {
    static let source = """
    #define LORA_THREADS 256
    #define LORA_WARPS 8
    // f32 values in shared memory per block for the rank-side tile (the weight tile of down, the z
    // rows of up_add and gradient): 16 KB.
    #define LORA_TILE 4096
    // warps per lora_down block: small blocks, so a 2048-token call still gives 128 blocks
    #define LORA_DOWN_WARPS 4
    // rows per warp and iteration in up_add and gradient, their loads issued together
    #define LORA_ROWS 4

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

    // E storage values p[k .. k+E) as f32 (E = 8 or 4), zeros past n. vec: rows aligned to E elements, n % E == 0.
    template <int E>
    __device__ __forceinline__ void lora_load_e(const storage_t* __restrict__ p, int k, int n, int vec, float* v) {
        if (E == 8) lora_load8(p, k, n, vec, v);
        else if (k < n) lora_load_vo<E>(p, k, n, vec, v);      // vec: n % 4 == 0, so k + 4 <= n
        else {
            #pragma unroll
            for (int i = 0; i < E; ++i) v[i] = 0.0f;
        }
    }

    // down, one block of LORA_DOWN_WARPS warps; warp w owns the TM = 64 / R rows
    // t0 = (blockIdx.x · LORA_DOWN_WARPS + w) · TM .. + TM and walks all of k: no split, no partials.
    // Per chunk of KC = 32·E k, lane l loads x[t, kc + E·l .. + E) of each of its rows (a warp reads
    // E·64 contiguous bytes per row: coalesced 16-byte loads for E = 8), and reads the weight tile
    // ws[j][kk] from shared memory (loaded once per block and chunk, shared by the block's rows; each
    // weight value read serves the TM rows from registers). Each lane ends with partial sums over its
    // k slots; a fixed xor-butterfly of warp shuffles adds them (deterministic).
    template <int R>
    __device__ void lora_down(const storage_t* __restrict__ x, const float* __restrict__ w, int w_kr,
                              float* __restrict__ z, float alpha, int T, int K, int r, int vec) {
        constexpr int TM = 64 / R;
        constexpr int E = R == 64 ? 4 : 8;                   // keeps the tile at <= 32 KB
        constexpr int KC = 32 * E;
        constexpr int LD = KC + 4;                           // padding: rows start 4 banks apart (cheaper w_kr stores)
        // w(j, kc + E·l + i) sits at ws[j * LD + 128 · (i / 4) + 4 · l + i % 4]: lane l's float4 reads
        // of one row j are 16 bytes apart across the warp (no bank conflicts)
        __shared__ __align__(16) float ws[R * LD];
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        const int t0 = (blockIdx.x * LORA_DOWN_WARPS + warp) * TM;
        float acc[TM][R];
        #pragma unroll
        for (int m = 0; m < TM; ++m) {
            #pragma unroll
            for (int j = 0; j < R; ++j) acc[m][j] = 0.0f;
        }
        for (int kc = 0; kc < K; kc += KC) {
            // x first: its loads are in flight while the block loads the weight tile
            float xv[TM][E];
            const int k = kc + E * lane;
            #pragma unroll
            for (int m = 0; m < TM; ++m) {
                const int t = t0 + m;
                if (t < T) lora_load_e<E>(x + (long long)t * K, k, K, vec, xv[m]);
                else {
                    #pragma unroll
                    for (int i = 0; i < E; ++i) xv[m][i] = 0.0f;
                }
            }
            __syncthreads();                                  // the previous chunk's tile is no longer read
            for (int i = threadIdx.x; i < R * KC; i += 32 * LORA_DOWN_WARPS) {
                int j, kk;
                if (w_kr) { kk = i / R; j = i % R; } else { j = i / KC; kk = i % KC; }   // coalesced global reads
                const int kw = kc + kk;
                ws[j * LD + 128 * ((kk % E) / 4) + 4 * (kk / E) + kk % 4] = (j < r && kw < K) ? (w_kr ? w[(long long)kw * r + j] : w[(long long)j * K + kw]) : 0.0f;
            }
            __syncthreads();
            #pragma unroll
            for (int j = 0; j < R; ++j) {
                float wv[E];
                #pragma unroll
                for (int i4 = 0; i4 < E / 4; ++i4) {
                    const float4 w4 = *reinterpret_cast<const float4*>(ws + j * LD + 128 * i4 + 4 * lane);
                    wv[4 * i4] = w4.x; wv[4 * i4 + 1] = w4.y; wv[4 * i4 + 2] = w4.z; wv[4 * i4 + 3] = w4.w;
                }
                #pragma unroll
                for (int m = 0; m < TM; ++m) {
                    #pragma unroll
                    for (int i = 0; i < E; ++i) acc[m][j] = fmaf(xv[m][i], wv[i], acc[m][j]);
                }
            }
        }
        #pragma unroll
        for (int m = 0; m < TM; ++m) {
            #pragma unroll
            for (int j = 0; j < R; ++j) {
                float v = acc[m][j];
                #pragma unroll
                for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
                acc[m][j] = v;                                // every lane now holds the row's sum
            }
            const int t = t0 + m;
            if (t < T) {
                #pragma unroll
                for (int j = 0; j < R; ++j)
                    if (j < r && (j & 31) == lane) z[(long long)t * r + j] = alpha * acc[m][j];
            }
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
        // LORA_ROWS rows per warp and iteration, their y loads issued together (memory-level parallelism)
        for (int t = tbeg + warp; t < tend; t += LORA_ROWS * LORA_WARPS) {
            float yv[LORA_ROWS][VO];
            #pragma unroll
            for (int u = 0; u < LORA_ROWS; ++u) {
                const int tu = t + u * LORA_WARPS;
                if (tu < tend) lora_load_vo<VO>(y + (long long)tu * O, o, O, vec, yv[u]);
            }
            #pragma unroll
            for (int u = 0; u < LORA_ROWS; ++u) {
                const int tu = t + u * LORA_WARPS;
                if (tu >= tend) break;                        // the same for the whole warp
                float sum[VO];
                #pragma unroll
                for (int v = 0; v < VO; ++v) sum[v] = 0.0f;
                const float4* zt = reinterpret_cast<const float4*>(zs + (tu - tbeg) * R);
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
                #pragma unroll
                for (int v = 0; v < VO; ++v) yv[u][v] = yv[u][v] + scale * sum[v];
                lora_store_vo<VO>(y + (long long)tu * O, o, O, vec, yv[u]);
            }
        }
    }

    // gradient, one block: features o0 .. o0 + 32·VO (lane l takes o0 + VO·l .., so a warp's m loads are
    // coalesced), tokens [blockIdx.y · tc, +tc) in pieces of LORA_TILE / R whose z rows are staged in
    // shared memory; the 8 warps take rows in turn, LORA_ROWS at a time (their loads in flight together).
    // The host picks the split count so that the grid just fills the GPU (few partials). The block's
    // sums land in the output's own layout (at = o·r + j, or j·O + o when transposed): straight into
    // g when there is one split, else in part[split][at], which lora_finalize adds elementwise.
    template <int R>
    __device__ void lora_gradient(const storage_t* __restrict__ m, const float* __restrict__ z,
                                  float* __restrict__ part, float* __restrict__ g, float alpha,
                                  int T, int O, int r, int tc, int vec, int transposed) {
        constexpr int VO = 64 / R;
        constexpr int TP = LORA_TILE / R;
        __shared__ __align__(16) float zs[LORA_TILE];
        __shared__ float red[64 * 32];
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        const int o0 = blockIdx.x * 32 * VO, o = o0 + VO * lane;
        const int tbeg = blockIdx.y * tc, tend = min(T, tbeg + tc);
        float acc[VO][R];
        #pragma unroll
        for (int v = 0; v < VO; ++v) {
            #pragma unroll
            for (int j = 0; j < R; ++j) acc[v][j] = 0.0f;
        }
        for (int p = tbeg; p < tend; p += TP) {
            const int pend = min(tend, p + TP);
            __syncthreads();                                  // the previous piece's z rows are no longer read
            for (int i = threadIdx.x; i < TP * R; i += LORA_THREADS) {
                const int tt = i / R, j = i % R, t = p + tt;
                zs[i] = (j < r && t < pend) ? z[(long long)t * r + j] : 0.0f;
            }
            __syncthreads();
            if (o >= O) continue;
            for (int t = p + warp; t < pend; t += LORA_ROWS * LORA_WARPS) {
                float mv[LORA_ROWS][VO];
                #pragma unroll
                for (int u = 0; u < LORA_ROWS; ++u) {
                    const int tu = t + u * LORA_WARPS;
                    if (tu < pend) lora_load_vo<VO>(m + (long long)tu * O, o, O, vec, mv[u]);
                }
                #pragma unroll
                for (int u = 0; u < LORA_ROWS; ++u) {
                    const int tu = t + u * LORA_WARPS;
                    if (tu >= pend) break;                    // the same for the whole warp
                    const float4* zt = reinterpret_cast<const float4*>(zs + (tu - p) * R);
                    #pragma unroll
                    for (int j4 = 0; j4 < R / 4; ++j4) {
                        const float4 z4 = zt[j4];
                        #pragma unroll
                        for (int v = 0; v < VO; ++v) {
                            acc[v][4 * j4] = fmaf(mv[u][v], z4.x, acc[v][4 * j4]);
                            acc[v][4 * j4 + 1] = fmaf(mv[u][v], z4.y, acc[v][4 * j4 + 1]);
                            acc[v][4 * j4 + 2] = fmaf(mv[u][v], z4.z, acc[v][4 * j4 + 2]);
                            acc[v][4 * j4 + 3] = fmaf(mv[u][v], z4.w, acc[v][4 * j4 + 3]);
                        }
                    }
                }
            }
        }
        lora_block_sum<64>(&acc[0][0], red);
        const int tile = min(32 * VO, O - o0);
        for (int i = threadIdx.x; i < tile * r; i += LORA_THREADS) {
            // consecutive threads write consecutive addresses in either layout
            const int oo = transposed ? i % tile : i / r, j = transposed ? i / tile : i % r;
            const float v = red[((oo % VO) * R + j) * 32 + oo / VO];   // sum (oo % VO)·R + j of lane oo / VO
            const long long at = transposed ? (long long)j * O + o0 + oo : (long long)(o0 + oo) * r + j;
            if (gridDim.y == 1) g[at] = g[at] + alpha * v;
            else part[(long long)blockIdx.y * O * r + at] = v;
        }
    }

    #define LORA_INSTANTIATE(R) \\
    extern "C" __global__ void __launch_bounds__(32 * LORA_DOWN_WARPS) lora_down_r##R(const storage_t* x, const float* w, int w_kr, \\
            float* z, float alpha, int T, int K, int r, int vec) { lora_down<R>(x, w, w_kr, z, alpha, T, K, r, vec); } \\
    extern "C" __global__ void __launch_bounds__(LORA_THREADS) lora_up_add_r##R(const float* z, const float* w, int w_ro, \\
            storage_t* y, float scale, int T, int O, int r, int tc, int vec) { lora_up_add<R>(z, w, w_ro, y, scale, T, O, r, tc, vec); } \\
    extern "C" __global__ void __launch_bounds__(LORA_THREADS) lora_gradient_r##R(const storage_t* m, const float* z, \\
            float* part, float* g, float alpha, int T, int O, int r, int tc, int vec, int transposed) { \\
        lora_gradient<R>(m, z, part, g, alpha, T, O, r, tc, vec, transposed); }
    LORA_INSTANTIATE(16)
    LORA_INSTANTIATE(32)
    LORA_INSTANTIATE(64)

    // out[n] += alpha · Σ_s part[s][n] for n < count, the splits added in order s = 0, 1, ... part is
    // already in out's layout, so this is a coalesced elementwise pass; four loads in flight per thread.
    extern "C" __global__ void lora_finalize(const float* __restrict__ part, int splits, long long count,
                                             float alpha, float* __restrict__ out) {
        for (long long n = blockIdx.x * (long long)blockDim.x + threadIdx.x; n < count;
             n += (long long)gridDim.x * blockDim.x) {
            float sum = 0.0f;
            int s = 0;
            for (; s + 4 <= splits; s += 4) {
                const float a = part[(long long)s * count + n], b = part[(long long)(s + 1) * count + n];
                const float c = part[(long long)(s + 2) * count + n], d = part[(long long)(s + 3) * count + n];
                sum += a; sum += b; sum += c; sum += d;
            }
            for (; s < splits; ++s) sum += part[(long long)s * count + n];
            out[n] = out[n] + alpha * sum;
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

    /// Warps per lora_down block (LORA_DOWN_WARPS).
    static let downWarps = 4

    /// How the gradient's tokens split over blocks: just enough chunks that `tiles` feature tiles
    /// give about two blocks per SM (each chunk at least 256 tokens), since every extra split costs
    /// a partial [O, r] write and read. (count, chunk length, a multiple of 8).
    static func tokenSplit(_ tokens: Int, tiles: Int, multiprocessors: Int) -> (count: Int, piece: Int) {
        let wanted = Swift.max(1, (2 * multiprocessors + tiles - 1) / tiles)
        let count = Swift.max(1, Swift.min(wanted, tokens / 256))
        let piece = ((tokens + count - 1) / count + 7) / 8 * 8
        return ((tokens + piece - 1) / piece, piece)
    }
}

extension CUDABackend {
    public func loraDown(_ x: Tensor, _ w: Tensor, weightTransposed: Bool, into z: Tensor, alpha: Float) {
        LoRAShapes.checkDown(x, w, weightTransposed: weightTransposed, z)
        expect(x, computeType); expect(w, .f32); expect(z, .f32)
        let tokens = x.shape[0], k = x.shape[1], r = z.shape[1]
        guard tokens > 0 else { return }
        if usesSplitLoRA(rank: r, features: k) {
            return orFatal { try splitLoRADown(x, w, weightTransposed: weightTransposed, into: z, alpha: alpha) }
        }
        let R = CUDALoRA.paddedRank(r)
        // one warp per TM = 64 / R rows over all of k: no partials, no finalize
        let vec = CUDALoRA.aligned(x.device, width: k, elements: R == 64 ? 4 : 8)
        let rowsPerBlock = CUDALoRA.downWarps * (64 / R)
        run {
            try kernels.launch(try function("lora_down_r\(R)", CUDALoRA.source),
                               grid: ((tokens + rowsPerBlock - 1) / rowsPerBlock, 1, 1), block: (32 * CUDALoRA.downWarps, 1, 1),
                               arguments: [.pointer(x.device), .pointer(w.device), .int32(weightTransposed ? 1 : 0),
                                           .pointer(z.device), .float(alpha), .int32(Int32(tokens)), .int32(Int32(k)),
                                           .int32(Int32(r)), .int32(vec ? 1 : 0)])
        }
    }

    public func loraUpAdd(_ z: Tensor, _ w: Tensor, weightTransposed: Bool, scale: Float, into y: Tensor) {
        LoRAShapes.checkUpAdd(z, w, weightTransposed: weightTransposed, y)
        expect(z, .f32); expect(w, .f32); expect(y, computeType)
        let tokens = y.shape[0], o = y.shape[1], r = z.shape[1]
        guard tokens > 0 && o > 0 else { return }
        if usesSplitLoRA(rank: r, features: o) {
            return orFatal { try splitLoRAUpAdd(z, w, weightTransposed: weightTransposed, scale: scale, into: y) }
        }
        let R = CUDALoRA.paddedRank(r), vo = 64 / R
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
        let tokens = m.shape[0], o = m.shape[1], r = z.shape[1]
        guard tokens > 0 && o > 0 else { return }
        if usesSplitLoRA(rank: r, features: o) {
            return orFatal { try splitLoRAGradient(m, z, into: g, gradientTransposed: gradientTransposed, alpha: alpha) }
        }
        let R = CUDALoRA.paddedRank(r), vo = 64 / R
        let tiles = (o + 32 * vo - 1) / (32 * vo)
        let (chunks, piece) = CUDALoRA.tokenSplit(tokens, tiles: tiles, multiprocessors: device.multiprocessors)
        // one split: the kernel adds into g itself; more: partials in g's layout, added by lora_finalize
        let part = chunks > 1 ? try! empty([chunks, o * r], .f32) : g
        let vec = CUDALoRA.aligned(m.device, width: o, elements: vo)
        run {
            try kernels.launch(try function("lora_gradient_r\(R)", CUDALoRA.source),
                               grid: (tiles, chunks, 1), block: (CUDALoRA.threads, 1, 1),
                               arguments: [.pointer(m.device), .pointer(z.device), .pointer(part.device),
                                           .pointer(g.device), .float(alpha),
                                           .int32(Int32(tokens)), .int32(Int32(o)), .int32(Int32(r)),
                                           .int32(Int32(piece)), .int32(vec ? 1 : 0), .int32(gradientTransposed ? 1 : 0)])
        }
        if chunks > 1 { finalizeLoRA(part, splits: chunks, count: o * r, alpha: alpha, into: g) }
    }

    /// out += alpha · Σ over the splits of `part` ([splits, count], in out's layout), in split order.
    private func finalizeLoRA(_ part: Tensor, splits: Int, count: Int, alpha: Float, into out: Tensor) {
        let blocks = Swift.max(1, Swift.min((count + 255) / 256, device.multiprocessors * 8))
        run {
            try kernels.launch(try function("lora_finalize", CUDALoRA.source), grid: (blocks, 1, 1), block: (256, 1, 1),
                               arguments: [.pointer(part.device), .int32(Int32(splits)), .int64(Int64(count)),
                                           .float(alpha), .pointer(out.device)])
        }
    }
}
