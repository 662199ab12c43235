import CCUDA
import Foundation

/// Causal grouped-query attention on tensor cores, FlashAttention-2 style: the same semantics and
/// the same outputs (out, log-sum-exp [tokens, heads], dQ/dK/dV overwritten) as CUDAAttention and
/// CPU/Attention.swift, for head dims 64, 96 (Phi-3), 128 and 256 (Gemma 2 and 3) on compute capability
/// 8.0+. Other head dims and older GPUs keep the simple kernels (CUDAAttention), as does
/// `SWIFTLET_ATTENTION=simple`. Besides `swiftlet doctor` on a GPU, scripts/emulate_cuda_attention.sh runs
/// these kernels on the CPU against attention in double (CUDAEmulationTests, in CI).
enum CUDAFlashAttention {
    /// Query rows (forward, dQ) or key rows (dK/dV) per block: 4 warps of 16.
    static let tile = 64
    static let threads = 128

    static let source = """
    // Tiled attention with mma.sync m16n8k16 (bf16 or f16 in, f32 accumulate), exact online softmax.
    // A block owns 64 rows (4 warps x 16) of queries (forward, dQ) or keys (dK/dV) and streams the
    // other side through shared memory in tiles. Fragment layouts (PTX ISA, mma.m16n8k16, g = lane/4,
    // t = lane%4): A regs {row g, col 2t}, {row g+8, col 2t}, {row g, col 2t+8}, {row g+8, col 2t+8};
    // B regs {k 2t, n g}, {k 2t+8, n g}; C floats {row g, col 2t, 2t+1}, {row g+8, col 2t, 2t+1}.
    // A C tile of two adjacent n-tiles is therefore an A fragment of the next product (P, dS), and
    // ldmatrix (.trans for operands whose k runs down the rows in shared memory) loads the rest.
    // Masking is per element from sequence ids (query i sees key j iff j <= i, seq[j] == seq[i] >= 0,
    // i - j < window); key tiles wholly outside the causal band or the window are skipped. Every
    // reduction has a fixed order and nothing is atomic: reruns are bit-identical.
    // SOFTCAP (Gemma 2's attn_logit_softcapping) is a template parameter: scores become
    // cap·tanh(score / cap) before the mask, dS carries 1 − tanh²; without it the code is as before.
    #define FA_PAD 8  // shared rows padded by 16 bytes: ldmatrix's 8 row reads hit distinct banks
    // Head dims up to this keep a warp's 16 rows of Q (forward, dQ), dO (dQ) or K (dK/dV) in registers as
    // A fragments. Wider heads (Gemma's 256) would need 64 registers per operand beside a [16, 256] f32
    // accumulator (128 registers): their tiles stay in shared memory, dynamic (over 48 KiB), and the
    // fragments are loaded one 16-wide step of d at a time.
    #define FA_REGISTER_HEAD_DIM 128
    extern __shared__ __align__(16) storage_t fa_dynamic[];

    __device__ __forceinline__ unsigned int fa_smem(const void* p) {
        unsigned int a;
        asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
        return a;
    }

    // Four 8x8 b16 matrices; lanes 8m..8m+7 give the row addresses of matrix m, register m receives it.
    __device__ __forceinline__ void fa_ldsm(unsigned int (&r)[4], const storage_t* p) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(fa_smem(p)) : "memory");
    }

    __device__ __forceinline__ void fa_ldsm_trans(unsigned int (&r)[4], const storage_t* p) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(fa_smem(p)) : "memory");
    }

    // c += a * b for one 16x8x16 tile.
    __device__ __forceinline__ void fa_mma(float (&c)[4], const unsigned int (&a)[4], unsigned int b0, unsigned int b1) {
    #if SWIFTLET_BF16
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
    #else
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
    #endif
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }

    // Two floats as a 16-bit pair, the first in the low half (the lower column of a fragment).
    __device__ __forceinline__ unsigned int fa_pack(float lo, float hi) {
        unsigned int r;
    #if SWIFTLET_BF16
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    #else
        asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    #endif
        return r;
    }

    // The A fragment of columns 16kk..16kk+15 of a 16-row C tile held as n-tiles c[2kk], c[2kk+1].
    __device__ __forceinline__ void fa_c_to_a(unsigned int (&a)[4], const float (&lo)[4], const float (&hi)[4]) {
        a[0] = fa_pack(lo[0], lo[1]); a[1] = fa_pack(lo[2], lo[3]);
        a[2] = fa_pack(hi[0], hi[1]); a[3] = fa_pack(hi[2], hi[3]);
    }

    // Global outputs go through to_storage: the same rounding (and NaN) as every other kernel.
    __device__ __forceinline__ void fa_store2(storage_t* p, float lo, float hi) {
        *(unsigned int*)p = (unsigned int)to_storage(lo) | ((unsigned int)to_storage(hi) << 16);
    }

    // rows x D of a [tokens, stride] tensor into shared memory (row pitch D + FA_PAD), 16 bytes per
    // load; rows at or past `valid` are zero so no stale value (or NaN) can reach a product.
    template <int D, int ROWS>
    __device__ __forceinline__ void fa_load(storage_t* s, const storage_t* __restrict__ g, long long stride, int valid) {
        constexpr int CHUNKS = D / 8;
        for (int c = threadIdx.x; c < ROWS * CHUNKS; c += blockDim.x) {
            int r = c / CHUNKS, col = (c % CHUNKS) * 8;
            uint4 v = {0u, 0u, 0u, 0u};
            if (r < valid) v = *(const uint4*)(g + r * stride + col);
            *(uint4*)(s + r * (D + FA_PAD) + col) = v;
        }
    }

    // The 16 x D A fragments of rows `row0`.. of a shared tile (ldmatrix: matrices rows 0-7/8-15 x
    // cols 0-7, then cols 8-15, which is a0..a3's order).
    template <int D>
    __device__ __forceinline__ void fa_load_a(unsigned int (&a)[D / 16][4], const storage_t* s, int row0) {
        const int lane = threadIdx.x & 31;
        #pragma unroll
        for (int kk = 0; kk < D / 16; kk++) fa_ldsm(a[kk], s + (row0 + (lane & 15)) * (D + FA_PAD) + kk * 16 + (lane >> 4) * 8);
    }

    // c[n] += A * B^T over d = 16kk..16kk+15, for the N rows of `s` (B^T: the rows of s are the n
    // index, so k runs along them and ldmatrix needs no transpose). a: the A fragment of those d.
    template <int D, int N>
    __device__ __forceinline__ void fa_mma_abt_step(float (&c)[N / 8][4], const unsigned int (&a)[4], const storage_t* s, int kk) {
        const int lane = threadIdx.x & 31;
        #pragma unroll
        for (int np = 0; np < N / 16; np++) {
            unsigned int b[4];
            fa_ldsm(b, s + (np * 16 + (lane & 7) + (lane >> 4) * 8) * (D + FA_PAD) + kk * 16 + ((lane >> 3) & 1) * 8);
            fa_mma(c[2 * np], a, b[0], b[1]);
            fa_mma(c[2 * np + 1], a, b[2], b[3]);
        }
    }

    // c += A * B^T over all of d, A held in registers.
    template <int D, int N>
    __device__ __forceinline__ void fa_mma_abt(float (&c)[N / 8][4], const unsigned int (&a)[D / 16][4], const storage_t* s) {
        #pragma unroll
        for (int kk = 0; kk < D / 16; kk++) fa_mma_abt_step<D, N>(c, a[kk], s, kk);
    }

    // c += A * B^T over all of d (or STEPS 16-wide steps of it from where `a` and `s` point), A's 16 rows
    // from `row0` of the shared tile `a`, one fragment at a time (where registers are short: V in the
    // dK/dV kernel, every operand at head dims over 128).
    template <int D, int N, int STEPS = D / 16>
    __device__ __forceinline__ void fa_mma_abt_shared(float (&c)[N / 8][4], const storage_t* a, int row0, const storage_t* s) {
        const int lane = threadIdx.x & 31;
        #pragma unroll
        for (int kk = 0; kk < STEPS; kk++) {
            unsigned int f[4];
            fa_ldsm(f, a + (row0 + (lane & 15)) * (D + FA_PAD) + kk * 16 + (lane >> 4) * 8);
            fa_mma_abt_step<D, N>(c, f, s, kk);
        }
    }

    // c[n] += A * B over the K rows of `s` (B: the rows of s are k, the columns n = 0..W of a tile
    // D wide, so ldmatrix transposes; W < D: the columns from where `s` points). The A fragments come
    // from a C tile p[K/8][4] (P or dS). SPLIT adds the rounding residue p - bf16(p) as a second
    // product: dS in bf16 alone costs dQ and dK about 1e-3 of relative error (half the doctor's mean
    // bound); fp16's 3 more bits make it unnecessary there.
    template <int D, int K, bool SPLIT, int W = D>
    __device__ __forceinline__ void fa_mma_ab(float (&c)[W / 8][4], const float (&p)[K / 8][4], const storage_t* s) {
        const int lane = threadIdx.x & 31;
        #pragma unroll
        for (int kk = 0; kk < K / 16; kk++) {
            unsigned int a[4], rest[4];
            fa_c_to_a(a, p[2 * kk], p[2 * kk + 1]);
            if constexpr (SPLIT) {
                float lo[4], hi[4];
                for (int e = 0; e < 4; e++) {
                    lo[e] = p[2 * kk][e] - to_f32(to_storage(p[2 * kk][e]));
                    hi[e] = p[2 * kk + 1][e] - to_f32(to_storage(p[2 * kk + 1][e]));
                }
                fa_c_to_a(rest, lo, hi);
            }
            #pragma unroll
            for (int dp = 0; dp < W / 16; dp++) {
                unsigned int b[4];
                fa_ldsm_trans(b, s + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * (D + FA_PAD) + dp * 16 + (lane >> 4) * 8);
                fa_mma(c[2 * dp], a, b[0], b[1]);
                fa_mma(c[2 * dp + 1], a, b[2], b[3]);
                if constexpr (SPLIT) {
                    fa_mma(c[2 * dp], rest, b[0], b[1]);
                    fa_mma(c[2 * dp + 1], rest, b[2], b[3]);
                }
            }
        }
    }

    // Wide dK/dV with PAIR_SPLIT: warps w and w + 4 each sum the scores (S, dP) over their half of d; the
    // halves meet in shared memory (`pairs`: 8 warps x 2 tiles x N/2 floats x 32 lanes) and each warp adds
    // its partner's. a + b is b + a in IEEE arithmetic, so both warps hold the same bits. The caller's
    // barrier at the end of the step keeps the next step's writes after these reads.
    template <int N>
    __device__ __forceinline__ void fa_pair_sum(float (&s)[N / 8][4], float (&dp)[N / 8][4], float* pairs) {
        constexpr int PER = N / 8 * 4;
        const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
        float* mine = pairs + warp * 2 * PER * 32;
        const float* other = pairs + (warp ^ 4) * 2 * PER * 32;
        #pragma unroll
        for (int n = 0; n < N / 8; n++) {
            #pragma unroll
            for (int e = 0; e < 4; e++) {
                mine[(n * 4 + e) * 32 + lane] = s[n][e];
                mine[(PER + n * 4 + e) * 32 + lane] = dp[n][e];
            }
        }
        __syncthreads();
        #pragma unroll
        for (int n = 0; n < N / 8; n++) {
            #pragma unroll
            for (int e = 0; e < 4; e++) {
                s[n][e] += other[(n * 4 + e) * 32 + lane];
                dp[n][e] += other[(PER + n * 4 + e) * 32 + lane];
            }
        }
    }

    __device__ __forceinline__ float fa_quad_max(float v) {
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
        return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
    }

    __device__ __forceinline__ float fa_quad_sum(float v) {
        v += __shfl_xor_sync(0xffffffffu, v, 1);
        return v + __shfl_xor_sync(0xffffffffu, v, 2);
    }

    // A scaled score, capped where SOFTCAP; `slope` gets d capped / d score.
    template <bool SOFTCAP>
    __device__ __forceinline__ float fa_cap(float score, float softcap, float* slope) {
        if (!SOFTCAP) { *slope = 1.f; return score; }
        const float c = tanhf(score / softcap) * softcap, t = c / softcap;
        *slope = 1.f - t * t;
        return c;
    }

    __device__ __forceinline__ bool fa_visible(int i, int j, int querySeq, int keySeq, int window) {
        return j <= i && querySeq >= 0 && keySeq == querySeq && (window <= 0 || i - j < window);
    }

    // Asynchronous copies (cp.async, 8.0+): a tile streams into shared memory while the warps compute
    // on another. A row at or past `valid` is filled with zeros (source size 0), as fa_load does.
    __device__ __forceinline__ void fa_cp_async(storage_t* s, const storage_t* g, bool inside) {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(fa_smem(s)), "l"(g), "r"(inside ? 16 : 0) : "memory");
    }
    __device__ __forceinline__ void fa_cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
    // Waits until at most `pending` of this thread's committed groups are still in flight.
    __device__ __forceinline__ void fa_cp_wait(int pending) {
        if (pending == 0) asm volatile("cp.async.wait_group 0;" ::: "memory");
        else asm volatile("cp.async.wait_group 1;" ::: "memory");
    }

    template <int D, int ROWS>
    __device__ __forceinline__ void fa_load_async(storage_t* s, const storage_t* __restrict__ g, long long stride, int valid) {
        constexpr int CHUNKS = D / 8;
        for (int c = threadIdx.x; c < ROWS * CHUNKS; c += blockDim.x) {
            const int r = c / CHUNKS, col = (c % CHUNKS) * 8;
            fa_cp_async(s + r * (D + FA_PAD) + col, g + (r < valid ? r * stride : 0) + col, r < valid);
        }
    }

    // Whether the 64 rows from `first` (threadIdx.x < 64 reads one each) all belong to one sequence,
    // and which (-1 if not): a tile pair inside one sequence, below the diagonal and the window, needs
    // no mask. Every thread of the block must call it (a block-wide vote).
    __device__ __forceinline__ int fa_tile_sequence(const int* __restrict__ seq, long long base, int first, int columns) {
        const int s0 = seq[base + first];
        const bool same = threadIdx.x >= 64 || (first + (int)threadIdx.x < columns && seq[base + first + threadIdx.x] == s0);
        return __syncthreads_and(same) && s0 >= 0 ? s0 : -1;
    }

    // Forward: a block per (64 queries, row, head); key tiles of 64 through shared memory. The loads
    // interleave with the products (FlashAttention-2's order): V(j) streams in during S = Q K(j)^T and
    // K(j+1) during O += P V(j), in the two buffers a single-stage loop needs anyway.
    template <int D, bool SOFTCAP>
    __device__ __forceinline__ void fa_forward(
        const storage_t* __restrict__ q, const storage_t* __restrict__ k, const storage_t* __restrict__ v,
        const int* __restrict__ seq, storage_t* __restrict__ out, float* __restrict__ lse,
        int columns, int heads, int kvHeads, int window, float scale, float softcap)
    {
    #if __CUDA_ARCH__ >= 800
        constexpr int S = D + FA_PAD, BK = 64;
        constexpr bool WIDE = D > FA_REGISTER_HEAD_DIM;
        __shared__ __align__(16) storage_t tiles[WIDE ? 8 : 2 * BK * S];
        storage_t* const qs = fa_dynamic;  // wide: Q, then the K and V tiles
        storage_t* const ks = WIDE ? fa_dynamic + 64 * S : tiles;
        storage_t* const vs = ks + BK * S;
        __shared__ int keySeq[2][BK];
        const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, t = lane & 3;
        const int q0 = (gridDim.x - 1 - blockIdx.x) * 64;  // the longest (causal) tiles start first
        const int row = blockIdx.y / heads, h = blockIdx.y % heads, kvh = h / (heads / kvHeads);
        const long long base = (long long)row * columns, qStride = (long long)heads * D, kvStride = (long long)kvHeads * D;

        unsigned int qf[WIDE ? 1 : D / 16][4];
        if constexpr (WIDE) {
            fa_load<D, 64>(qs, q + (base + q0) * qStride + h * D, qStride, min(64, columns - q0));
        } else {
            fa_load<D, 64>(ks, q + (base + q0) * qStride + h * D, qStride, min(64, columns - q0));
            __syncthreads();
            fa_load_a<D>(qf, ks, warp * 16);
        }
        // also the barrier before ks is reused (and, wide, after Q's tile is in)
        const int querySequence = fa_tile_sequence(seq, base, q0, columns);

        // This thread's two query rows (fragment rows g and g + 8); past the end counts as padding.
        int qi[2], qseq[2];
        for (int r = 0; r < 2; r++) {
            qi[r] = q0 + warp * 16 + (lane >> 2) + 8 * r;
            qseq[r] = qi[r] < columns ? seq[base + qi[r]] : -1;
        }
        float o[D / 8][4], m[2] = {NEG_INF, NEG_INF}, l[2] = {0.f, 0.f};
        for (int n = 0; n < D / 8; n++) for (int e = 0; e < 4; e++) o[n][e] = 0.f;

        const int first = window > 0 ? max(0, q0 - window + 1) : 0, last = min(q0 + 63, columns - 1);
        auto issueKeys = [&](int k0) {
            fa_load_async<D, BK>(ks, k + (base + k0) * kvStride + kvh * D, kvStride, min(BK, columns - k0));
            fa_cp_commit();
            if (threadIdx.x < BK) keySeq[(k0 / BK) & 1][threadIdx.x] = k0 + (int)threadIdx.x < columns ? seq[base + k0 + threadIdx.x] : -2;
        };
        issueKeys(first / BK * BK);
        for (int k0 = first / BK * BK; k0 <= last; k0 += BK) {
            const int* tileSeq = keySeq[(k0 / BK) & 1];
            fa_cp_wait(0);
            // K(k0) is in; every warp is done with V(k0 - BK). A thread checks the key it wrote itself.
            const bool keysInside = __syncthreads_and(threadIdx.x >= BK || tileSeq[threadIdx.x] == querySequence);
            const bool full = keysInside && querySequence >= 0 && k0 + BK - 1 <= q0 && (window <= 0 || q0 + 63 - k0 < window);
            fa_load_async<D, BK>(vs, v + (base + k0) * kvStride + kvh * D, kvStride, min(BK, columns - k0));
            fa_cp_commit();

            float s[BK / 8][4];
            for (int n = 0; n < BK / 8; n++) for (int e = 0; e < 4; e++) s[n][e] = 0.f;
            if constexpr (WIDE) fa_mma_abt_shared<D, BK>(s, qs, warp * 16, ks);
            else fa_mma_abt<D, BK>(s, qf, ks);

            float mx[2] = {m[0], m[1]};
            #pragma unroll
            for (int n = 0; n < BK / 8; n++) {
                #pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int r = e >> 1, j = 8 * n + 2 * t + (e & 1);
                    float slope;
                    s[n][e] = full || fa_visible(qi[r], k0 + j, qseq[r], tileSeq[j], window)
                        ? fa_cap<SOFTCAP>(s[n][e] * scale, softcap, &slope) : NEG_INF;
                    mx[r] = fmaxf(mx[r], s[n][e]);
                }
            }
            float shift[2];
            for (int r = 0; r < 2; r++) {
                mx[r] = fa_quad_max(mx[r]);
                shift[r] = mx[r] == NEG_INF ? 0.f : mx[r];  // nothing visible yet: every p and correction is 0
                const float correction = __expf(m[r] - shift[r]);
                l[r] *= correction;
                for (int n = 0; n < D / 8; n++) { o[n][2 * r] *= correction; o[n][2 * r + 1] *= correction; }
                m[r] = mx[r];
            }
            #pragma unroll
            for (int n = 0; n < BK / 8; n++) {
                #pragma unroll
                for (int e = 0; e < 4; e++) {
                    s[n][e] = __expf(s[n][e] - shift[e >> 1]);
                    l[e >> 1] += s[n][e];
                }
            }
            fa_cp_wait(0);
            __syncthreads();  // V(k0) is in; every warp is done with K(k0)
            if (k0 + BK <= last) issueKeys(k0 + BK);
            fa_mma_ab<D, BK, false>(o, s, vs);
        }

        for (int r = 0; r < 2; r++) {
            l[r] = fa_quad_sum(l[r]);
            if (qi[r] >= columns) continue;
            const long long n = base + qi[r];
            const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;  // padding: out 0, lse -inf (as on the CPU)
            storage_t* op = out + n * qStride + h * D;
            for (int c = 0; c < D / 8; c++) fa_store2(op + 8 * c + 2 * t, o[c][2 * r] * inv, o[c][2 * r + 1] * inv);
            if (t == 0) lse[n * heads + h] = l[r] > 0.f ? m[r] + __logf(l[r]) : NEG_INF;
        }
    #endif
    }

    // Backward, step 1: D = rowsum(dO * O) per (token, head), one warp each.
    extern "C" __global__ void flash_attention_row_dot(
        const storage_t* __restrict__ dOut, const storage_t* __restrict__ out, float* __restrict__ rowDot,
        int tokensTimesHeads, int headDim)
    {
        const int w = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
        if (w >= tokensTimesHeads) return;
        const long long off = (long long)w * headDim;
        float d = 0.f;
        for (int c = lane; c < headDim; c += 32) d += to_f32(dOut[off + c]) * to_f32(out[off + c]);
        d = warp_sum(d);
        if (lane == 0) rowDot[w] = d;
    }

    // Backward, step 2: dQ = scale * dS K, a block per (64 queries, row, head), key tiles of BK,
    // double-buffered: tile j+1 streams in while the warps work on tile j.
    // P = exp(scale * q.k - lse) is recomputed; dS = P * (dO.v - D).
    template <int D, int BK, bool SOFTCAP>
    __device__ __forceinline__ void fa_backward_dq(
        const storage_t* __restrict__ dOut, const storage_t* __restrict__ q, const storage_t* __restrict__ k,
        const storage_t* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ rowDot,
        const int* __restrict__ seq, storage_t* __restrict__ dQ,
        int columns, int heads, int kvHeads, int window, float scale, float softcap)
    {
    #if __CUDA_ARCH__ >= 800
        constexpr int S = D + FA_PAD;
        constexpr bool WIDE = D > FA_REGISTER_HEAD_DIM;
        // Per stage a K tile and a V tile; narrow, the first stage stages Q and dO, wide they stay in front.
        __shared__ __align__(16) storage_t tiles[WIDE ? 8 : 2 * 2 * BK * S];
        storage_t* const qs = fa_dynamic;
        storage_t* const dOs = fa_dynamic + 64 * S;
        storage_t* const kv = WIDE ? fa_dynamic + 128 * S : tiles;
        __shared__ int keySeq[2][BK];
        const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, t = lane & 3;
        const int q0 = (gridDim.x - 1 - blockIdx.x) * 64;
        const int row = blockIdx.y / heads, h = blockIdx.y % heads, kvh = h / (heads / kvHeads);
        const long long base = (long long)row * columns, qStride = (long long)heads * D, kvStride = (long long)kvHeads * D;
        const int queries = min(64, columns - q0);

        unsigned int qf[WIDE ? 1 : D / 16][4], df[WIDE ? 1 : D / 16][4];
        if constexpr (WIDE) {
            fa_load<D, 64>(qs, q + (base + q0) * qStride + h * D, qStride, queries);
            fa_load<D, 64>(dOs, dOut + (base + q0) * qStride + h * D, qStride, queries);
        } else {
            storage_t* staging = kv;
            fa_load<D, 64>(staging, q + (base + q0) * qStride + h * D, qStride, queries);
            __syncthreads();
            fa_load_a<D>(qf, staging, warp * 16);
            __syncthreads();
            fa_load<D, 64>(staging, dOut + (base + q0) * qStride + h * D, qStride, queries);
            __syncthreads();
            fa_load_a<D>(df, staging, warp * 16);
        }
        // also the barrier before staging is reused (and, wide, after the Q and dO tiles are in)
        const int querySequence = fa_tile_sequence(seq, base, q0, columns);

        int qi[2], qseq[2];
        float L[2], Dr[2];
        for (int r = 0; r < 2; r++) {
            qi[r] = q0 + warp * 16 + (lane >> 2) + 8 * r;
            const bool inside = qi[r] < columns;
            qseq[r] = inside ? seq[base + qi[r]] : -1;
            L[r] = inside ? lse[(base + qi[r]) * heads + h] : 0.f;
            Dr[r] = inside ? rowDot[(base + qi[r]) * heads + h] : 0.f;
        }
        float dq[D / 8][4];
        for (int n = 0; n < D / 8; n++) for (int e = 0; e < 4; e++) dq[n][e] = 0.f;

        const int first = window > 0 ? max(0, q0 - window + 1) : 0, last = min(q0 + 63, columns - 1);
        auto issue = [&](int k0) {
            const int stage = (k0 / BK) & 1, valid = min(BK, columns - k0);
            fa_load_async<D, BK>(kv + stage * 2 * BK * S, k + (base + k0) * kvStride + kvh * D, kvStride, valid);
            fa_load_async<D, BK>(kv + stage * 2 * BK * S + BK * S, v + (base + k0) * kvStride + kvh * D, kvStride, valid);
            fa_cp_commit();
            if (threadIdx.x < BK) keySeq[stage][threadIdx.x] = threadIdx.x < valid ? seq[base + k0 + threadIdx.x] : -2;
        };
        issue(first / BK * BK);
        for (int k0 = first / BK * BK; k0 <= last; k0 += BK) {
            const int stage = (k0 / BK) & 1;
            const bool more = k0 + BK <= last;
            if (more) issue(k0 + BK);  // into the other stage, which every warp left at the end of the last tile
            fa_cp_wait(more ? 1 : 0);
            const int* tileSeq = keySeq[stage];
            const bool keysInside = __syncthreads_and(threadIdx.x >= BK || tileSeq[threadIdx.x] == querySequence);
            const bool full = keysInside && querySequence >= 0 && k0 + BK - 1 <= q0 && (window <= 0 || q0 + 63 - k0 < window);
            const storage_t* ks = kv + stage * 2 * BK * S;
            const storage_t* vs = ks + BK * S;

            float s[BK / 8][4], dp[BK / 8][4];
            for (int n = 0; n < BK / 8; n++) for (int e = 0; e < 4; e++) { s[n][e] = 0.f; dp[n][e] = 0.f; }
            if constexpr (WIDE) {
                fa_mma_abt_shared<D, BK>(s, qs, warp * 16, ks);
                fa_mma_abt_shared<D, BK>(dp, dOs, warp * 16, vs);
            } else {
                fa_mma_abt<D, BK>(s, qf, ks);
                fa_mma_abt<D, BK>(dp, df, vs);
            }
            #pragma unroll
            for (int n = 0; n < BK / 8; n++) {
                #pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int r = e >> 1, j = 8 * n + 2 * t + (e & 1);
                    // a select, not a product: exp of a masked score may be inf (padding rows have lse -inf)
                    // (the cap inside the select keeps the plain kernel's instruction order)
                    float slope = 1.f;
                    const float p = full || fa_visible(qi[r], k0 + j, qseq[r], tileSeq[j], window)
                        ? __expf(fa_cap<SOFTCAP>(s[n][e] * scale, softcap, &slope) - L[r]) : 0.f;
                    s[n][e] = SOFTCAP ? p * (dp[n][e] - Dr[r]) * slope : p * (dp[n][e] - Dr[r]);
                }
            }
            fa_mma_ab<D, BK, SWIFTLET_BF16 == 1>(dq, s, ks);
            __syncthreads();  // every warp is done with this stage before the next issue overwrites it
        }

        for (int r = 0; r < 2; r++) {
            if (qi[r] >= columns) continue;
            storage_t* p = dQ + (base + qi[r]) * qStride + h * D;
            for (int c = 0; c < D / 8; c++) fa_store2(p + 8 * c + 2 * t, dq[c][2 * r] * scale, dq[c][2 * r + 1] * scale);
        }
    #endif
    }

    // Backward, step 3: dV = P^T dO and dK = scale * dS^T Q, a block per (64 keys, row, query head),
    // streaming the query tiles (BQ) that can see the keys, STAGES-buffered. A block per query head
    // (not per KV head) keeps the longest block short: causal rows give the first key tile all the
    // query tiles, and a GQA group of 8 heads looped in one block was 8 times that. With a group,
    // each head writes its f32 share to dKPart/dVPart [tokens, heads, D] and flash_attention_group_sum
    // adds the group in head order; without one (MHA) the block writes dK and dV itself. K lives in
    // registers (A fragments), V in shared memory. Wide heads: K stays in shared memory too, and the
    // block has 8 warps: warps w and w + 4 own the same 16 keys and accumulate dK and dV for one half
    // of d each (all of d would be 256 registers); both compute the keys' scores over all of d, or, with
    // PAIR_SPLIT, each over its half and the pair adds them (fa_pair_sum: a third less work, one more barrier).
    template <int D, int BQ, int STAGES, bool SOFTCAP, bool PAIR_SPLIT = false>
    __device__ __forceinline__ void fa_backward_dkdv(
        const storage_t* __restrict__ dOut, const storage_t* __restrict__ q, const storage_t* __restrict__ k,
        const storage_t* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ rowDot,
        const int* __restrict__ seq, storage_t* __restrict__ dK, storage_t* __restrict__ dV,
        float* __restrict__ dKPart, float* __restrict__ dVPart,
        int columns, int heads, int kvHeads, int window, float scale, float softcap)
    {
    #if __CUDA_ARCH__ >= 800
        constexpr int S = D + FA_PAD;
        constexpr bool WIDE = D > FA_REGISTER_HEAD_DIM;
        constexpr int W = WIDE ? D / 2 : D;  // the columns of dK and dV a warp accumulates
        // [K (wide only)] V, then STAGES Q tiles, then STAGES dO tiles
        __shared__ __align__(16) storage_t tiles[WIDE ? 8 : (64 + 2 * STAGES * BQ) * S];
        storage_t* const ks = fa_dynamic;
        storage_t* const vs = WIDE ? fa_dynamic + 64 * S : tiles;
        storage_t* const queryTiles = vs + 64 * S;
        __shared__ int querySeq[STAGES][BQ];
        __shared__ float queryLse[STAGES][BQ], queryDot[STAGES][BQ];
        const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, t = lane & 3;
        const int kw = WIDE ? warp & 3 : warp, half = WIDE ? warp >> 2 : 0;  // the warp's 16 keys and half of d
        const int k0 = blockIdx.x * 64;  // the longest (causal) tiles are the first ones
        const int row = blockIdx.y / heads, h = blockIdx.y % heads, kvh = h / (heads / kvHeads);
        const long long base = (long long)row * columns, qStride = (long long)heads * D, kvStride = (long long)kvHeads * D;
        const int keys = min(64, columns - k0);

        unsigned int kf[WIDE ? 1 : D / 16][4];
        if constexpr (WIDE) {
            fa_load<D, 64>(ks, k + (base + k0) * kvStride + kvh * D, kvStride, keys);
            fa_load<D, 64>(vs, v + (base + k0) * kvStride + kvh * D, kvStride, keys);
        } else {
            fa_load<D, 64>(vs, k + (base + k0) * kvStride + kvh * D, kvStride, keys);
            __syncthreads();
            fa_load_a<D>(kf, vs, warp * 16);
        }
        // also the barrier before vs is reused (and, wide, after the K and V tiles are in)
        const int keySequence = fa_tile_sequence(seq, base, k0, columns);
        if constexpr (!WIDE) fa_load<D, 64>(vs, v + (base + k0) * kvStride + kvh * D, kvStride, keys);

        int kj[2], kseq[2];
        for (int r = 0; r < 2; r++) {
            kj[r] = k0 + kw * 16 + (lane >> 2) + 8 * r;
            kseq[r] = kj[r] < columns ? seq[base + kj[r]] : -1;
        }
        float dk[W / 8][4], dv[W / 8][4];
        for (int n = 0; n < W / 8; n++) for (int e = 0; e < 4; e++) { dk[n][e] = 0.f; dv[n][e] = 0.f; }

        const int last = window > 0 ? min(columns - 1, k0 + 63 + window - 1) : columns - 1;
        auto issue = [&](int i0) {
            const int stage = STAGES == 1 ? 0 : (i0 / BQ) & 1, valid = min(BQ, columns - i0);
            fa_load_async<D, BQ>(queryTiles + stage * BQ * S, q + (base + i0) * qStride + h * D, qStride, valid);
            fa_load_async<D, BQ>(queryTiles + (STAGES + stage) * BQ * S, dOut + (base + i0) * qStride + h * D, qStride,
                                 valid);
            fa_cp_commit();
            if (threadIdx.x < BQ) {
                const bool inside = threadIdx.x < valid;
                const long long n = base + i0 + threadIdx.x;
                querySeq[stage][threadIdx.x] = inside ? seq[n] : -2;
                queryLse[stage][threadIdx.x] = inside ? lse[n * heads + h] : 0.f;
                queryDot[stage][threadIdx.x] = inside ? rowDot[n * heads + h] : 0.f;
            }
        };
        issue(k0 / BQ * BQ);
        for (int i0 = k0 / BQ * BQ; i0 <= last; i0 += BQ) {
            const int stage = STAGES == 1 ? 0 : (i0 / BQ) & 1;
            const bool more = i0 + BQ <= last;
            if (STAGES == 2 && more) issue(i0 + BQ);
            fa_cp_wait(STAGES == 2 && more ? 1 : 0);
            const bool queriesInside = __syncthreads_and(threadIdx.x >= BQ || querySeq[stage][threadIdx.x] == keySequence);
            const bool full = queriesInside && keySequence >= 0 && k0 + 63 <= i0 && (window <= 0 || i0 + BQ - 1 - k0 < window);
            const int* tileSeq = querySeq[stage];
            const float* tileLse = queryLse[stage];
            const float* tileDot = queryDot[stage];
            const storage_t* qs = queryTiles + stage * BQ * S;
            const storage_t* dOs = queryTiles + (STAGES + stage) * BQ * S;

            // Transposed scores: rows are this warp's keys, columns the BQ queries.
            float s[BQ / 8][4], dp[BQ / 8][4];
            for (int n = 0; n < BQ / 8; n++) for (int e = 0; e < 4; e++) { s[n][e] = 0.f; dp[n][e] = 0.f; }
            if constexpr (WIDE && PAIR_SPLIT) {
                fa_mma_abt_shared<D, BQ, W / 16>(s, ks + half * W, kw * 16, qs + half * W);
                fa_mma_abt_shared<D, BQ, W / 16>(dp, vs + half * W, kw * 16, dOs + half * W);
                fa_pair_sum<BQ>(s, dp, (float*)(queryTiles + 2 * STAGES * BQ * S));
            } else {
                if constexpr (WIDE) fa_mma_abt_shared<D, BQ>(s, ks, kw * 16, qs);
                else fa_mma_abt<D, BQ>(s, kf, qs);
                fa_mma_abt_shared<D, BQ>(dp, vs, kw * 16, dOs);  // V's fragments one at a time: registers are short here
            }
            #pragma unroll
            for (int n = 0; n < BQ / 8; n++) {
                #pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int r = e >> 1, i = 8 * n + 2 * t + (e & 1);
                    float slope = 1.f;
                    const float p = full || fa_visible(i0 + i, kj[r], tileSeq[i], kseq[r], window)
                        ? __expf(fa_cap<SOFTCAP>(s[n][e] * scale, softcap, &slope) - tileLse[i]) : 0.f;
                    s[n][e] = p;
                    dp[n][e] = SOFTCAP ? p * (dp[n][e] - tileDot[i]) * slope : p * (dp[n][e] - tileDot[i]);
                }
            }
            fa_mma_ab<D, BQ, false, W>(dv, s, dOs + half * W);
            fa_mma_ab<D, BQ, SWIFTLET_BF16 == 1, W>(dk, dp, qs + half * W);
            __syncthreads();  // every warp is done with this stage before an issue overwrites it
            if (STAGES == 1 && more) issue(i0 + BQ);
        }

        const bool grouped = heads != kvHeads;
        for (int r = 0; r < 2; r++) {
            if (kj[r] >= columns) continue;
            if (grouped) {
                const long long off = ((base + kj[r]) * heads + h) * D + half * W;
                for (int c = 0; c < W / 8; c++) {
                    *(float2*)(dKPart + off + 8 * c + 2 * t) = make_float2(dk[c][2 * r], dk[c][2 * r + 1]);
                    *(float2*)(dVPart + off + 8 * c + 2 * t) = make_float2(dv[c][2 * r], dv[c][2 * r + 1]);
                }
            } else {
                const long long off = (base + kj[r]) * kvStride + kvh * D + half * W;
                for (int c = 0; c < W / 8; c++) {
                    fa_store2(dK + off + 8 * c + 2 * t, dk[c][2 * r] * scale, dk[c][2 * r + 1] * scale);
                    fa_store2(dV + off + 8 * c + 2 * t, dv[c][2 * r], dv[c][2 * r + 1]);
                }
            }
        }
    #endif
    }

    // Backward, step 4 (GQA): dK = scale * sum, dV = sum over the heads of each group, in head order.
    extern "C" __global__ void flash_attention_group_sum(
        const float* __restrict__ dKPart, const float* __restrict__ dVPart, storage_t* __restrict__ dK,
        storage_t* __restrict__ dV, long long tokens, int heads, int kvHeads, int headDim, float scale)
    {
        const int group = heads / kvHeads;
        const long long count = tokens * kvHeads * headDim;
        for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < count; e += (long long)gridDim.x * blockDim.x) {
            const long long token = e / ((long long)kvHeads * headDim);
            const int rest = (int)(e - token * kvHeads * headDim), kvh = rest / headDim, c = rest % headDim;
            const long long first = (token * heads + (long long)kvh * group) * headDim + c;
            float sk = 0.f, sv = 0.f;
            for (int g = 0; g < group; g++) { sk += dKPart[first + (long long)g * headDim]; sv += dVPart[first + (long long)g * headDim]; }
            dK[e] = to_storage(sk * scale);
            dV[e] = to_storage(sv);
        }
    }

    // The kernels per head dim, plain and softcapped (the _softcap ones take the cap as a last argument;
    // the tiles per head dim: `CUDAFlashAttention.tiles`).
    #define FA_NO_CAP_PARAM
    #define FA_CAP_PARAM , float softcap
    #define FA_KERNELS(D, BK, BQ, STAGES, DKDV_THREADS, SUFFIX, SOFTCAP, CAP_PARAM, CAP)                          \\
    extern "C" __global__ void __launch_bounds__(128) flash_attention_forward_d##D##SUFFIX(                        \\
        const storage_t* q, const storage_t* k, const storage_t* v, const int* seq, storage_t* out, float* lse,    \\
        int columns, int heads, int kvHeads, int window, float scale CAP_PARAM)                                    \\
    { fa_forward<D, SOFTCAP>(q, k, v, seq, out, lse, columns, heads, kvHeads, window, scale, CAP); }               \\
    extern "C" __global__ void __launch_bounds__(128) flash_attention_backward_dq_d##D##SUFFIX(                    \\
        const storage_t* dOut, const storage_t* q, const storage_t* k, const storage_t* v, const float* lse,       \\
        const float* rowDot, const int* seq, storage_t* dQ, int columns, int heads, int kvHeads, int window,       \\
        float scale CAP_PARAM)                                                                                     \\
    { fa_backward_dq<D, BK, SOFTCAP>(dOut, q, k, v, lse, rowDot, seq, dQ, columns, heads, kvHeads, window, scale, \\
                                      CAP); }                                                                      \\
    extern "C" __global__ void __launch_bounds__(DKDV_THREADS) flash_attention_backward_dkdv_d##D##SUFFIX(         \\
        const storage_t* dOut, const storage_t* q, const storage_t* k, const storage_t* v, const float* lse,       \\
        const float* rowDot, const int* seq, storage_t* dK, storage_t* dV, float* dKPart, float* dVPart,           \\
        int columns, int heads, int kvHeads, int window, float scale CAP_PARAM)                                    \\
    { fa_backward_dkdv<D, BQ, STAGES, SOFTCAP>(dOut, q, k, v, lse, rowDot, seq, dK, dV, dKPart, dVPart, columns, \\
                                                heads, kvHeads, window, scale, CAP); }
    #define FA_DKDV_PAIRS(D, BQ, STAGES, SUFFIX, SOFTCAP, CAP_PARAM, CAP)                                           \\
    extern "C" __global__ void __launch_bounds__(256) flash_attention_backward_dkdv_d##D##_pairs##SUFFIX(         \\
        const storage_t* dOut, const storage_t* q, const storage_t* k, const storage_t* v, const float* lse,       \\
        const float* rowDot, const int* seq, storage_t* dK, storage_t* dV, float* dKPart, float* dVPart,           \\
        int columns, int heads, int kvHeads, int window, float scale CAP_PARAM)                                    \\
    { fa_backward_dkdv<D, BQ, STAGES, SOFTCAP, true>(dOut, q, k, v, lse, rowDot, seq, dK, dV, dKPart, dVPart,    \\
                                                      columns, heads, kvHeads, window, scale, CAP); }

    \(instantiations)
    """

    /// Wide head dims' dK/dV with the pair's scores split over d (`fa_pair_sum`): built beside the
    /// default, opt-in (`SWIFTLET_FLASH_PAIR_SPLIT=1`) until the doctor has checked and timed both.
    nonisolated(unsafe) static var pairSplit = CUDALibrarySearch.processEnvironment["SWIFTLET_FLASH_PAIR_SPLIT"] == "1"

    /// Dynamic shared memory asked for beyond the tiles' need: 0, except in the doctor's check of the
    /// fallback, which asks for more than the GPU has, so the driver refuses the launches as it would
    /// refuse tiles that do not fit.
    nonisolated(unsafe) static var sharedBytesOverAsk = 0

    /// One head dim's tiles. `keyTile`: the keys a dQ step streams; `queryTile`: the queries a dK/dV
    /// step streams (32 at d 96 and over: a [16, d] accumulator and the step's scores within 255
    /// registers; 16 keys at d 256 keep dQ's shared memory at two blocks an SM); `stages`: the dK/dV
    /// kernel's query-tile buffers (one over d 64: static shared memory is 48 KiB).
    struct Tiles {
        let keyTile: Int
        let queryTile: Int
        let stages: Int

        /// Over FA_REGISTER_HEAD_DIM (128) the operands stay in shared memory (dynamic) and dK/dV has 8 warps.
        static func wide(_ headDim: Int) -> Bool { headDim > 128 }
        static func dkdvThreads(_ headDim: Int) -> Int { wide(headDim) ? 256 : threads }

        /// Dynamic shared memory of each kernel (0 below the wide head dims), as the kernels lay it out:
        /// forward Q, K, V (64 rows each); dQ Q, dO, then two stages of K and V; dK/dV K, V, then the
        /// stages of Q and dO (and, split over the pair, the scores' halves: 8 warps × 2 × 16 × queryTile / 8
        /// floats). Rows are padded by 8 elements.
        func sharedBytes(headDim d: Int, pairSplit: Bool = false) -> (forward: Int, dq: Int, dkdv: Int) {
            guard Tiles.wide(d) else { return (0, 0, 0) }
            let row = (d + 8) * 2, pairs = pairSplit ? 8 * 2 * queryTile / 2 * 32 * 4 : 0
            return (3 * 64 * row, (128 + 4 * keyTile) * row, (128 + 2 * stages * queryTile) * row + pairs)
        }
    }

    static let tiles: [Int: Tiles] = [64: Tiles(keyTile: 64, queryTile: 64, stages: 2),
                                      96: Tiles(keyTile: 32, queryTile: 32, stages: 1),
                                      128: Tiles(keyTile: 32, queryTile: 32, stages: 1),
                                      256: Tiles(keyTile: 16, queryTile: 32, stages: 1)]

    private static var instantiations: String {
        tiles.keys.sorted().flatMap { d in
            let t = tiles[d]!, head = "\(d), \(t.keyTile), \(t.queryTile), \(t.stages), \(Tiles.dkdvThreads(d))"
            let pairs = "\(d), \(t.queryTile), \(t.stages)"
            return ["FA_KERNELS(\(head), , false, FA_NO_CAP_PARAM, 0.f)",
                    "FA_KERNELS(\(head), _softcap, true, FA_CAP_PARAM, softcap)"]
                + (Tiles.wide(d) ? ["FA_DKDV_PAIRS(\(pairs), , false, FA_NO_CAP_PARAM, 0.f)",
                                    "FA_DKDV_PAIRS(\(pairs), _softcap, true, FA_CAP_PARAM, softcap)"] : [])
        }.joined(separator: "\n")
    }
}

extension CUDABackend {
    /// Whether the tensor-core kernels run this call: mma.sync with bf16 needs compute capability
    /// 8.0, the tiles exist for the head dim (and its shared memory fits the GPU), and rows are read
    /// 16 bytes at a time.
    func usesFlashAttention(headDim: Int, _ tensors: [Tensor] = []) -> Bool {
        guard attentionKernels != .simple, device.computeCapability.major >= 8,
              let tiles = CUDAFlashAttention.tiles[headDim], flashRefused[headDim] == nil
        else { return false }
        let shared = tiles.sharedBytes(headDim: headDim, pairSplit: CUDAFlashAttention.pairSplit)
        // + 2 KiB: the kernels' static arrays (sequence ids, log-sum-exps) beside the dynamic tiles
        return Swift.max(shared.forward, shared.dq, shared.dkdv) + 2048 <= device.sharedMemoryPerBlockOptIn
            && tensors.allSatisfy { $0.device % 16 == 0 }
    }

    private func flashSharedBytes(_ layout: AttentionLayout) -> (forward: Int, dq: Int, dkdv: Int) {
        let shared = CUDAFlashAttention.tiles[layout.headDim]!.sharedBytes(headDim: layout.headDim, pairSplit: pairSplit(layout))
        let over = CUDAFlashAttention.sharedBytesOverAsk
        return (shared.forward + over, shared.dq + over, shared.dkdv + over)
    }

    private func pairSplit(_ layout: AttentionLayout) -> Bool {
        CUDAFlashAttention.pairSplit && CUDAFlashAttention.Tiles.wide(layout.headDim)
    }

    /// The geometry arguments, and the cap where the softcapped kernels run (`attentionKernel`'s names).
    private func flashArguments(_ layout: AttentionLayout) -> [KernelArgument] {
        [.int32(Int32(layout.columns)), .int32(Int32(layout.heads)), .int32(Int32(layout.kvHeads)),
         .int32(Int32(layout.slidingWindow ?? 0)), .float(layout.scale)] + (layout.softcap.map { [.float($0)] } ?? [])
    }

    /// (column tiles, rows × heads): one block per tile of 64 queries (or keys) of one row and head.
    private func flashGrid(_ layout: AttentionLayout, heads: Int) -> (Int, Int, Int) {
        ((layout.columns + CUDAFlashAttention.tile - 1) / CUDAFlashAttention.tile, layout.rows * heads, 1)
    }

    /// Runs the tiles, or records that this GPU refused them (false: the caller runs the simple kernels, whose
    /// outputs are the same). The tiles for head dims 96 and 256 have passed the CPU emulation of their source,
    /// not yet a GPU; a refusal there (driver limits on shared memory or registers) must not stop training.
    private func flashRun(_ op: String, headDim: Int, _ body: () throws -> Void) -> Bool {
        do {
            try runThrowing(op, body)
            return true
        } catch {
            flashRefused[headDim] = "\(error)"
            fputs("swiftlet: the tensor-core attention kernels for head dim \(headDim) were refused on this GPU; "
                  + "using the simple kernels: \(error)\n", stderr)
            return false
        }
    }

    func flashAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, layout: AttentionLayout,
                        into out: Tensor, logSumExp: Tensor) -> Bool {
        flashRun("flashAttention", headDim: layout.headDim) {
            try kernels.launch(try function(attentionKernel("flash_attention_forward_d\(layout.headDim)", layout),
                                            CUDAFlashAttention.source),
                               grid: flashGrid(layout, heads: layout.heads), block: (CUDAFlashAttention.threads, 1, 1),
                               sharedBytes: flashSharedBytes(layout).forward,
                               arguments: [.pointer(q.device), .pointer(k.device), .pointer(v.device),
                                           .pointer(layout.sequenceIds.device), .pointer(out.device),
                                           .pointer(logSumExp.device)] + flashArguments(layout))
        }
    }

    /// Overwrites dQ, dK and dV (as the simple kernels and the CPU do); false as `flashAttention`.
    func flashAttentionBackward(dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor,
                                logSumExp: Tensor, layout: AttentionLayout,
                                dQ: Tensor, dK: Tensor, dV: Tensor) -> Bool {
        let tokens = q.shape[0], d = layout.headDim, tokensTimesHeads = tokens * layout.heads, warps = 8
        let rowDot = try! empty([tokens, layout.heads], .f32)   // written for every (token, head)
        // GQA: each query head's f32 share of dK and dV, summed per group afterwards (every element written)
        let grouped = layout.heads != layout.kvHeads
        let parts = grouped ? try! empty([2, tokensTimesHeads * d], .f32) : nil
        let dKPart = parts?.rows(0..<1).device ?? 0, dVPart = parts?.rows(1..<2).device ?? 0
        return flashRun("flashAttentionBackward", headDim: d) {
            try kernels.launch(try function("flash_attention_row_dot", CUDAFlashAttention.source),
                               grid: ((tokensTimesHeads + warps - 1) / warps, 1, 1), block: (32 * warps, 1, 1),
                               arguments: [.pointer(dOut.device), .pointer(out.device), .pointer(rowDot.device),
                                           .int32(Int32(tokensTimesHeads)), .int32(Int32(d))])
            try kernels.launch(try function(attentionKernel("flash_attention_backward_dq_d\(d)", layout), CUDAFlashAttention.source),
                               grid: flashGrid(layout, heads: layout.heads), block: (CUDAFlashAttention.threads, 1, 1),
                               sharedBytes: flashSharedBytes(layout).dq,
                               arguments: [.pointer(dOut.device), .pointer(q.device), .pointer(k.device), .pointer(v.device),
                                           .pointer(logSumExp.device), .pointer(rowDot.device),
                                           .pointer(layout.sequenceIds.device), .pointer(dQ.device)] + flashArguments(layout))
            try kernels.launch(try function(attentionKernel("flash_attention_backward_dkdv_d\(d)\(pairSplit(layout) ? "_pairs" : "")",
                                                            layout), CUDAFlashAttention.source),
                               grid: flashGrid(layout, heads: layout.heads),
                               block: (CUDAFlashAttention.Tiles.dkdvThreads(d), 1, 1), sharedBytes: flashSharedBytes(layout).dkdv,
                               arguments: [.pointer(dOut.device), .pointer(q.device), .pointer(k.device), .pointer(v.device),
                                           .pointer(logSumExp.device), .pointer(rowDot.device),
                                           .pointer(layout.sequenceIds.device), .pointer(dK.device),
                                           .pointer(dV.device), .pointer(dKPart), .pointer(dVPart)] + flashArguments(layout))
            guard grouped else { return }
            let count = tokens * layout.kvHeads * d
            try kernels.launch(try function("flash_attention_group_sum", CUDAFlashAttention.source),
                               grid: (Swift.max(1, Swift.min((count + 255) / 256, device.multiprocessors * 16)), 1, 1),
                               block: (256, 1, 1),
                               arguments: [.pointer(dKPart), .pointer(dVPart), .pointer(dK.device), .pointer(dV.device),
                                           .int64(Int64(tokens)), .int32(Int32(layout.heads)), .int32(Int32(layout.kvHeads)),
                                           .int32(Int32(d)), .float(layout.scale)])
        }
    }
}
