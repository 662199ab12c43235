// The CUDA training-attention kernels on the CPU (cuda_emulation.h), plain and softcapped, against attention
// and its gradients in double on packed rows with padding, GQA and windows: the simple kernels
// (AttentionKernels.swift: forward, dQ, dK/dV) and the tensor-core tiles (FlashAttentionKernels.swift: forward,
// row dot, dQ, dK/dV with and without the pair split, group sum; mma.sync, ldmatrix and cp.async as in
// ptx_emulation.h) with CUDAFlashAttention.tiles and the launch geometry of CUDAFlashAttention's host code,
// written again here. Run scripts/emulate_cuda_attention.sh (it extracts the kernel source into kernel.inc).
#include "cuda_emulation.h"

enum class Kernels { simple, tiled, tiledPairSplit };

struct Problem {
    int rows, columns, heads, kvHeads, headDim, window;
    float scale, softcap;
    const storage_t *q, *k, *v, *dOut;
    const int* seq;
};
struct Outputs { std::vector<storage_t> out, dQ, dK, dV; std::vector<float> lse; };

void simple(const Problem& p, Outputs& o) {
    int n = p.rows * p.columns, warps = 4, tiles = (p.columns + warps - 1) / warps;
    std::vector<float> rowDot(n * p.heads);
    bool cap = p.softcap > 0;
    launch({tiles, p.rows * p.heads, 1}, 32 * warps, [&] {
        if (cap) attention_forward_softcap(p.q, p.k, p.v, p.seq, o.out.data(), o.lse.data(), p.rows, p.columns, p.heads,
                                           p.kvHeads, p.headDim, p.window, p.scale, p.softcap);
        else attention_forward(p.q, p.k, p.v, p.seq, o.out.data(), o.lse.data(), p.rows, p.columns, p.heads, p.kvHeads,
                               p.headDim, p.window, p.scale);
    });
    launch({tiles, p.rows * p.heads, 1}, 32 * warps, [&] {
        if (cap) attention_backward_dq_softcap(p.dOut, p.q, p.k, p.v, o.out.data(), o.lse.data(), p.seq, o.dQ.data(),
                                               rowDot.data(), p.rows, p.columns, p.heads, p.kvHeads, p.headDim, p.window,
                                               p.scale, p.softcap);
        else attention_backward_dq(p.dOut, p.q, p.k, p.v, o.out.data(), o.lse.data(), p.seq, o.dQ.data(), rowDot.data(),
                                   p.rows, p.columns, p.heads, p.kvHeads, p.headDim, p.window, p.scale);
    });
    launch({tiles, p.rows * p.kvHeads, 1}, 32 * warps, [&] {
        if (cap) attention_backward_dkdv_softcap(p.dOut, p.q, p.k, p.v, o.lse.data(), rowDot.data(), p.seq, o.dK.data(),
                                                 o.dV.data(), p.rows, p.columns, p.heads, p.kvHeads, p.headDim, p.window,
                                                 p.scale, p.softcap);
        else attention_backward_dkdv(p.dOut, p.q, p.k, p.v, o.lse.data(), rowDot.data(), p.seq, o.dK.data(), o.dV.data(),
                                     p.rows, p.columns, p.heads, p.kvHeads, p.headDim, p.window, p.scale);
    });
}

constexpr FlashTiles tilesOf(int d) {
    for (const FlashTiles& t : flashTiles) if (t.headDim == d) return t;
    return {0, 0, 0, 0};
}

// Poisons the dynamic shared memory before each block (0xFFFF: a bf16 NaN, which no result survives) and
// checks after it that nothing was written past the bytes the launch declared.
struct SharedMemory {
    size_t declared;
    explicit SharedMemory(size_t bytes) : declared(bytes) {
        dynamicShared = (const char*)fa_dynamic; dynamicSharedCapacity = sizeof(fa_dynamic);
        dynamicSharedDeclared = bytes;
        if (bytes > sizeof(fa_dynamic)) { fprintf(stderr, "%zu bytes of dynamic shared memory declared\n", bytes); abort(); }
        poison();
    }
    void poison() const { std::fill(std::begin(fa_dynamic), std::end(fa_dynamic), 0xFFFF); }
    void check() const {
        for (size_t e = declared / 2; e < sizeof(fa_dynamic) / 2; e++)
            if (fa_dynamic[e] != 0xFFFF) { fprintf(stderr, "dynamic shared memory written at byte %zu, %zu declared\n", 2 * e, declared); abort(); }
    }
    std::function<void()> eachBlock() const {
        return [this] { check(); poison(); };
    }
    ~SharedMemory() { check(); }
};

// CUDABackend.flashAttention and flashAttentionBackward: the launches, grids, threads and shared memory.
template <int D, bool CAP, bool PAIRS>
void tiled(const Problem& p, Outputs& o) {
    constexpr FlashTiles T = tilesOf(D);
    static_assert(T.headDim == D, "no tiles for this head dim in CUDAFlashAttention.tiles");
    constexpr bool wide = D > 128;
    // as CUDAFlashAttention.Tiles.sharedBytes lays the wide kernels' dynamic shared memory out
    constexpr size_t row = (D + 8) * 2, pairs = PAIRS ? 8 * 2 * T.queryTile / 2 * 32 * 4 : 0;
    constexpr size_t forwardBytes = wide ? 3 * 64 * row : 0, dqBytes = wide ? (128 + 4 * T.keyTile) * row : 0;
    constexpr size_t dkdvBytes = wide ? (128 + 2 * T.stages * T.queryTile) * row + pairs : 0;
    const int n = p.rows * p.columns, tiles = (p.columns + 63) / 64, rowsTimesHeads = p.rows * p.heads;
    const bool grouped = p.heads != p.kvHeads;
    std::vector<float> rowDot(n * p.heads, NAN), parts(grouped ? 2 * n * p.heads * D : 0, NAN);
    float* dKPart = grouped ? parts.data() : nullptr;
    float* dVPart = grouped ? parts.data() + n * p.heads * D : nullptr;
    {
        SharedMemory shared(forwardBytes);
        launch({tiles, rowsTimesHeads, 1}, 128, [&] {
            fa_forward<D, CAP>(p.q, p.k, p.v, p.seq, o.out.data(), o.lse.data(), p.columns, p.heads, p.kvHeads, p.window,
                               p.scale, p.softcap);
        }, shared.eachBlock());
    }
    launch({(n * p.heads + 7) / 8, 1, 1}, 256, [&] {
        flash_attention_row_dot(p.dOut, o.out.data(), rowDot.data(), n * p.heads, D);
    });
    {
        SharedMemory shared(dqBytes);
        launch({tiles, rowsTimesHeads, 1}, 128, [&] {
            fa_backward_dq<D, T.keyTile, CAP>(p.dOut, p.q, p.k, p.v, o.lse.data(), rowDot.data(), p.seq, o.dQ.data(),
                                              p.columns, p.heads, p.kvHeads, p.window, p.scale, p.softcap);
        }, shared.eachBlock());
    }
    {
        SharedMemory shared(dkdvBytes);
        launch({tiles, rowsTimesHeads, 1}, wide ? 256 : 128, [&] {
            fa_backward_dkdv<D, T.queryTile, T.stages, CAP, PAIRS>(p.dOut, p.q, p.k, p.v, o.lse.data(), rowDot.data(), p.seq,
                                                                   o.dK.data(), o.dV.data(), dKPart, dVPart, p.columns,
                                                                   p.heads, p.kvHeads, p.window, p.scale, p.softcap);
        }, shared.eachBlock());
    }
    if (grouped) {
        const int count = n * p.kvHeads * D;
        launch({(count + 255) / 256, 1, 1}, 256, [&] {
            flash_attention_group_sum(dKPart, dVPart, o.dK.data(), o.dV.data(), n, p.heads, p.kvHeads, D, p.scale);
        });
    }
}

template <int D>
void tiledHeadDim(const Problem& p, Outputs& o, bool pairSplit) {
    const bool cap = p.softcap > 0;
    if constexpr (D > 128) {
        if (pairSplit) { cap ? tiled<D, true, true>(p, o) : tiled<D, false, true>(p, o); return; }
    }
    cap ? tiled<D, true, false>(p, o) : tiled<D, false, false>(p, o);
}

void tiled(const Problem& p, Outputs& o, bool pairSplit) {
    switch (p.headDim) {
    case 64: tiledHeadDim<64>(p, o, pairSplit); break;
    case 96: tiledHeadDim<96>(p, o, pairSplit); break;
    case 128: tiledHeadDim<128>(p, o, pairSplit); break;
    case 256: tiledHeadDim<256>(p, o, pairSplit); break;
    default: fprintf(stderr, "no tiles for head dim %d\n", p.headDim); abort();
    }
}

int run(Kernels kernels, int rows, int columns, int heads, int kvHeads, int headDim, int window, float scale,
        float softcap, std::vector<int> sequences) {
    std::mt19937 gen(rows * 7 + columns * 13 + headDim);
    std::uniform_real_distribution<float> u(-2, 2);
    int n = rows * columns, qW = heads * headDim, kvW = kvHeads * headDim, group = heads / kvHeads;
    std::vector<storage_t> q(n * qW), k(n * kvW), v(n * kvW), dOut(n * qW);
    for (auto& x : q) x = to_storage(u(gen));
    for (auto& x : k) x = to_storage(u(gen));
    for (auto& x : v) x = to_storage(u(gen) / 2);
    for (auto& x : dOut) x = to_storage(u(gen) / 2);
    std::vector<int> seq(n);
    for (int r = 0; r < rows; r++) for (int c = 0; c < columns; c++) seq[r * columns + c] = sequences[c];
    Outputs o{std::vector<storage_t>(n * qW, 0xFFFF), std::vector<storage_t>(n * qW, 0xFFFF),
              std::vector<storage_t>(n * kvW, 0xFFFF), std::vector<storage_t>(n * kvW, 0xFFFF),
              std::vector<float>(n * heads, NAN)};
    Problem p{rows, columns, heads, kvHeads, headDim, window, scale, softcap, q.data(), k.data(), v.data(), dOut.data(),
              seq.data()};
    if (kernels == Kernels::simple) simple(p, o);
    else tiled(p, o, kernels == Kernels::tiledPairSplit);
    const std::vector<storage_t>& out = o.out; const std::vector<float>& lse = o.lse;
    const std::vector<storage_t>& dQ = o.dQ; const std::vector<storage_t>& dK = o.dK; const std::vector<storage_t>& dV = o.dV;
    bool cap = softcap > 0;

    // reference in double (the kernels' inputs as they stored them; the backward from the double forward)
    auto f = [](storage_t x) { return (double)to_f32(x); };
    std::vector<double> rdQ(n * qW, 0), rdK(n * kvW, 0), rdV(n * kvW, 0);
    Measure mOut, mLse, mdQ, mdK, mdV;
    for (int r = 0; r < rows; r++) for (int h = 0; h < heads; h++) for (int i = 0; i < columns; i++) {
        int g = h / group, qi = r * columns + i, qs = seq[qi];
        std::vector<int> js; std::vector<double> s, slope;
        if (qs >= 0) for (int j = 0; j <= i; j++) {
            int kj = r * columns + j;
            if (seq[kj] != qs || (window > 0 && i - j >= window)) continue;
            double dot = 0;
            for (int c = 0; c < headDim; c++) dot += f(q[qi * qW + h * headDim + c]) * f(k[kj * kvW + g * headDim + c]);
            double z = dot * scale, t = cap ? tanh(z / softcap) : 0;
            s.push_back(cap ? softcap * t : z); slope.push_back(cap ? 1 - t * t : 1); js.push_back(kj);
        }
        if (js.empty()) { mLse.add(std::isinf(lse[qi * heads + h]) && lse[qi * heads + h] < 0 ? 0 : 1, 0); continue; }
        double m = -1e300; for (double x : s) m = std::max(m, x);
        double tot = 0; for (double x : s) tot += exp(x - m);
        mLse.add(lse[qi * heads + h], m + log(tot));
        std::vector<double> p(s.size()), o(headDim, 0);
        for (size_t a = 0; a < s.size(); a++) p[a] = exp(s[a] - m) / tot;
        for (int c = 0; c < headDim; c++) {
            for (size_t a = 0; a < s.size(); a++) o[c] += p[a] * f(v[js[a] * kvW + g * headDim + c]);
            mOut.add(to_f32(out[qi * qW + h * headDim + c]), o[c]);
        }
        double D = 0; for (int c = 0; c < headDim; c++) D += f(dOut[qi * qW + h * headDim + c]) * o[c];
        for (size_t a = 0; a < s.size(); a++) {
            double dp = 0;
            for (int c = 0; c < headDim; c++) dp += f(dOut[qi * qW + h * headDim + c]) * f(v[js[a] * kvW + g * headDim + c]);
            double ds = p[a] * (dp - D) * slope[a] * scale;
            for (int c = 0; c < headDim; c++) {
                rdQ[qi * qW + h * headDim + c] += ds * f(k[js[a] * kvW + g * headDim + c]);
                rdK[js[a] * kvW + g * headDim + c] += ds * f(q[qi * qW + h * headDim + c]);
                rdV[js[a] * kvW + g * headDim + c] += p[a] * f(dOut[qi * qW + h * headDim + c]);
            }
        }
    }
    for (int e = 0; e < n * qW; e++) mdQ.add(to_f32(dQ[e]), rdQ[e]);
    for (int e = 0; e < n * kvW; e++) { mdK.add(to_f32(dK[e]), rdK[e]); mdV.add(to_f32(dV[e]), rdV[e]); }
    bool ok = true;
    // f16 (STORAGE=f16) keeps 3 more bits than bf16: its bound is 8 times tighter
    const double bound = SWIFTLET_BF16 ? 1e-2 : 1.25e-3;
    for (auto* x : {&mOut, &mdQ, &mdK, &mdV}) ok = ok && x->bad == 0 && x->rel() < bound;
    ok = ok && mLse.bad == 0 && mLse.diff < 1e-3 * std::max(mLse.ref, 1.0);
    const char* name = kernels == Kernels::simple ? "simple" : kernels == Kernels::tiled ? "tiled" : "tiled, pair split";
    printf("%s %s: rows %d columns %d heads %d/%d d %d window %d softcap %g: out %.1e lse %.1e dQ %.1e dK %.1e dV %.1e (max rel)\n",
           ok ? "PASS" : "FAIL", name, rows, columns, heads, kvHeads, headDim, window, softcap, mOut.rel(), mLse.diff,
           mdQ.rel(), mdK.rel(), mdV.rel());
    fflush(stdout);
    return ok;
}

// Sequence ids of one row: sequences of the given lengths one after another, then padding (-1) to `columns`.
std::vector<int> packed(int columns, std::vector<int> lengths) {
    std::vector<int> ids;
    for (int s = 0; s < (int)lengths.size(); s++) for (int c = 0; c < lengths[s]; c++) ids.push_back(s);
    ids.resize(columns, -1);
    return ids;
}

int main(int argc, char** argv) {
    // argument "simple" or "tiled": only that family
    const bool simpleOnes = argc < 2 || strcmp(argv[1], "simple") == 0, tiledOnes = argc < 2 || strcmp(argv[1], "tiled") == 0;
    int ok = 1;
    if (simpleOnes) {
        auto two = packed(24, {10, 10}), one = packed(24, {24});
        ok &= run(Kernels::simple, 1, 24, 4, 2, 64, 0, 1 / sqrtf(64), 0, one);
        ok &= run(Kernels::simple, 2, 24, 4, 2, 96, 5, 1 / sqrtf(96), 0, two);
        // Gemma 2: caps 1.5 (far from linear) and 50 (the model's), d 256 with scale 1/16, GQA, windows, packing
        ok &= run(Kernels::simple, 2, 24, 4, 2, 256, 0, 1.0f / 16, 1.5f, two);
        ok &= run(Kernels::simple, 1, 24, 8, 4, 256, 6, 1.0f / 16, 1.5f, one);
        ok &= run(Kernels::simple, 1, 24, 4, 4, 256, 0, 1.0f / 16, 50.0f, one);
        ok &= run(Kernels::simple, 2, 24, 6, 2, 64, 7, 0.3f, 1.5f, two);
    }
    if (tiledOnes) {
        // 150 columns: three query (key) tiles of 64, the last partial; tiles wholly inside one sequence
        // below the diagonal take the unmasked path, the others the per-element mask
        auto two = packed(150, {70, 66}), one = packed(150, {150}), three = packed(150, {9, 100, 30});
        ok &= run(Kernels::tiled, 2, 150, 4, 2, 64, 0, 1 / sqrtf(64), 0, two);
        ok &= run(Kernels::tiled, 1, 150, 2, 2, 64, 40, 0.3f, 1.5f, one);
        // Phi-3: d 96, MHA, sliding window
        ok &= run(Kernels::tiled, 1, 150, 2, 2, 96, 70, 1 / sqrtf(96), 0, one);
        ok &= run(Kernels::tiled, 1, 150, 4, 2, 96, 0, 1 / sqrtf(96), 0, three);
        ok &= run(Kernels::tiled, 1, 150, 4, 1, 128, 0, 1 / sqrtf(128), 0, two);
        // Gemma 2 and 3: d 256, scale 1/16, caps 1.5 and 50, GQA (the group sum) and MHA (direct writes)
        for (Kernels k : {Kernels::tiled, Kernels::tiledPairSplit}) {
            ok &= run(k, 1, 150, 4, 2, 256, 40, 1.0f / 16, 1.5f, three);
            ok &= run(k, 1, 150, 2, 2, 256, 0, 1.0f / 16, 50.0f, one);
            ok &= run(k, 2, 150, 2, 1, 256, 0, 1.0f / 16, 0, two);
        }
    }
    printf(ok ? "ALL PASS\n" : "FAILURES\n");
    return ok ? 0 : 1;
}
