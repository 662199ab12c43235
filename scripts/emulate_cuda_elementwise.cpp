// The elementwise CUDA kernels (ElementwiseKernels.swift: add, bias, scale, multiply, conversions, random fill,
// dropout, embedding gather and scatter-add), RoPE (RoPEKernels.swift: forward and inverse, eight-wide and scalar)
// and the column copies (ColumnCopyKernels.swift) on the CPU (cuda_emulation.h), with the host's launch geometry,
// against plain loops that state the CPU backend's semantics (CPU/Elementwise.swift, Embedding.swift, RoPE.swift,
// ColumnCopy.swift; bf16 as DType.swift's BFloat16): bit for bit where the op is a copy or one rounding of an exact
// value, else against double. Every output is poisoned first (and guarded on both sides): elements a kernel must
// not write have to keep the poison. Run scripts/emulate_cuda_elementwise.sh.
#include "cuda_emulation.h"

#include <bit>
#include <cfloat>
#include <cstdint>

static std::mt19937 gen(2718);

// ---- bf16 as BFloat16 (DType.swift) defines it, through values rather than the kernels' bit tricks

// The value of bf16 bits as a double. Exponent 255 with mantissa 0 reads as 2^128: the point past the largest
// finite bf16 that rounding to nearest measures against (what rounds there becomes infinity).
static double bf16Value(uint16_t b) {
    const int exponent = (b >> 7) & 0xFF, mantissa = b & 0x7F;
    const double magnitude = exponent == 0 ? std::ldexp(mantissa, -133) : std::ldexp(128 + mantissa, exponent - 134);
    return b & 0x8000 ? -magnitude : magnitude;
}

// Round to nearest, ties to even; any NaN becomes 0x7FC0: the nearer of the two bf16 values around f.
static uint16_t bf16Nearest(float f) {
    if (std::isnan(f)) return 0x7FC0;
    if (std::isinf(f)) return f > 0 ? 0x7F80 : 0xFF80;
    const uint32_t u = std::bit_cast<uint32_t>(f);
    const uint16_t towardZero = u >> 16, awayFromZero = towardZero + 1;
    if ((u & 0xFFFF) == 0) return towardZero;
    const double below = fabs(f) - fabs(bf16Value(towardZero)), above = fabs(bf16Value(awayFromZero)) - fabs(f);
    if (below != above) return below < above ? towardZero : awayFromZero;
    return towardZero & 1 ? awayFromZero : towardZero;
}

// The f32 bits of a bf16 (widening is exact; a NaN keeps its payload, as BFloat16.float shifts the bits).
static uint32_t f32BitsOfBF16(uint16_t b) {
    if ((b & 0x7F80) == 0x7F80) return b & 0x7F ? (uint32_t)b << 16 : (b & 0x8000 ? 0xFF800000u : 0x7F800000u);
    return std::bit_cast<uint32_t>((float)bf16Value(b));
}

// One bf16 ulp at |x|'s binade (the subnormal spacing below 2^-126).
static double ulpBF16(double x) {
    const double a = fabs(x);
    return a < 0x1p-126 ? 0x1p-133 : std::ldexp(1.0, std::ilogb(a) - 7);
}

// ---- tensors: the element types, guarded memory, random values

static double value(storage_t b) { return to_f32(b); }
static double value(float f) { return f; }
static uint32_t bitsOf(float f) { return std::bit_cast<uint32_t>(f); }
static uint32_t bitsOf(unsigned short b) { return b; }
static uint32_t bitsOf(unsigned int b) { return b; }

template <class T> static T stored(float f);
template <> storage_t stored(float f) { return to_storage(f); }
template <> float stored(float f) { return f; }

// Values of both signs and magnitudes 2^-6 … 2^6, in the tensor's type.
template <class T> static std::vector<T> randomValues(size_t n) {
    std::uniform_real_distribution<float> u(-1, 1);
    std::uniform_int_distribution<int> exponent(-6, 6);
    std::vector<T> v(n);
    for (auto& x : v) x = stored<T>(std::ldexp(u(gen), exponent(gen)));
    return v;
}

// The type's value of an exact result that f32 math rounds once (a product of two f32 values is exact in
// double): the f32 rounding, then bf16's for 16-bit storage.
template <class T> static T roundedOnce(double exact);
template <> float roundedOnce(double exact) { return (float)exact; }
template <> storage_t roundedOnce(double exact) { return bf16Nearest((float)exact); }

// ---- measuring

// A case's verdict: elements outside their bound (a wrong bit, NaN, a poisoned element overwritten or left
// poisoned) and the worst error of each kind of comparison it made (-1: not made).
struct Errors {
    long long checked = 0, wrong = 0;
    double worstUlp = -1, worstSlack = -1, worstRel = -1;
    void bits(uint32_t gpu, uint32_t reference) { checked++; wrong += gpu != reference; }
    // a bf16 result of f32 math: one rounding of the exact value (half a bf16 ulp) plus the f32 roundings
    // before it (1e-6 of the terms' magnitude: a few 2^-24, on the GPU one fewer where it fuses a multiply-add)
    void near(storage_t gpu, double reference, double terms) {
        const double g = to_f32(gpu), error = fabs(g - reference), rounding = 0.5 * ulpBF16(reference), slack = 1e-6 * terms;
        checked++;
        wrong += !(std::isfinite(g) && error <= rounding + slack);
        worstUlp = std::max(worstUlp, error / ulpBF16(reference));  // above ½ only where the terms cancel
        worstSlack = std::max(worstSlack, std::max(0.0, error - rounding) / std::max(slack, 1e-300));
    }
    // an f32 result: within 1e-6 of the terms' magnitude
    void near(float gpu, double reference, double terms) {
        const double error = fabs((double)gpu - reference);
        checked++;
        wrong += !(std::isfinite(gpu) && error <= 1e-6 * terms);
        worstRel = std::max(worstRel, error / std::max(terms, 1e-300));
    }
    template <class T> void guards(const Guarded<T>& b) { checked += b.marginElements(); wrong += b.marginsChanged(); }
    template <class T> void unchanged(const std::vector<T>& now, const std::vector<T>& before) {
        for (size_t i = 0; i < now.size(); i++) bits(bitsOf(now[i]), bitsOf(before[i]));
    }
};

static bool report(const char* label, const Errors& e) {
    char measured[128];
    int at = snprintf(measured, sizeof measured, "wrong %lld of %lld", e.wrong, e.checked);
    if (e.worstUlp >= 0) at += snprintf(measured + at, sizeof measured - at, ", max %.3f bf16 ulp, %.2f of the f32 slack", e.worstUlp, e.worstSlack);
    if (e.worstRel >= 0) snprintf(measured + at, sizeof measured - at, ", max rel %.1e", e.worstRel);
    const bool ok = e.wrong == 0 && e.checked > 0;
    int width = 0;  // in characters: × is two bytes
    for (const char* c = label; *c; c++) width += (*c & 0xC0) != 0x80;
    printf("%s%*s %-56s %s\n", label, std::max(0, 92 - width), "", measured, ok ? "PASS" : "FAIL");
    return ok;
}

// ---- launching as CUDABackend.launchElementwise does

// Grid::host: launchElementwise's geometry, 256 threads and ceil(count / 256) blocks up to multiprocessors × 16
// (132 SMs on an H100 SXM: a cap far above these sizes, so each thread takes at most one element). Grid::capped:
// a third of those blocks, as the cap makes for tensors past 2^19 elements: every thread loops.
enum class Grid { host, capped };
static constexpr int threadsPerBlock = 256, multiprocessors = 132;

template <class F> static int launchElementwise(long long count, Grid grid, F body) {
    const int host = (int)std::min<long long>((count + threadsPerBlock - 1) / threadsPerBlock, multiprocessors * 16);
    const int blocks = grid == Grid::host ? host : std::max(1, host / 3);
    launch({blocks, 1, 1}, threadsPerBlock, body);
    return blocks;
}

// ---- ElementwiseKernels.swift

// y += alpha·x (CPU add): two f32 roundings before the store, so measured against double.
template <class X, class Y>
static bool addCase(const char* kernel, void (*add)(const X*, Y*, float, long long), long long n, float alpha, bool vectors, Grid grid) {
    const auto x = randomValues<X>(n);
    const auto y0 = randomValues<Y>(n);
    Guarded<X> xs(x); Guarded<Y> ys(y0);
    const int blocks = launchElementwise(vectors ? n / 8 : n, grid, [&] { add(xs.data(), ys.data(), alpha, n); });
    Errors e;
    for (long long i = 0; i < n; i++)
        e.near(ys[i], value(y0[i]) + alpha * value(x[i]), fabs(value(y0[i])) + fabs(alpha * value(x[i])));
    e.unchanged(xs.values(), x); e.guards(ys);
    char label[128]; snprintf(label, sizeof label, "%-22s n %lld, alpha %g, grid %d×256", kernel, n, alpha, blocks);
    return report(label, e);
}

// x[r, j] += bias[j] (CPU addBias): one rounding to f32 (two bf16 values this close in magnitude add exactly in
// double), then bf16's. Bit for bit.
static bool addBiasCase(int rows, int width, Grid grid) {
    const auto bias = randomValues<storage_t>(width), x0 = randomValues<storage_t>((size_t)rows * width);
    Guarded<storage_t> biases(bias), x(x0);
    const long long n = (long long)rows * width;
    const int blocks = launchElementwise(n, grid, [&] { add_bias_16(biases.data(), x.data(), width, n); });
    Errors e;
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < width; j++)
            e.bits(x[r * width + j], roundedOnce<storage_t>(value(x0[r * width + j]) + value(bias[j])));
    e.unchanged(biases.values(), bias); e.guards(x);
    char label[128]; snprintf(label, sizeof label, "%-22s %d rows × %d, grid %d×256", "add_bias_16", rows, width, blocks);
    return report(label, e);
}

// x *= factor (CPU scale): one rounding of the exact product, so bit for bit.
template <class T> static bool scaleCase(const char* kernel, void (*scale)(T*, float, long long), long long n, float factor, Grid grid) {
    const auto x0 = randomValues<T>(n);
    Guarded<T> x(x0);
    const int blocks = launchElementwise(n, grid, [&] { scale(x.data(), factor, n); });
    Errors e;
    for (long long i = 0; i < n; i++) e.bits(bitsOf(x[i]), bitsOf(roundedOnce<T>(value(x0[i]) * factor)));
    e.guards(x);
    char label[128]; snprintf(label, sizeof label, "%-22s n %lld, factor %g, grid %d×256", kernel, n, factor, blocks);
    return report(label, e);
}

// x *= y elementwise (CPU multiply; the LoRA dropout mask's backward): one rounding, bit for bit.
template <class T> static bool multiplyCase(const char* kernel, void (*multiply)(T*, const T*, long long), long long n, Grid grid) {
    const auto x0 = randomValues<T>(n), y = randomValues<T>(n);
    Guarded<T> x(x0), ys(y);
    const int blocks = launchElementwise(n, grid, [&] { multiply(x.data(), ys.data(), n); });
    Errors e;
    for (long long i = 0; i < n; i++) e.bits(bitsOf(x[i]), bitsOf(roundedOnce<T>(value(x0[i]) * value(y[i]))));
    e.unchanged(ys.values(), y); e.guards(x);
    char label[128]; snprintf(label, sizeof label, "%-22s n %lld, grid %d×256", kernel, n, blocks);
    return report(label, e);
}

// f32 → bf16 (CUDABackend.convert, the CPU's BFloat16.bits): the special values, ties both ways, values that
// overflow to infinity, subnormals, then random bit patterns. Bit for bit.
static bool convertToStorageCase(Grid grid) {
    std::vector<float> x = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, std::bit_cast<float>(0x7F800001u),
                            std::bit_cast<float>(0xFFC12345u), FLT_MAX, -FLT_MAX, 0x1.FEp127f, -0x1.FFp127f,
                            std::bit_cast<float>(0x7F7F8000u), std::bit_cast<float>(0x7F7F7FFFu), FLT_MIN, FLT_TRUE_MIN,
                            std::bit_cast<float>(0x00018000u), std::bit_cast<float>(0x80008000u), 1.0f, -1.0f};
    std::uniform_int_distribution<uint32_t> bits32;
    for (int k = 0; k < 64; k++) {  // exact ties between bf16 neighbours, the one toward zero even and odd
        uint32_t upper;
        do upper = bits32(gen) >> 16; while ((upper & 0x7F80) == 0x7F80);  // finite
        const uint32_t tie = upper << 16 | 0x8000u;
        x.push_back(std::bit_cast<float>(tie)); x.push_back(std::bit_cast<float>(tie ^ 0x10000u));
    }
    while (x.size() < 2001) x.push_back(std::bit_cast<float>(bits32(gen)));  // NaNs with random payloads among them
    const long long n = x.size();
    Guarded<float> xs(x); Guarded<storage_t> y(n);
    const int blocks = launchElementwise(n, grid, [&] { convert_f32_16(xs.data(), y.data(), n); });
    Errors e;
    for (long long i = 0; i < n; i++) e.bits(y[i], bf16Nearest(x[i]));
    e.guards(y);
    char label[128]; snprintf(label, sizeof label, "%-22s n %lld (specials, ties, overflow), grid %d×256", "convert_f32_16", n, blocks);
    return report(label, e);
}

// bf16 → f32: exact widening, NaN payloads kept. `n` of all 65536 patterns, in order.
static bool convertFromStorageCase(long long n, Grid grid) {
    std::vector<storage_t> x(n);
    for (long long i = 0; i < n; i++) x[i] = (storage_t)(n == 65536 ? i : gen());
    Guarded<storage_t> xs(x); Guarded<float> y(n);
    const int blocks = launchElementwise(n, grid, [&] { convert_16_f32(xs.data(), y.data(), n); });
    Errors e;
    for (long long i = 0; i < n; i++) e.bits(bitsOf(y[i]), f32BitsOfBF16(x[i]));
    e.guards(y);
    char label[128];
    snprintf(label, sizeof label, "%-22s n %lld (%s), grid %d×256", "convert_16_f32", n, n == 65536 ? "every bf16" : "random bits", blocks);
    return report(label, e);
}

// CounterHash.unit (CPU/Elementwise.swift): SplitMix64 of seed + (index + 1)·golden ratio, its top 24 bits.
static double counterUnit(uint64_t seed, uint64_t index) {
    uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return std::ldexp((double)(z >> 40), -24);
}

// x[i] = (2·unit − 1)·bound (CPU fillUniform): 2·unit − 1 is exact in f32, the product rounds once. Bit for bit.
template <class T> static bool fillCase(const char* kernel, void (*fill)(T*, unsigned long long, float, long long), long long n,
                                        uint64_t seed, float bound, Grid grid) {
    Guarded<T> x(n);
    const int blocks = launchElementwise(n, grid, [&] { fill(x.data(), seed, bound, n); });
    Errors e;
    for (long long i = 0; i < n; i++) e.bits(bitsOf(x[i]), bitsOf(roundedOnce<T>((2 * counterUnit(seed, i) - 1) * bound)));
    e.guards(x);
    char label[128];
    snprintf(label, sizeof label, "%-22s n %lld, seed %#llx, bound %g, grid %d×256", kernel, n, (unsigned long long)seed, bound, blocks);
    return report(label, e);
}

// CPU dropout: mask = unit ≥ p ? 1 / (1 − p) : 0 with keep computed in f32 as the CPU does, stored in the
// tensor's type; x *= the unrounded mask (one rounding). Bit for bit, mask and x.
template <class T> static bool dropoutCase(const char* kernel, void (*dropout)(T*, T*, float, unsigned long long, long long),
                                           long long n, float p, uint64_t seed, Grid grid) {
    const auto x0 = randomValues<T>(n);
    Guarded<T> x(x0), mask(n);
    const int blocks = launchElementwise(n, grid, [&] { dropout(x.data(), mask.data(), p, seed, n); });
    const float keep = 1.0f / (1.0f - p);
    Errors e;
    long long dropped = 0;
    for (long long i = 0; i < n; i++) {
        const double m = counterUnit(seed, i) >= p ? keep : 0.0;
        dropped += m == 0;
        e.bits(bitsOf(mask[i]), bitsOf(roundedOnce<T>(m)));
        e.bits(bitsOf(x[i]), bitsOf(roundedOnce<T>(value(x0[i]) * m)));
    }
    e.guards(x); e.guards(mask);
    char label[128];
    snprintf(label, sizeof label, "%-22s n %lld, p %g (%.3f dropped), seed %#llx, grid %d×256", kernel, n, p,
             (double)dropped / n, (unsigned long long)seed, blocks);
    return report(label, e);
}

// Token ids with repeats, the first and the last row of the vocabulary among them.
static std::vector<int> tokenIds(int tokens, int vocab) {
    std::vector<int> ids(tokens);
    for (int t = 0; t < tokens; t++) ids[t] = t % 4 == 1 ? ids[t - 1] : (int)(gen() % vocab);
    ids[0] = 0; ids[tokens - 1] = vocab - 1;
    return ids;
}

// out[t] = table[ids[t]] (CPU embedding): a gather, bit for bit; every element of out written.
static bool embeddingCase(int vocab, int width, int tokens, Grid grid) {
    const auto table = randomValues<storage_t>((size_t)vocab * width);
    const auto ids = tokenIds(tokens, vocab);
    Guarded<storage_t> tables(table), out((size_t)tokens * width);
    Guarded<int> idBuffer(ids);
    const int blocks = launchElementwise((long long)tokens * width, grid,
                                         [&] { embedding_16(tables.data(), idBuffer.data(), out.data(), width, tokens); });
    Errors e;
    for (int t = 0; t < tokens; t++)
        for (int j = 0; j < width; j++) e.bits(out[(size_t)t * width + j], table[(size_t)ids[t] * width + j]);
    e.unchanged(tables.values(), table); e.guards(out);
    char label[128]; snprintf(label, sizeof label, "%-22s vocab %d × %d, %d tokens (repeats), grid %d×256", "embedding_16", vocab, width, tokens, blocks);
    return report(label, e);
}

// dTable[ids[t]] += dOut[t] (CPU embeddingBackward, f32 table; atomics, so in any order): against double;
// rows no token names keep their bits.
static bool embeddingBackwardCase(int vocab, int width, int tokens, Grid grid) {
    const auto dOut = randomValues<storage_t>((size_t)tokens * width);
    const auto table0 = randomValues<float>((size_t)vocab * width);
    const auto ids = tokenIds(tokens, vocab);
    Guarded<storage_t> dOuts(dOut); Guarded<float> dTable(table0);
    Guarded<int> idBuffer(ids);
    const int blocks = launchElementwise((long long)tokens * width, grid,
                                         [&] { embedding_backward_f32(dOuts.data(), idBuffer.data(), dTable.data(), width, tokens); });
    std::vector<double> sum(table0.begin(), table0.end()), terms(sum.size());
    for (size_t i = 0; i < sum.size(); i++) terms[i] = fabs(sum[i]);
    std::vector<bool> named(vocab);
    for (int t = 0; t < tokens; t++) {
        named[ids[t]] = true;
        for (int j = 0; j < width; j++) {
            sum[(size_t)ids[t] * width + j] += value(dOut[(size_t)t * width + j]);
            terms[(size_t)ids[t] * width + j] += fabs(value(dOut[(size_t)t * width + j]));
        }
    }
    Errors e;
    for (int v = 0; v < vocab; v++)
        for (int j = 0; j < width; j++) {
            const size_t i = (size_t)v * width + j;
            if (named[v]) e.near(dTable[i], sum[i], terms[i]);
            else e.bits(bitsOf(dTable[i]), bitsOf(table0[i]));
        }
    e.unchanged(dOuts.values(), dOut); e.guards(dTable);
    char label[128];
    snprintf(label, sizeof label, "%-22s vocab %d × %d, %d tokens (repeats), grid %d×256", "embedding_backward_f32", vocab, width, tokens, blocks);
    return report(label, e);
}

// ---- RoPEKernels.swift

// cos and sin tables [positions, half] f32 of random angles (random, so that a wrong table entry shows; the
// kernels take any table) times an attention scale (longrope's makes it ≠ 1).
struct RoPETable { std::vector<float> cos, sin; };
static RoPETable ropeTable(int positions, int half, float scale) {
    std::uniform_real_distribution<double> angle(-M_PI, M_PI);
    RoPETable t{std::vector<float>((size_t)positions * half), std::vector<float>((size_t)positions * half)};
    for (size_t k = 0; k < t.cos.size(); k++) {
        const double a = angle(gen);
        t.cos[k] = (float)(cos(a) * scale); t.sin[k] = (float)(sin(a) * scale);
    }
    return t;
}

// The rotation (CPU RoPEKernel.apply, half-split layout) of x [tokens, heads·headDim], in place, in double:
// for i < half, (a, b) = (x[i], x[i + half]) ← (a·c − b·s, b·c + a·s), s = sign · sin.
static void rotateReference(const std::vector<storage_t>& x, const std::vector<int>& positions, const RoPETable& t, int heads,
                            int headDim, double sign, std::vector<double>& out, std::vector<double>& terms) {
    const int half = headDim / 2;
    out.assign(x.size(), 0); terms.assign(x.size(), 0);
    for (size_t n = 0; n < positions.size(); n++)
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < half; i++) {
                const size_t first = (n * heads + h) * headDim + i, second = first + half, entry = (size_t)positions[n] * half + i;
                const double a = value(x[first]), b = value(x[second]), c = t.cos[entry], s = sign * t.sin[entry];
                out[first] = a * c - b * s; terms[first] = fabs(a * c) + fabs(b * s);
                out[second] = b * c + a * s; terms[second] = fabs(b * c) + fabs(a * s);
            }
}

// The decoder's forward rotation of q or k, then its backward (the inverse rotation, in place on the
// result, as dQ / dK), each against double. The host picks the kernel: eight-wide where headDim % 16 == 0
// and x and the tables are 16-byte aligned; `unaligned` moves x one element along (a tensor that is not
// aligned), which must take the scalar kernel.
static bool ropeCase(int heads, int headDim, const std::vector<int>& positions, float scale, bool unaligned, Grid grid) {
    const int half = headDim / 2, tokens = positions.size();
    const size_t n = (size_t)tokens * heads * headDim;
    const RoPETable table = ropeTable(*std::max_element(positions.begin(), positions.end()) + 3, half, scale);
    Guarded<float> cosines(table.cos), sines(table.sin);
    Guarded<int> positionBuffer(positions);
    Guarded<storage_t> memory(n + 1);  // x is n elements at offset 0 or 1; the other one must stay poisoned
    storage_t* x = memory.data() + (unaligned ? 1 : 0);
    std::vector<storage_t> x0 = randomValues<storage_t>(n);
    std::copy(x0.begin(), x0.end(), x);
    const bool vectors = headDim % 16 == 0 && (uintptr_t)x % 16 == 0 && (uintptr_t)cosines.data() % 16 == 0 &&
                         (uintptr_t)sines.data() % 16 == 0;
    const char* kernel = vectors ? "rope_16_v8" : "rope_16";
    const long long count = (long long)tokens * heads * headDim / (vectors ? 16 : 2);
    Errors e;
    int blocks = 0;
    for (const double sign : {1.0, -1.0}) {
        std::vector<double> reference, terms;
        rotateReference(x0, positions, table, heads, headDim, sign, reference, terms);
        blocks = launchElementwise(count, grid, [&] {
            (vectors ? rope_16_v8 : rope_16)(x, positionBuffer.data(), cosines.data(), sines.data(), heads, headDim,
                                           tokens, (float)sign);
        });
        for (size_t i = 0; i < n; i++) e.near(x[i], reference[i], terms[i]);
        x0.assign(x, x + n);  // the inverse rotates the forward's result
    }
    e.bits(bitsOf(memory[unaligned ? 0 : n]), poison<storage_t>());
    e.guards(memory);
    char label[128];
    snprintf(label, sizeof label, "%-22s %d heads × %d, %d tokens%s, scale %g, forward + inverse, grid %d×256", kernel, heads, headDim,
             tokens, unaligned ? " (x unaligned)" : "", scale, blocks);
    return report(label, e);
}

// Positions per token: packed sequences restarting at 0, or a decode step's scattered cache positions.
static std::vector<int> packedPositions(std::initializer_list<int> lengths) {
    std::vector<int> p;
    for (int length : lengths) for (int i = 0; i < length; i++) p.push_back(i);
    return p;
}

// ---- ColumnCopyKernels.swift

template <class T>
using ColumnCopy = void (*)(const T*, long long, long long, T*, long long, long long, long long, long long);

// Columns [srcColumn, srcColumn + width) of src [rows, srcColumns] into [dstColumn, …) of dst [rows, dstColumns]
// (CPU copyColumns: a memcpy per row): those bits moved exactly, every other element of dst as it was.
template <class T> static void copyColumnsChecked(ColumnCopy<T> copy, Guarded<T>& src, int srcColumns, int srcColumn, Guarded<T>& dst,
                                                  int dstColumns, int dstColumn, int width, int rows, Grid grid, Errors& e) {
    const auto before = dst.values(), source = src.values();
    launchElementwise((long long)rows * width, grid,
                      [&] { copy(src.data(), srcColumns, srcColumn, dst.data(), dstColumns, dstColumn, width, rows); });
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < dstColumns; c++) {
            const size_t at = (size_t)r * dstColumns + c;
            const bool copied = c >= dstColumn && c < dstColumn + width;
            e.bits(bitsOf(dst[at]), bitsOf(copied ? source[(size_t)r * srcColumns + srcColumn + c - dstColumn] : before[at]));
        }
    e.unchanged(src.values(), source); e.guards(dst);
}

template <class T> static std::vector<T> randomBits(size_t n) {
    std::vector<T> v(n);
    for (auto& x : v) x = (T)gen();  // every pattern, NaNs included: a copy moves bits
    return v;
}

// A fused projection's output (Phi-3's qkv_proj: q | k | v side by side) split into its parts and the parts
// concatenated back into a poisoned matrix (ProjectionGroup's forward and backward), as the Swift code does.
template <class T> static bool fusedProjectionCase(const char* kernel, ColumnCopy<T> copy, int rows, std::vector<int> widths, Grid grid) {
    int columns = 0;
    for (int w : widths) columns += w;
    Guarded<T> fused(randomBits<T>((size_t)rows * columns)), back((size_t)rows * columns);
    Errors e;
    int column = 0;
    for (int w : widths) {
        Guarded<T> part((size_t)rows * w);
        copyColumnsChecked(copy, fused, columns, column, part, w, 0, w, rows, grid, e);
        copyColumnsChecked(copy, part, w, 0, back, columns, column, w, rows, grid, e);
        column += w;
    }
    e.unchanged(back.values(), fused.values());
    char label[128], parts[32] = "";
    for (size_t k = 0; k < widths.size(); k++) snprintf(parts + strlen(parts), sizeof parts - strlen(parts), k ? " | %d" : "%d", widths[k]);
    snprintf(label, sizeof label, "%-22s %d rows, split into %s and concatenated back%s", kernel, rows, parts,
             grid == Grid::capped ? ", capped grid" : "");
    return report(label, e);
}

// A block of columns between two wider matrices, both offsets inside a row.
template <class T> static bool columnBlockCase(const char* kernel, ColumnCopy<T> copy, int rows, int srcColumns, int srcColumn,
                                               int dstColumns, int dstColumn, int width, Grid grid) {
    Guarded<T> src(randomBits<T>((size_t)rows * srcColumns)), dst((size_t)rows * dstColumns);
    Errors e;
    copyColumnsChecked(copy, src, srcColumns, srcColumn, dst, dstColumns, dstColumn, width, rows, grid, e);
    char label[128];
    snprintf(label, sizeof label, "%-22s %d rows: columns %d..<%d of %d into %d..<%d of %d%s", kernel, rows, srcColumn, srcColumn + width,
             srcColumns, dstColumn, dstColumn + width, dstColumns, grid == Grid::capped ? ", capped grid" : "");
    return report(label, e);
}

int main() {
    bool ok = true;
    // Every elementwise kernel twice: on the host's grid, then on a capped one with other sizes, factors and seeds.
    for (Grid grid : {Grid::host, Grid::capped}) {
        const float alpha = grid == Grid::host ? -2.0f : 0.5f;
        ok &= addCase<storage_t, storage_t>("add_16", add_16, 3003, alpha, false, grid);
        ok &= addCase<storage_t, storage_t>("add_16_v8", add_16_v8, 8 * 333, grid == Grid::host ? 1.0f : alpha, true, grid);
        ok &= addCase<float, float>("add_f32", add_f32, 3003, alpha, false, grid);
        ok &= addCase<float, storage_t>("add_f32_to_16", add_f32_to_16, 3003, 2.0f, false, grid);
        ok &= grid == Grid::host ? addBiasCase(9, 37, grid) : addBiasCase(13, 256, grid);
        ok &= scaleCase<storage_t>("scale_16", scale_16, 3003, grid == Grid::host ? 45.254833f : 3.0f, grid);
        ok &= scaleCase<float>("scale_f32", scale_f32, 3003, grid == Grid::host ? 0.125f : -3.0f, grid);
        ok &= multiplyCase<storage_t>("multiply_16", multiply_16, 3003, grid);
        ok &= multiplyCase<float>("multiply_f32", multiply_f32, 3003, grid);
        ok &= convertToStorageCase(grid);
        ok &= grid == Grid::host ? convertFromStorageCase(1001, grid) : convertFromStorageCase(65536, grid);
        // the second seed has its high bits set (a seed cut to 32 bits would show); the second bound is
        // ModelLoading's std · √3 for std 0.02
        const uint64_t seed = grid == Grid::host ? 77 : 0xFFFFFFFFFFFFFF00ull;
        const float bound = grid == Grid::host ? 0.3f : 0.02f * std::sqrt(3.0f);
        ok &= fillCase<storage_t>("fill_uniform_16", fill_uniform_16, 2001, seed, bound, grid);
        ok &= fillCase<float>("fill_uniform_f32", fill_uniform_f32, 2001, seed + 1, bound, grid);
        ok &= dropoutCase<storage_t>("dropout_16", dropout_16, 3003, grid == Grid::host ? 0.25f : 0.05f, seed, grid);
        ok &= dropoutCase<float>("dropout_f32", dropout_f32, 3003, grid == Grid::host ? 0.1f : 0.05f, seed + 4, grid);
        ok &= grid == Grid::host ? embeddingCase(50, 37, 11, grid) : embeddingCase(40, 64, 24, grid);
        ok &= grid == Grid::host ? embeddingBackwardCase(50, 37, 11, grid) : embeddingBackwardCase(40, 64, 24, grid);
    }

    const auto packed = packedPositions({7, 5, 3});
    const std::vector<int> decode = {17, 29, 3, 40};
    ok &= ropeCase(4, 64, packed, 1.0f, false, Grid::host);     // Llama / TinyLlama head dim: eight-wide
    ok &= ropeCase(3, 96, decode, 1.19f, false, Grid::host);    // Phi-3 (longrope's scale): eight-wide, 6 groups
    ok &= ropeCase(2, 128, packed, 1.0f, false, Grid::host);    // k's heads at head dim 128
    ok &= ropeCase(2, 256, decode, 1.0f, false, Grid::host);    // Gemma
    ok &= ropeCase(3, 80, packed, 1.0f, false, Grid::host);     // an odd number (5) of eight-wide groups
    ok &= ropeCase(3, 72, packed, 1.0f, false, Grid::host);     // half 36: the scalar kernel
    ok &= ropeCase(5, 18, decode, 1.0f, false, Grid::host);     // half 9, odd: the scalar kernel
    ok &= ropeCase(4, 64, decode, 1.0f, true, Grid::host);      // x not 16-byte aligned: the scalar kernel
    ok &= ropeCase(8, 128, packedPositions({12, 8}), 1.0f, false, Grid::capped);
    ok &= ropeCase(4, 72, packedPositions({12, 8}), 1.0f, false, Grid::capped);

    for (Grid grid : {Grid::host, Grid::capped}) {
        ok &= fusedProjectionCase<unsigned short>("copy_columns_16", copy_columns_16, 19, {37, 13, 13}, grid);
        ok &= fusedProjectionCase<unsigned int>("copy_columns_32", copy_columns_32, 19, {37, 13, 13}, grid);
    }
    ok &= columnBlockCase<unsigned short>("copy_columns_16", copy_columns_16, 23, 20, 5, 30, 11, 7, Grid::host);
    ok &= columnBlockCase<unsigned int>("copy_columns_32", copy_columns_32, 23, 20, 5, 30, 11, 7, Grid::host);
    ok &= columnBlockCase<unsigned int>("copy_columns_32", copy_columns_32, 41, 64, 33, 40, 1, 31, Grid::capped);

    printf(ok ? "all elementwise emulation checks passed\n" : "SOME ELEMENTWISE EMULATION CHECKS FAILED\n");
    return ok ? 0 : 1;
}
