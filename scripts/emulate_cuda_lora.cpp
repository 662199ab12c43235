// The LoRA kernels (LoRAKernels.swift) on the CPU (cuda_emulation.h), against double: lora_down_r16/32/64,
// lora_up_add_r16/32/64, lora_gradient_r16/32/64 and lora_finalize, launched as CUDABackend's loraDown,
// loraUpAdd and loraGradient launch them (padded rank, grid, token split, vector flag from the pointer's
// alignment; the host code is written again below). Ranks 1 to LoRAShapes.maxRank, row counts that are no
// multiple of the tiles, widths with and without the vector paths (and misaligned rows), both weight
// layouts, gradients over 1, 2, 4 and 5 token splits (lora_finalize, once with a grid-stride turn).
// f32 outputs must lie within the worst case of f32 arithmetic on their terms, bf16 outputs within one
// rounding of that; nothing outside an output (inputs included) may change; a second run must give the same
// bits, as the kernels promise. Run scripts/emulate_cuda_lora.sh.
#include <cstdint>
#include "cuda_emulation.h"

// CUDALoRA's host side (LoRAKernels.swift), transcribed.
constexpr int maxRank = 64;                                  // LoRAShapes.maxRank
constexpr int loraThreads = 256, loraTile = 4096, downWarps = 4;
constexpr int h100Multiprocessors = 132;
static int paddedRank(int r) { return r <= 16 ? 16 : r <= 32 ? 32 : 64; }
static int aligned(const void* p, int width, int elements) {
    return width % elements == 0 && (uintptr_t)p % (2 * elements) == 0;
}
struct Split { int count, piece; };
static Split split(int length, int R) {
    const int piece = std::max(8, loraTile / R);
    return {std::max(1, (length + piece - 1) / piece), piece};
}
static Split tokenSplit(int tokens, int tiles, int multiprocessors) {
    const int wanted = std::max(1, (2 * multiprocessors + tiles - 1) / tiles);
    const int count = std::max(1, std::min(wanted, tokens / 256));
    const int piece = ((tokens + count - 1) / count + 7) / 8 * 8;
    return {(tokens + piece - 1) / piece, piece};
}
template <class F> static F byRank(int R, F r16, F r32, F r64) { return R == 16 ? r16 : R == 32 ? r32 : r64; }

static std::mt19937 gen(1234);
static std::vector<float> f32Values(size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<float> v(n); for (auto& x : v) x = u(gen); return v;
}
static std::vector<storage_t> bf16Values(size_t n, float lo, float hi) {
    std::vector<storage_t> v; for (float x : f32Values(n, lo, hi)) v.push_back(to_storage(x)); return v;
}
static const float nanF32 = __uint_as_float(0xFFC0DEADu);   // a NaN no kernel makes (theirs come from arithmetic)
static const storage_t nanBF16 = 0x7FFF;                    // to_storage turns every NaN into 0x7FC0

template <class T> static bool sameBits(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Higham's γ_n = n·u / (1 − n·u), u = 2⁻²⁴: a sum of n products formed in f32 in any order (a chain, the
// warp butterfly, block and split sums; with or without fma), then scaled and added to a base, is within
// γ_(n+2) · (|base| + |scale| · Σ|product|) of the exact value. That bound, from the number of terms, is
// what every element must meet; zeros of the padded rank add nothing. (The references are exact but for
// double's own rounding: every product here, bf16 × f32 or f32 × f32, is exact in double.)
static double gamma(int n) { const double u = std::ldexp(1.0, -24); return n * u / (1 - n * u); }

// f32 outputs: each within its bound, and max |Δ| / max |reference| over the output below 1e-5; NaN fails.
struct F32Check {
    Measure whole; double worst = 0; long long outside = 0;
    void add(float got, double reference, double bound) {
        whole.add(got, reference);
        const double d = fabs((double)got - reference);
        if (!(d <= bound)) outside++;
        worst = std::max(worst, bound > 0 ? d / bound : d > 0 ? INFINITY : 0);
    }
    bool ok() const { return outside == 0 && whole.ok(1e-5); }
    void print() const {
        printf("max|Δ|/max|ref| %.1e  worst Δ/bound %.3f", whole.rel(), worst);
        if (outside) printf("  %lld outside the bound (%d not finite)", outside, whole.bad);
    }
};

// bf16 outputs: the kernel rounds an f32 value within `bound` of the exact one, so its result must lie
// between the roundings of the smallest and the largest such f32 value; NaN fails.
static float floatAtLeast(double v) { float f = (float)v; return f < v ? nextafterf(f, INFINITY) : f; }
static float floatAtMost(double v) { float f = (float)v; return f > v ? nextafterf(f, -INFINITY) : f; }
struct BF16Check {
    Measure whole; long long outside = 0, notNearest = 0, count = 0;
    void add(storage_t got, double reference, double bound) {
        const float g = to_f32(got);
        const float lo = to_f32(to_storage(floatAtLeast(reference - bound)));
        const float hi = to_f32(to_storage(floatAtMost(reference + bound)));
        whole.add(g, reference);
        if (!(g >= lo && g <= hi)) outside++;
        notNearest += got != to_storage((float)reference);   // allowed where the f32 error reaches past a tie
        count++;
    }
    bool ok() const { return outside == 0; }
    void print() const {
        printf("max|Δ|/max|ref| %.1e  %lld of %lld not the nearest bf16, %lld outside one rounding", whole.rel(), notNearest,
               count, outside);
    }
};

static bool verdict(const char* op, const char* params, bool values, bool rerunSame, bool untouched,
                    const std::function<void()>& printError) {
    const bool ok = values && rerunSame && untouched;
    printf("%-9s %s  ", op, params);
    printError();
    printf("  %s%s  %s\n", rerunSame ? "rerun same" : "RERUN DIFFERS", untouched ? "" : "  WROTE OUTSIDE ITS OUTPUT",
           ok ? "PASS" : "FAIL");
    return ok;
}

// z[t, j] = alpha · Σ_k x[t, k] · w(j, k): x bf16 [T, K], w f32 [r, K] or (transposed) [K, r], z f32 [T, r]
// overwritten, so it starts as NaN and every element must be written.
static bool downCase(int r, int T, int K, bool transposed, int misalign) {
    const int R = paddedRank(r), E = R == 64 ? 4 : 8, rowsPerBlock = downWarps * (64 / R);
    const float alpha = 0.37f;
    Guarded<storage_t> x(bf16Values((size_t)T * K, -1, 1), nanBF16, misalign);
    Guarded<float> w(f32Values((size_t)r * K, -1, 1), nanF32), z(std::vector<float>((size_t)T * r, nanF32), nanF32);
    const int vec = aligned(x.data(), K, E);
    const D3 grid{(T + rowsPerBlock - 1) / rowsPerBlock, 1, 1};
    const auto kernel = byRank(R, lora_down_r16, lora_down_r32, lora_down_r64);
    auto once = [&] {
        z.reset();
        launch(grid, 32 * downWarps, [&] { kernel(x.data(), w.data(), transposed, z.data(), alpha, T, K, r, vec); });
        return z.all;
    };
    const auto first = once();
    const bool rerunSame = sameBits(first, once());
    F32Check check;
    for (int t = 0; t < T; t++) for (int j = 0; j < r; j++) {
        double sum = 0, magnitude = 0;
        for (int k = 0; k < K; k++) {
            const double p = (double)to_f32(x[(size_t)t * K + k]) * w[transposed ? (size_t)k * r + j : (size_t)j * K + k];
            sum += p; magnitude += fabs(p);
        }
        check.add(z[(size_t)t * r + j], alpha * sum, gamma(K + 2) * fabs(alpha) * magnitude);
    }
    char params[160];
    snprintf(params, sizeof params, "r %2d (R %2d)  T %4d  K %3d  w %s  vec %d  grid %3d×1, %d threads", r, R, T, K,
             transposed ? "[K, r]" : "[r, K]", vec, grid.x, 32 * downWarps);
    return verdict("down", params, check.ok(), rerunSame, z.marginsIntact() && x.unchanged() && w.unchanged(),
                   [&] { check.print(); });
}

// y[t, o] = round(y[t, o] + scale · Σ_j z[t, j] · w(o, j)): z f32 [T, r], w f32 [O, r] or (transposed)
// [r, O], y bf16 [T, O] updated in place.
static bool upAddCase(int r, int T, int O, bool transposed, int misalign) {
    const int R = paddedRank(r), vo = 64 / R;
    const Split chunks = split(T, R);
    const float scale = 1.37f;
    Guarded<float> z(f32Values((size_t)T * r, -1, 1), nanF32), w(f32Values((size_t)r * O, -1, 1), nanF32);
    Guarded<storage_t> y(bf16Values((size_t)T * O, -2, 2), nanBF16, misalign);
    const int vec = aligned(y.data(), O, vo);
    const D3 grid{(O + 32 * vo - 1) / (32 * vo), chunks.count, 1};
    const auto kernel = byRank(R, lora_up_add_r16, lora_up_add_r32, lora_up_add_r64);
    auto once = [&] {
        y.reset();
        launch(grid, loraThreads, [&] {
            kernel(z.data(), w.data(), transposed, y.data(), scale, T, O, r, chunks.piece, vec);
        });
        return y.all;
    };
    const auto first = once();
    const bool rerunSame = sameBits(first, once());
    BF16Check check;
    for (int t = 0; t < T; t++) for (int o = 0; o < O; o++) {
        double sum = 0, magnitude = 0;
        for (int j = 0; j < r; j++) {
            const double p = (double)z[(size_t)t * r + j] * w[transposed ? (size_t)j * O + o : (size_t)o * r + j];
            sum += p; magnitude += fabs(p);
        }
        const double base = to_f32(y.start((size_t)t * O + o));
        check.add(y[(size_t)t * O + o], base + scale * sum, gamma(r + 2) * (fabs(base) + fabs(scale) * magnitude));
    }
    char params[160];
    snprintf(params, sizeof params, "r %2d (R %2d)  T %4d  O %3d  w %s  vec %d  grid %3d×%d, %d rows a block", r, R, T, O,
             transposed ? "[r, O]" : "[O, r]", vec, grid.x, grid.y, chunks.piece);
    return verdict("up_add", params, check.ok(), rerunSame, y.marginsIntact() && z.unchanged() && w.unchanged(),
                   [&] { check.print(); });
}

// g(o, j) += alpha · Σ_t m[t, o] · z[t, j]: m bf16 [T, O], z f32 [T, r], g f32 [O, r] or (transposed) [r, O].
// With more than one token split the blocks write partials (NaN before, so every one must be written) and
// lora_finalize adds them; with one, the kernel adds into g and gets g as its scratch pointer, as the host passes.
static bool gradientCase(int r, int T, int O, bool transposed, int misalign, int multiprocessors) {
    const int R = paddedRank(r), vo = 64 / R, tiles = (O + 32 * vo - 1) / (32 * vo);
    const Split chunks = tokenSplit(T, tiles, multiprocessors);
    const float alpha = 0.61f;
    const long long count = (long long)O * r;
    Guarded<storage_t> m(bf16Values((size_t)T * O, -1, 1), nanBF16, misalign);
    Guarded<float> z(f32Values((size_t)T * r, -1, 1), nanF32), g(f32Values(count, -1, 1), nanF32);
    Guarded<float> part(std::vector<float>(chunks.count > 1 ? chunks.count * count : 0, nanF32), nanF32);
    const int vec = aligned(m.data(), O, vo);
    const int finalizeBlocks = std::max(1LL, std::min((count + 255) / 256, (long long)multiprocessors * 8));
    const auto kernel = byRank(R, lora_gradient_r16, lora_gradient_r32, lora_gradient_r64);
    auto once = [&] {
        g.reset(); part.reset();
        float* scratch = chunks.count > 1 ? part.data() : g.data();
        launch({tiles, chunks.count, 1}, loraThreads, [&] {
            kernel(m.data(), z.data(), scratch, g.data(), alpha, T, O, r, chunks.piece, vec, transposed);
        });
        if (chunks.count > 1)
            launch({finalizeBlocks, 1, 1}, 256, [&] { lora_finalize(part.data(), chunks.count, count, alpha, g.data()); });
        auto bits = g.all; bits.insert(bits.end(), part.all.begin(), part.all.end());
        return bits;
    };
    const auto first = once();
    const bool rerunSame = sameBits(first, once());
    F32Check check;
    for (int o = 0; o < O; o++) for (int j = 0; j < r; j++) {
        double sum = 0, magnitude = 0;
        for (int t = 0; t < T; t++) {
            const double p = (double)to_f32(m[(size_t)t * O + o]) * z[(size_t)t * r + j];
            sum += p; magnitude += fabs(p);
        }
        const size_t at = transposed ? (size_t)j * O + o : (size_t)o * r + j;
        const double base = g.start(at);
        check.add(g[at], base + alpha * sum, gamma(T + 2) * (fabs(base) + fabs(alpha) * magnitude));
    }
    char params[200], finalize[64] = "";
    if (chunks.count > 1) snprintf(finalize, sizeof finalize, ", finalize %d×256 over %lld", finalizeBlocks, count);
    snprintf(params, sizeof params, "r %2d (R %2d)  T %4d  O %3d  g %s  vec %d  grid %d×%d (%d SMs: %d split(s) of %d%s)", r, R, T,
             O, transposed ? "[r, O]" : "[O, r]", vec, tiles, chunks.count, multiprocessors, chunks.count, chunks.piece, finalize);
    return verdict("gradient", params, check.ok(), rerunSame,
                   g.marginsIntact() && part.marginsIntact() && m.unchanged() && z.unchanged(), [&] { check.print(); });
}

int main() {
    bool ok = true;
    // rows per down block: 16, 8, 4 (R 16, 32, 64); chunks of k: 256 (E 8) or 128 (E 4, R 64); vectors need K % E == 0
    ok &= downCase(1, 37, 200, false, 0);       // vector path, one partial k chunk
    ok &= downCase(5, 70, 203, true, 0);        // odd K: element loads, zeros past K
    ok &= downCase(8, 45, 264, true, 0);        // vector path, a second chunk of 8 k
    ok &= downCase(16, 33, 200, false, 1);      // K % 8 == 0 but x misaligned: no vectors
    ok &= downCase(17, 50, 300, true, 0);       // R 32, K % 8 == 4: element loads
    ok &= downCase(32, 41, 520, false, 0);      // R 32, vector path over three chunks
    ok &= downCase(33, 23, 300, false, 0);      // R 64, E 4 vector path (300 % 4 == 0), three chunks, the last partial
    ok &= downCase(maxRank, 19, 130, true, 0);  // R 64, K % 4 == 2: element loads
    ok &= downCase(maxRank, 21, 256, false, 0);
    // features per up_add block: 128, 64, 32 (VO 4, 2, 1); rows per block: 256, 128, 64
    ok &= upAddCase(1, 300, 200, false, 0);     // VO 4 vectors, two row blocks, a partial feature block
    ok &= upAddCase(5, 90, 203, true, 0);       // odd O: element path and its tail
    ok &= upAddCase(8, 70, 202, true, 0);       // O % 4 == 2: element path
    ok &= upAddCase(16, 40, 200, false, 1);     // O % 4 == 0 but y misaligned
    ok &= upAddCase(17, 150, 202, false, 0);    // R 32: VO 2 vectors, two row blocks
    ok &= upAddCase(32, 60, 203, true, 0);      // VO 2 element path, the last lane's pair cut
    ok &= upAddCase(33, 150, 100, false, 0);    // R 64: VO 1, three row blocks
    ok &= upAddCase(maxRank, 70, 75, true, 0);
    // gradient: splits only from 512 tokens (each at least 256); z pieces of 256, 128, 64 rows a block
    ok &= gradientCase(1, 100, 200, false, 0, h100Multiprocessors);      // one split: straight into g
    ok &= gradientCase(5, 600, 203, true, 0, h100Multiprocessors);       // two splits: finalize's tail loop only
    ok &= gradientCase(8, 1300, 200, false, 0, h100Multiprocessors);     // five: finalize's four-wide loop and tail; two z pieces a block
    ok &= gradientCase(16, 300, 130, true, 1, h100Multiprocessors);      // m misaligned
    ok &= gradientCase(17, 700, 202, false, 0, h100Multiprocessors);     // R 32, VO 2 vectors, two splits
    ok &= gradientCase(32, 300, 203, true, 0, h100Multiprocessors);      // VO 2 element path
    ok &= gradientCase(33, 1100, 70, false, 0, h100Multiprocessors);     // R 64, four splits: the four-wide loop only
    ok &= gradientCase(maxRank, 530, 90, true, 0, 2);                     // two splits; finalize's grid too small: a stride turn
    ok &= gradientCase(maxRank, 260, 100, false, 0, h100Multiprocessors); // one split, five z pieces
    printf(ok ? "all LoRA emulation checks passed\n" : "SOME LoRA EMULATION CHECKS FAILED\n");
    return ok ? 0 : 1;
}
