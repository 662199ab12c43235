// The optimizer step's multi-tensor kernels (MultiTensorKernels.swift, OptimizerKernels.swift,
// AdamW8bitKernels.swift) on the CPU (cuda_emulation.h), each launched over the table exactly as
// MultiTensorTable.swift lays it out, over lists of tensors of different sizes (an empty one, one smaller
// than a block, partial chunks and partial 256-blocks), with guard elements around every operand:
// - mt_sum_squares + mt_sum_partials: the bits of a C++ transcription of their fixed tree, within 1e-12
//   of the CPU's tensor-by-tensor double sum, the same bits on a rerun; inf and NaN propagate;
// - mt_zero: every element +0;
// - mt_adamw, mt_sgd: the bits of a C++ transcription of the kernels' float expressions with the scalars
//   computed as the Swift host code computes them, and within a few ulps of the CPU twins (Train/AdamW.swift,
//   SGD.swift: fused multiply-adds where the kernels have none);
// - mt_adamw8bit_blockwise, mt_adamw8bit_full: the bits (codes, absmax, parameters, f32 state) of a C++
//   transcription of Train/AdamW8bit.swift, with the code books built as Quant/DynamicMap.swift builds them
//   (checked against bitsandbytes' table, Tests/SwiftletTests/Fixtures/bnb/dynamic_map.json).
// The gradient is read times the unscale factor and then the clip coefficient (GradientMultiplier.swift);
// the clip coefficient comes from the emulated norm as LoRAOptimizer.step derives it.
// Run scripts/emulate_cuda_optimizers.sh.
#include <array>
#include <cfloat>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

#include "cuda_emulation.h"

// MultiTensorTables: 8 words a row (7 operand addresses, the count), then one word a chunk (row in the low half).
static_assert(sizeof(mt_row) == 8 * 8 && offsetof(mt_row, n) == 7 * 8, "mt_row layout");
static_assert(sizeof(mt_chunk) == 8 && offsetof(mt_chunk, row) == 0 && offsetof(mt_chunk, index) == 4, "mt_chunk layout");

constexpr int chunkSize = 4096, threads = 256;   // CUDAMultiTensor.chunkSize, .threads
constexpr int block8 = 256;                      // AdamW8bit.blockSize: the blockwise kernel's chunk and block

static std::mt19937 gen(11);
static unsigned bitsOf(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
static uint64_t bitsOf(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }

using Floats = std::vector<Guarded<float>>;
static const float poisonFloat = __uint_as_float(0x7fbadbadu);

static Floats floats(const std::vector<long long>& sizes, float lo, float hi) {
    std::uniform_real_distribution<float> u(lo, hi);
    Floats list;
    for (long long n : sizes) { list.emplace_back(n, poisonFloat); for (long long i = 0; i < n; i++) list.back()[i] = u(gen); }
    return list;
}
static Floats zeros(const std::vector<long long>& sizes) {
    Floats list;
    for (long long n : sizes) { list.emplace_back(n, poisonFloat); for (long long i = 0; i < n; i++) list.back()[i] = 0; }
    return list;
}
static Floats copyOf(const Floats& list) { return list; }
static bool allIntact(const Floats& list) {
    for (auto& t : list) if (!t.marginsIntact()) return false;
    return true;
}

// MultiTensorTables.table: the words uploaded as one buffer of bytes, rows first, the chunks after them, then
// the chunk size (part of the cache key, uploaded with the rest).
struct Table {
    std::vector<unsigned char> bytes; size_t rowWords = 0; int chunkCount = 0;
    const mt_row* rows() const { return (const mt_row*)bytes.data(); }
    const mt_chunk* chunks() const { return (const mt_chunk*)(bytes.data() + rowWords * 8); }
};
static Table makeTable(const std::vector<std::vector<const void*>>& operands, const std::vector<long long>& counts, int chunk) {
    std::vector<uint64_t> words;
    for (size_t r = 0; r < operands.size(); r++) {
        for (auto* p : operands[r]) words.push_back((uint64_t)(uintptr_t)p);
        words.insert(words.end(), 7 - operands[r].size(), 0);
        words.push_back((uint64_t)counts[r]);
    }
    Table t;
    t.rowWords = words.size();
    for (size_t r = 0; r < operands.size(); r++)
        for (long long k = 0; k < (counts[r] + chunk - 1) / chunk; k++)
            words.push_back((uint64_t)(uint32_t)r | (uint64_t)(uint32_t)k << 32);
    t.chunkCount = int(words.size() - t.rowWords);
    words.push_back((uint64_t)chunk);
    t.bytes.resize(words.size() * 8);
    memcpy(t.bytes.data(), words.data(), t.bytes.size());
    return t;
}
// CUDABackend.launchMultiTensor: one block per chunk; nothing when every tensor is empty.
template <class K> static void launchTable(const Table& t, int blockThreads, K kernel) {
    if (t.chunkCount > 0) launch({t.chunkCount, 1, 1}, blockThreads, [&] { kernel(t.rows(), t.chunks()); });
}
static Table tableOf(std::initializer_list<Floats*> lists) {
    std::vector<std::vector<const void*>> operands; std::vector<long long> counts;
    for (size_t r = 0; r < (*lists.begin())->size(); r++) {
        operands.emplace_back();
        for (Floats* l : lists) operands.back().push_back((*l)[r].data());
        counts.push_back((**lists.begin())[r].n);
    }
    return makeTable(operands, counts, chunkSize);
}

static bool report(bool ok, const char* format, ...) __attribute__((format(printf, 2, 3)));
static bool report(bool ok, const char* format, ...) {
    va_list args; va_start(args, format); vprintf(format, args); va_end(args);
    printf("  %s\n", ok ? "PASS" : "FAIL");
    return ok;
}

// ---- The gradient norm ----

// mt_block_sum's tree: each warp's butterfly (lane 0's value), then the 8 warps in order from 0.0.
static double blockTree(const std::vector<double>& perThread) {
    double total = 0.0;
    for (int w = 0; w < threads / 32; w++) {
        double lanes[32];
        for (int l = 0; l < 32; l++) lanes[l] = perThread[w * 32 + l];
        for (int o = 16; o > 0; o >>= 1) {
            double next[32];
            for (int l = 0; l < 32; l++) next[l] = lanes[l] + lanes[l ^ o];
            memcpy(lanes, next, sizeof lanes);
        }
        total += lanes[0];
    }
    return total;
}
// mt_sum_squares then mt_sum_partials, in their order: thread t takes elements t, t+256, … of its chunk.
static double treeSumOfSquares(Floats& x, float factor) {
    std::vector<double> partials;
    for (auto& t : x)
        for (long long begin = 0; begin < t.n; begin += chunkSize) {
            std::vector<double> perThread(threads, 0.0);
            for (long long i = begin; i < std::min(begin + chunkSize, (long long)t.n); i++) {
                const double d = (double)(t[i] * factor);
                perThread[(i - begin) % threads] += d * d;
            }
            partials.push_back(blockTree(perThread));
        }
    std::vector<double> perThread(threads, 0.0);
    for (size_t i = 0; i < partials.size(); i++) perThread[i % threads] += partials[i];
    return blockTree(perThread);
}
// CPUBackend.sumOfSquares (CPU/Elementwise.swift): each tensor in element order, then the tensors in list order.
static double cpuSumOfSquares(Floats& x, float factor) {
    double total = 0;
    for (auto& t : x) {
        double sum = 0;
        for (long long i = 0; i < t.n; i++) { const double d = (double)(t[i] * factor); sum += d * d; }
        total += sum;
    }
    return total;
}
// CUDABackend.sumOfSquares: the two launches; 0 for an all-empty list.
static double gpuSumOfSquares(Floats& x, float factor) {
    const Table table = tableOf({&x});
    if (table.chunkCount == 0) return 0;
    std::vector<double> partials(table.chunkCount, NAN);
    double total = NAN;
    launchTable(table, threads, [&](const mt_row* r, const mt_chunk* c) { mt_sum_squares(r, c, chunkSize, factor, partials.data()); });
    launch({1, 1, 1}, threads, [&] { mt_sum_partials(partials.data(), table.chunkCount, &total); });
    return total;
}

static bool normCase(const char* what, Floats& g, float factor) {
    const double gpu = gpuSumOfSquares(g, factor), again = gpuSumOfSquares(g, factor);
    const double tree = treeSumOfSquares(g, factor), cpu = cpuSumOfSquares(g, factor);
    const double rel = fabs(gpu - cpu) / cpu;
    return report(bitsOf(gpu) == bitsOf(tree) && rel < 1e-12 && bitsOf(again) == bitsOf(gpu) && allIntact(g),
                  "norm %s, factor %g: Σ(g·factor)² = %.17g, tree transcription %s, CPU order rel %.2e (< 1e-12), rerun %s",
                  what, factor, gpu, bitsOf(gpu) == bitsOf(tree) ? "same bits" : "DIFFERENT BITS", rel,
                  bitsOf(again) == bitsOf(gpu) ? "same bits" : "DIFFERENT BITS");
}

// mt_sum_partials alone over more partials than threads (each thread several, strided).
static bool partialsCase(int count) {
    std::uniform_real_distribution<double> u(0, 1000);
    std::vector<double> partials(count);
    for (auto& p : partials) p = u(gen);
    double total = NAN;
    launch({1, 1, 1}, threads, [&] { mt_sum_partials(partials.data(), count, &total); });
    std::vector<double> perThread(threads, 0.0);
    for (int i = 0; i < count; i++) perThread[i % threads] += partials[i];
    long double exact = 0;
    for (double p : partials) exact += p;
    const double rel = fabs((double)(total - exact) / (double)exact);
    return report(bitsOf(total) == bitsOf(blockTree(perThread)) && rel < 1e-12,
                  "mt_sum_partials over %d partials: tree transcription %s, rel to long double %.2e (< 1e-12)", count,
                  bitsOf(total) == bitsOf(blockTree(perThread)) ? "same bits" : "DIFFERENT BITS", rel);
}

// A non-finite gradient makes the norm inf or NaN (the loss scaler's overflow test).
static bool nonFiniteNormCase() {
    Floats g = floats({5000, 37}, -1, 1);
    g[0][4500] = INFINITY;
    const double inf = gpuSumOfSquares(g, 1.0f);
    g[1][3] = NAN;
    const double nan = gpuSumOfSquares(g, 1.0f);
    return report(std::isinf(inf) && inf > 0 && std::isnan(nan), "norm with an inf gradient: %g, with a NaN too: %g", inf, nan);
}

// ---- zero ----

static bool zeroCase(const std::vector<long long>& sizes) {
    Floats x;
    for (long long n : sizes) { x.emplace_back(n, poisonFloat); for (long long i = 0; i < n; i++) x.back()[i] = NAN; }
    launchTable(tableOf({&x}), threads, [&](const mt_row* r, const mt_chunk* c) { mt_zero(r, c, chunkSize); });
    long long wrong = 0, total = 0;
    for (auto& t : x) for (long long i = 0; i < t.n; i++) { wrong += bitsOf(t[i]) != 0; total++; }
    return report(wrong == 0 && allIntact(x), "mt_zero over %zu tensors (NaN before): %lld of %lld not +0, guards %s", sizes.size(),
                  wrong, total, allIntact(x) ? "intact" : "WRITTEN");
}

// ---- AdamW, SGD ----

struct Multiplier { float unscale = 1, clip = 1; };   // GradientMultiplier
static float applied(Multiplier k, float g) { return g * k.unscale * k.clip; }
struct Hyper { float lr, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weightDecay = 0; };   // AdamWHyper

// LoRAOptimizer.step's clip coefficient (GradientClipping.clipCoefficient), applied only below 1.
static float clipFrom(double sumOfSquares, float maxNorm) {
    const double coefficient = (double)maxNorm / (sqrt(sumOfSquares) + 1e-6);
    return coefficient < 1 ? (float)coefficient : 1.0f;
}

// What CUDABackend.adamw passes: the scalars in double as torch computes them, each rounded once.
struct AdamWScalars { float decay, oneMinusBeta1, beta2, oneMinusBeta2, stepSize, bc2Sqrt, eps; };
static AdamWScalars adamwScalars(Hyper h, int step) {
    const double lr = h.lr, b1 = h.beta1, b2 = h.beta2;
    const double bc1 = 1 - pow(b1, (double)step), bc2 = 1 - pow(b2, (double)step);
    return {(float)(1 - lr * (double)h.weightDecay), (float)(1 - b1), h.beta2, (float)(1 - b2), (float)(lr / bc1),
            (float)sqrt(bc2), h.eps};
}

// The largest |a − b| over a list relative to the largest |b|, and how many elements have equal bits.
struct Compare {
    double diff = 0, ref = 0; long long equal = 0, total = 0;
    void add(float a, float b) {
        diff = std::max(diff, fabs((double)a - (double)b)); ref = std::max(ref, (double)fabsf(b));
        equal += bitsOf(a) == bitsOf(b); total++;
    }
    void add(Guarded<float>& a, Guarded<float>& b) { for (long long i = 0; i < a.n; i++) add(a[i], b[i]); }
    double rel() const { return diff / std::max(ref, 1e-30); }
    long long differ() const { return total - equal; }
};

// The twins differ by their fused multiply-adds only: a few ulps of the largest value.
constexpr double twinBound = 0x1p-21;

static bool adamwCase(Floats& p, Floats& g, Floats& m, Floats& v, Multiplier k, Hyper h, int step) {
    Floats p0 = copyOf(p), m0 = copyOf(m), v0 = copyOf(v);
    const AdamWScalars s = adamwScalars(h, step);
    launchTable(tableOf({&p, &g, &m, &v}), threads, [&](const mt_row* r, const mt_chunk* c) {
        mt_adamw(r, c, chunkSize, k.unscale, k.clip, s.decay, s.oneMinusBeta1, s.beta2, s.oneMinusBeta2, s.stepSize, s.bc2Sqrt, s.eps);
    });
    // the kernel's expressions
    Floats pk = copyOf(p0), mk = copyOf(m0), vk = copyOf(v0);
    for (size_t t = 0; t < p.size(); t++)
        for (long long i = 0; i < p[t].n; i++) {
            const float gi = (g[t][i] * k.unscale) * k.clip;
            const float mi = mk[t][i] + s.oneMinusBeta1 * (gi - mk[t][i]);
            const float vi = vk[t][i] * s.beta2 + s.oneMinusBeta2 * gi * gi;
            mk[t][i] = mi; vk[t][i] = vi;
            pk[t][i] = pk[t][i] * s.decay - s.stepSize * mi / (sqrtf(vi) / s.bc2Sqrt + s.eps);
        }
    // the CPU twin, AdamW.update: torch's lerp and addcmul as fused multiply-adds
    Floats pt = copyOf(p0), mt = copyOf(m0), vt = copyOf(v0);
    {
        const double lr = h.lr, beta1 = h.beta1, beta2 = h.beta2, wd = h.weightDecay;
        const double stepSize = lr / (1 - pow(beta1, (double)step)), bias2Sqrt = sqrt(1 - pow(beta2, (double)step));
        const float decay = (float)(1 - lr * wd), w1 = (float)(1 - beta1), oneMinusW1 = 1 - w1, b2 = (float)beta2;
        const float w2 = (float)(1 - beta2), bc2s = (float)bias2Sqrt, eps = h.eps, negStep = (float)(-stepSize);
        for (size_t t = 0; t < p.size(); t++)
            for (long long i = 0; i < p[t].n; i++) {
                const float gi = applied(k, g[t][i]);
                float pi = pt[t][i];
                if (wd != 0) pi = pi * decay;
                const float mi = mt[t][i], diff = gi - mi;
                const float mNew = fabsf(w1) < 0.5f ? fmaf(w1, diff, mi) : fmaf(-oneMinusW1, diff, gi);
                const float vNew = fmaf(w2 * gi, gi, vt[t][i] * b2);
                mt[t][i] = mNew; vt[t][i] = vNew;
                pt[t][i] = pi + (negStep * mNew) / (sqrtf(vNew) / bc2s + eps);
            }
    }
    Compare kernel, twinP, twinM, twinV;
    for (size_t t = 0; t < p.size(); t++) {
        kernel.add(p[t], pk[t]); kernel.add(m[t], mk[t]); kernel.add(v[t], vk[t]);
        twinP.add(p[t], pt[t]); twinM.add(m[t], mt[t]); twinV.add(v[t], vt[t]);
    }
    const bool intact = allIntact(p) && allIntact(m) && allIntact(v);
    const double twin = std::max({twinP.rel(), twinM.rel(), twinV.rel()});
    return report(kernel.differ() == 0 && twin < twinBound && intact,
                  "mt_adamw step %d lr %g wd %g unscale %g clip %.6g: %lld of %lld p/m/v differ from the kernel's expressions; "
                  "CPU twin rel p %.1e m %.1e v %.1e (< %.1e), %.2f%% same bits; guards %s", step, h.lr, h.weightDecay, k.unscale,
                  k.clip, kernel.differ(), kernel.total, twinP.rel(), twinM.rel(), twinV.rel(), twinBound,
                  100.0 * (twinP.equal + twinM.equal + twinV.equal) / (twinP.total + twinM.total + twinV.total),
                  intact ? "intact" : "WRITTEN");
}

static bool sgdCase(Floats& p, Floats& g, Multiplier k, float lr, float weightDecay) {
    Floats p0 = copyOf(p);
    launchTable(tableOf({&p, &g}), threads, [&](const mt_row* r, const mt_chunk* c) {
        mt_sgd(r, c, chunkSize, k.unscale, k.clip, lr, weightDecay);
    });
    Compare kernel, twin;
    const float negLR = (float)(-(double)lr);
    for (size_t t = 0; t < p.size(); t++)
        for (long long i = 0; i < p[t].n; i++) {
            const float gi = (g[t][i] * k.unscale) * k.clip, pi = p0[t][i];
            kernel.add(p[t][i], pi - lr * (gi + weightDecay * pi));
            // SGD.update: add(param, alpha=wd) and add_(g, alpha=-lr) as fused multiply-adds
            const float decayed = weightDecay != 0 ? fmaf(pi, weightDecay, applied(k, g[t][i])) : applied(k, g[t][i]);
            twin.add(p[t][i], fmaf(decayed, negLR, pi));
        }
    return report(kernel.differ() == 0 && twin.rel() < twinBound && allIntact(p),
                  "mt_sgd lr %g wd %g unscale %g clip %.6g: %lld of %lld differ from the kernel's expression; CPU twin rel %.1e "
                  "(< %.1e), %.2f%% same bits; guards %s", lr, weightDecay, k.unscale, k.clip, kernel.differ(), kernel.total,
                  twin.rel(), twinBound, 100.0 * twin.equal / twin.total, allIntact(p) ? "intact" : "WRITTEN");
}

// ---- AdamW8bit ----

// DynamicMap.linspace: torch's float32 linspace, each half with a fused multiply-add.
static std::vector<float> linspace(float start, float end, int count) {
    const float step = (end - start) / (float)(count - 1);
    const int halfway = count / 2;
    std::vector<float> out(count);
    for (int i = 0; i < count; i++) out[i] = i < halfway ? fmaf(step, (float)i, start) : fmaf(-step, (float)(count - i - 1), end);
    return out;
}
// DynamicMap.make(signed:)
static std::array<float, 256> dynamicMap(bool isSigned) {
    std::vector<float> data;
    for (int i = 0; i < 7; i++) {
        const int items = (isSigned ? 1 << i : 1 << (i + 1)) + 1;
        const std::vector<float> boundaries = linspace(0.1f, 1.0f, items);
        const float scale = (float)pow(10.0, (double)(i - 6));
        for (int j = 0; j < items - 1; j++) {
            const float mean = (boundaries[j] + boundaries[j + 1]) / 2;
            data.push_back(scale * mean);
            if (isSigned) data.push_back(-(scale * mean));
        }
    }
    data.push_back(0); data.push_back(1);
    data.resize(256, 0);
    std::sort(data.begin(), data.end());
    std::array<float, 256> out;
    std::copy(data.begin(), data.end(), out.begin());
    return out;
}
static const std::array<float, 256> signedMap = dynamicMap(true), unsignedMap = dynamicMap(false);

// The maps against bitsandbytes' own (the fixture DynamicMapTests checks Swift's against), and values
// known by hand: the ends, zero, the smallest magnitudes (10⁻⁶ × the first midpoints).
static bool codeBookCase() {
    const std::string path = std::string(__FILE__).substr(0, std::string(__FILE__).rfind('/')) +
                             "/../Tests/SwiftletTests/Fixtures/bnb/dynamic_map.json";
    std::ifstream file(path);
    std::stringstream text; text << file.rdbuf();
    const std::string json = text.str();
    long long compared = 0, differ = 0;
    for (auto [key, map] : {std::pair{"\"signed\"", &signedMap}, std::pair{"\"unsigned\"", &unsignedMap}}) {
        const size_t at = json.find(key);
        if (at == std::string::npos) continue;
        const char* s = json.c_str() + json.find('[', at) + 1;
        for (int i = 0; i < 256; i++) {
            char* end;
            const long bits = strtol(s, &end, 10);
            s = end + 1;   // past the comma
            compared++;
            differ += bitsOf((*map)[i]) != (unsigned)(int)bits;
        }
    }
    const bool known = signedMap[127] == 0 && signedMap[255] == 1 && unsignedMap[0] == 0 && unsignedMap[255] == 1 &&
                       signedMap[128] == 1e-6f * 0.55f && signedMap[126] == -(1e-6f * 0.55f) &&
                       unsignedMap[1] == 1e-6f * ((0.1f + (1.0f - 0.45f)) / 2) &&
                       signedMap[0] == -((1.0f + fmaf(-((1.0f - 0.1f) / 64), 1, 1.0f)) / 2);
    return report(compared == 512 && differ == 0 && known,
                  "code books (DynamicMap): %lld of %lld entries differ from bitsandbytes' table (%s); ends, zero, smallest %s",
                  differ, compared, compared == 512 ? "fixture read" : "FIXTURE MISSING", known ? "as expected" : "WRONG");
}

// AdamW8bit.corrections: in float, as both bnb kernels compute them.
struct Corrections { float c1, c2, stepSize; };
static Corrections corrections(int step, Hyper h) {
    const float c1 = 1 - powf(h.beta1, (float)step), c2 = sqrtf(1 - powf(h.beta2, (float)step));
    return {c1, c2, -h.lr * c2 / c1};
}
// AdamW8bit.quantize: bnb's quantize_2D.
static uint8_t quantize(float x, const std::array<float, 256>& code, bool isSigned) {
    int pivot = 127, upperPivot = 255, lowerPivot = 0;
    float lower = isSigned ? -1.0f : 0.0f, upper = 1.0f, value = code[127];
    for (int i = 64; i > 0; i >>= 1) {
        if (x > value) { lowerPivot = pivot; lower = value; pivot += i; }
        else { upperPivot = pivot; upper = value; pivot -= i; }
        value = code[pivot];
    }
    if (x > value) return (uint8_t)(x > (upper + value) * 0.5f ? upperPivot : pivot);
    return (uint8_t)(x < (lower + value) * 0.5f ? lowerPivot : pivot);
}

struct Quantized { Guarded<float> p, g; Guarded<uint8_t> codes1, codes2; Guarded<float> absmax1, absmax2; };

// AdamW8bit.updateBlockwise on one tensor; returns how many first-moment codes the sign fix moved.
static long long twinBlockwise(Quantized& q, Multiplier k, Hyper h, int step) {
    long long signFixes = 0;
    const Corrections c = corrections(step, h);
    const long long n = q.p.n;
    std::vector<float> s1(block8), s2(block8);
    for (long long block = 0; block * block8 < n; block++) {
        const long long start = block * block8, end = std::min(start + block8, n);
        const float scale1 = q.absmax1[block], scale2 = q.absmax2[block];
        float max1 = -FLT_MAX, max2 = -FLT_MAX;
        for (long long i = start; i < end; i++) {
            const float g = applied(k, q.g[i]);
            if (std::isfinite(g)) {
                s2[i - start] = (unsignedMap[q.codes2[i]] * scale2) * h.beta2 + (1 - h.beta2) * g * g;
                s1[i - start] = (signedMap[q.codes1[i]] * scale1) * h.beta1 + (1 - h.beta1) * g;
            } else {
                s1[i - start] = 0; s2[i - start] = 0;
            }
            max1 = fmaxf(max1, fabsf(s1[i - start]));
            max2 = fmaxf(max2, fabsf(s2[i - start]));
        }
        if (end - start < block8) {   // the lanes past the end: gradient 0, codes 128 and 0
            const float zero = 0;
            max1 = fmaxf(max1, fabsf((signedMap[128] * scale1) * h.beta1 + (1 - h.beta1) * zero));
            max2 = fmaxf(max2, fabsf((unsignedMap[0] * scale2) * h.beta2 + (1 - h.beta2) * zero * zero));
        }
        q.absmax1[block] = max1; q.absmax2[block] = max2;
        for (long long i = start; i < end; i++) {
            const float m = s1[i - start], v = s2[i - start];
            if (std::isfinite(applied(k, q.g[i]))) {
                float p = q.p[i] + c.stepSize * (m / (sqrtf(v) + c.c2 * h.eps));
                if (h.weightDecay > 0) p = p * (1 - h.lr * h.weightDecay);
                q.p[i] = p;
            }
            uint8_t code1 = quantize(m / max1, signedMap, true);
            if (std::signbit(signedMap[code1]) != std::signbit(m)) {
                code1 = m > 0 ? uint8_t(code1 + 1) : uint8_t(code1 - 1);
                signFixes++;
            }
            q.codes1[i] = code1;
            q.codes2[i] = quantize(v / max2, unsignedMap, false);
        }
    }
    return signFixes;
}

// AdamW8bit.update32bit on one tensor (state1, state2 in the codes' place: p, g, s1, s2).
static void twin32bit(Guarded<float>& p, Guarded<float>& g, Guarded<float>& state1, Guarded<float>& state2, Multiplier k, Hyper h,
                      int step) {
    const Corrections c = corrections(step, h);
    for (long long i = 0; i < p.n; i++) {
        const float gi = applied(k, g[i]);
        const float s1 = state1[i] * h.beta1 + (1 - h.beta1) * gi;
        const float s2 = state2[i] * h.beta2 + (1 - h.beta2) * (gi * gi);
        float pi = p[i] + c.stepSize * (s1 / (sqrtf(s2) + h.eps * c.c2));
        if (h.weightDecay > 0) pi = pi * (1 - h.lr * h.weightDecay);
        state1[i] = s1; state2[i] = s2; p[i] = pi;
    }
}

static Quantized quantizedTensor(long long n) {
    const long long blocks = (n + block8 - 1) / block8;
    // fresh state as AdamW8bitState.zeros: codes 0, absmax 0
    using F = Guarded<float>; using B = Guarded<uint8_t>;
    Quantized q{F(n, poisonFloat), F(n, poisonFloat), B(n, 0xAB), B(n, 0xAB), F(blocks, poisonFloat), F(blocks, poisonFloat)};
    std::uniform_real_distribution<float> u(-1, 1);
    for (long long i = 0; i < n; i++) { q.p[i] = u(gen); q.codes1[i] = 0; q.codes2[i] = 0; }
    for (long long b = 0; b < blocks; b++) q.absmax1[b] = q.absmax2[b] = 0;
    return q;
}

// `setUp`: whether the case's inputs came out as meant (a failure otherwise).
static bool blockwiseCase(std::vector<Quantized>& list, Multiplier k, Hyper h, int step, const char* gradients, bool setUp = true) {
    std::vector<Quantized> twin = list;
    std::vector<std::vector<const void*>> operands; std::vector<long long> counts;
    for (auto& q : list) {
        operands.push_back({q.p.data(), q.g.data(), q.codes1.data(), q.codes2.data(), q.absmax1.data(), q.absmax2.data()});
        counts.push_back(q.p.n);
    }
    launchTable(makeTable(operands, counts, block8), block8, [&](const mt_row* r, const mt_chunk* c) {
        mt_adamw8bit_blockwise(r, c, block8, k.unscale, k.clip, h.beta1, h.beta2, h.eps, step, h.lr, h.weightDecay);
    });
    long long codes1 = 0, codes2 = 0, absmax = 0, params = 0, elements = 0, blocks = 0, signFixes = 0;
    bool intact = true;
    for (size_t t = 0; t < list.size(); t++) {
        signFixes += twinBlockwise(twin[t], k, h, step);
        Quantized &a = list[t], &b = twin[t];
        for (long long i = 0; i < a.p.n; i++) {
            codes1 += a.codes1[i] != b.codes1[i]; codes2 += a.codes2[i] != b.codes2[i];
            params += bitsOf(a.p[i]) != bitsOf(b.p[i]); elements++;
        }
        for (long long i = 0; i < a.absmax1.n; i++) {
            absmax += (bitsOf(a.absmax1[i]) != bitsOf(b.absmax1[i])) + (bitsOf(a.absmax2[i]) != bitsOf(b.absmax2[i])); blocks++;
        }
        intact = intact && a.p.marginsIntact() && a.codes1.marginsIntact() && a.codes2.marginsIntact() && a.absmax1.marginsIntact() && a.absmax2.marginsIntact();
    }
    return report(codes1 + codes2 + absmax + params == 0 && intact && setUp,
                  "mt_adamw8bit_blockwise step %d wd %g unscale %g clip %g (%s): differ from the CPU twin: codes1 %lld, codes2 %lld "
                  "of %lld, absmax %lld of %lld, parameters %lld (sign fixes %lld); guards %s", step, h.weightDecay, k.unscale, k.clip,
                  gradients, codes1, codes2, elements, absmax, 2 * blocks, params, signFixes, intact ? "intact" : "WRITTEN");
}

// The gradient nearest `guess` whose moment `moment(g)` is exactly `target` (within 256 ulps), else 0.
template <class F> static float solve(F moment, float guess, float target) {
    float up = guess, down = guess;
    for (int i = 0; i < 256; i++, up = nextafterf(up, INFINITY), down = nextafterf(down, -INFINITY)) {
        if (moment(up) == target) return up;
        if (moment(down) == target) return down;
    }
    return 0;
}
// Moments exactly on a code book midpoint, where quantize_2D's strict comparisons decide (a tie goes to the code
// just searched). Fresh state and no multiplier make the moments (1 − β₁)·g and ((1 − β₂)·g)·g; one element of
// each block makes its absmax 1, so each moment is its own quotient. Block 0: the first moment on each of the
// signed book's 255 midpoints; block 1: the second moment on the unsigned book's.
static bool tieCase(Hyper h) {
    std::vector<Quantized> list;
    list.push_back(quantizedTensor(2 * block8));
    Quantized& q = list.back();
    const float w1 = 1.0f - h.beta1, w2 = 1.0f - h.beta2;
    auto first = [&](float g) { return w1 * g; };
    auto second = [&](float g) { return w2 * g * g; };
    q.g[0] = solve(first, 1 / w1, 1.0f);
    q.g[block8] = solve(second, sqrtf(1 / w2), 1.0f);
    int ties1 = 0, ties2 = 0;
    for (int j = 0; j < 255; j++) {
        const float t1 = (signedMap[j] + signedMap[j + 1]) * 0.5f, t2 = (unsignedMap[j] + unsignedMap[j + 1]) * 0.5f;
        q.g[1 + j] = solve(first, t1 / w1, t1);
        q.g[block8 + 1 + j] = solve(second, sqrtf(t2 / w2), t2);
        ties1 += first(q.g[1 + j]) == t1; ties2 += second(q.g[block8 + 1 + j]) == t2;
    }
    const bool maxima = first(q.g[0]) == 1 && second(q.g[block8]) == 1;
    char what[128];
    snprintf(what, sizeof what, "first moments on %d of 255 midpoints, second on %d, absmax 1 %s", ties1, ties2,
             maxima ? "in both blocks" : "NOT CONSTRUCTED");
    return blockwiseCase(list, {}, h, 1, what, maxima && ties1 > 200 && ties2 > 100);
}

static bool fullCase(Floats& p, Floats& g, Floats& s1, Floats& s2, Multiplier k, Hyper h, int step) {
    Floats pt = copyOf(p), s1t = copyOf(s1), s2t = copyOf(s2);
    launchTable(tableOf({&p, &g, &s1, &s2}), threads, [&](const mt_row* r, const mt_chunk* c) {
        mt_adamw8bit_full(r, c, chunkSize, k.unscale, k.clip, h.beta1, h.beta2, h.eps, step, h.lr, h.weightDecay);
    });
    Compare cmp;
    for (size_t t = 0; t < p.size(); t++) {
        twin32bit(pt[t], g[t], s1t[t], s2t[t], k, h, step);
        cmp.add(p[t], pt[t]); cmp.add(s1[t], s1t[t]); cmp.add(s2[t], s2t[t]);
    }
    const bool intact = allIntact(p) && allIntact(s1) && allIntact(s2);
    return report(cmp.differ() == 0 && intact,
                  "mt_adamw8bit_full step %d wd %g unscale %g clip %g: %lld of %lld p/state1/state2 differ from the CPU twin; guards %s",
                  step, h.weightDecay, k.unscale, k.clip, cmp.differ(), cmp.total, intact ? "intact" : "WRITTEN");
}

int main() {
    bool ok = true;
    std::copy(signedMap.begin(), signedMap.end(), adamw8bit_signed);   // the code books the Swift source bakes in
    std::copy(unsignedMap.begin(), unsignedMap.end(), adamw8bit_unsigned);
    ok &= codeBookCase();

    // LoRA-like tensors: one element, smaller than a block, one chunk exactly, partial chunks, an empty one
    const std::vector<long long> sizes = {1, 37, 255, 4096, 4097, 0, 5000, 300, 9000};
    // unscale 1/1000 rather than a loss scaler's power of two: its products round, so the order of the factors shows
    const Multiplier unscaled{1.0f / 1000, 1};
    Floats g = floats(sizes, -1024, 1024);
    ok &= normCase("over 9 tensors", g, 1.0f / 1024);
    ok &= normCase("over 9 tensors", g, unscaled.unscale);
    ok &= partialsCase(600);
    ok &= nonFiniteNormCase();
    ok &= zeroCase(sizes);

    // LoRAOptimizer.step: the norm of the unscaled gradients gives the clip coefficient
    Multiplier k = unscaled;
    k.clip = clipFrom(gpuSumOfSquares(g, k.unscale), 1.0f);
    Floats p = floats(sizes, -1, 1), m = zeros(sizes), v = zeros(sizes);
    for (int step = 1; step <= 3; step++) {
        if (step > 1) g = floats(sizes, -1024, 1024);
        ok &= adamwCase(p, g, m, v, k, {2e-4f, 0.9f, 0.999f, 1e-8f, 0.01f}, step);
    }
    ok &= adamwCase(p, g, m, v, {}, {1e-3f, 0.8f, 0.99f, 1e-6f, 0}, 7);   // no decay, no multiplier, other betas
    ok &= sgdCase(p, g, k, 0.1f, 0.01f);
    ok &= sgdCase(p, g, {}, 0.05f, 0);

    // 8-bit state: partial 256-blocks, one tensor smaller than a block (the host keeps those in 32 bits, the kernel
    // takes any), an empty one; bnb's blockwise kernel over chunks of 256
    const Multiplier k8{1.0f / 1000, 0.37f};
    const Hyper h8{1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f};
    std::vector<Quantized> quantized;
    for (long long n : {4096LL, 4400LL, 0LL, 77LL, 600LL}) quantized.push_back(quantizedTensor(n));
    for (int step = 1; step <= 3; step++) {
        std::uniform_real_distribution<float> u(-10240, 10240);
        for (auto& q : quantized) for (long long i = 0; i < q.g.n; i++) q.g[i] = u(gen);
        const char* what = "random";
        if (step == 1) {   // a block of zero gradients: its moments are 0, its absmax 0, 0/0 quantized
            for (long long i = 512; i < 768; i++) quantized[1].g[i] = 0;
            // a block of tiny gradients beside one large: the negative moments quantize to +0, the sign fix moves them
            for (long long i = 512; i < 768; i++) quantized[0].g[i] *= 1e-9f;
            quantized[0].g[600] = 10240;
            what = "a block of zeros, tiny values beside a large one";
        } else if (step == 2) {   // non-finite gradients: moments 0, parameter unchanged
            quantized[0].g[5] = INFINITY; quantized[1].g[4399] = -INFINITY; quantized[3].g[10] = NAN;
            what = "inf, -inf, NaN";
        }
        ok &= blockwiseCase(quantized, k8, step == 3 ? Hyper{1e-3f, 0.9f, 0.999f, 1e-8f, 0} : h8, step, what);
    }
    // a state not fresh: random codes and scales
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> scale(0, 0.01f);
    for (auto& q : quantized) {
        for (long long i = 0; i < q.p.n; i++) { q.codes1[i] = (uint8_t)byte(gen); q.codes2[i] = (uint8_t)byte(gen); }
        for (long long b = 0; b < q.absmax1.n; b++) { q.absmax1[b] = scale(gen); q.absmax2[b] = scale(gen) * scale(gen); }
    }
    ok &= blockwiseCase(quantized, k8, h8, 4, "random, random state");
    // The lanes past a partial block's end alone set its absmax: every moment at the code of 0 (codes 127 and 0),
    // scales 1, zero gradients; the padding lanes' first moment is code 128's (the smallest positive) times 0.9.
    std::vector<Quantized> idle;
    for (long long n : {77LL, 300LL}) {
        idle.push_back(quantizedTensor(n));
        Quantized& q = idle.back();
        for (long long i = 0; i < n; i++) { q.codes1[i] = 127; q.codes2[i] = 0; q.g[i] = 0; }
        for (long long b = 0; b < q.absmax1.n; b++) q.absmax1[b] = q.absmax2[b] = 1;
    }
    ok &= blockwiseCase(idle, k8, h8, 5, "zero, moments at code 0");
    const float padding = signedMap[128] * h8.beta1;
    ok &= report(idle[0].absmax1[0] == padding && idle[1].absmax1[1] == padding && idle[1].absmax1[0] == 0,
                 "mt_adamw8bit_blockwise padding lanes: partial blocks' absmax1 %g and %g (code 128 × β₁ = %g), the full block's %g (0)",
                 idle[0].absmax1[0], idle[1].absmax1[1], padding, idle[1].absmax1[0]);
    ok &= tieCase(h8);
    // 32-bit state: the tensors under min_8bit_size, and a larger one over several chunks
    const std::vector<long long> small = {1, 37, 255, 4095, 0, 300, 9000};
    Floats p32 = floats(small, -1, 1), s1 = zeros(small), s2 = zeros(small);
    for (int step = 1; step <= 3; step++) {
        Floats g32 = floats(small, -10240, 10240);
        if (step == 2) g32[3][100] = INFINITY;   // not filtered: the 32-bit kernel lets it through, as bnb's does
        ok &= fullCase(p32, g32, s1, s2, k8, step == 3 ? Hyper{1e-3f, 0.9f, 0.999f, 1e-8f, 0} : h8, step);
    }

    if (ok) printf("all optimizer emulation checks passed\n");
    else printf("SOME OPTIMIZER EMULATION CHECKS FAILED\n");
    return ok ? 0 : 1;
}
