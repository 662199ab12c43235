// The mixture-of-experts kernels (MixtureOfExpertsKernels.swift) on the CPU (cuda_emulation.h), each against
// a plain C++ statement of its op (Backend.moe*; the CPU twin is CPU/ExpertRouting.swift), launched with the
// grids, blocks and arguments of CUDABackend's launch sites: the router's f32 softmax and top-k (the lower
// expert first on ties; Mixtral renormalises, Qwen3-MoE does not) and its backward with and without the
// load-balancing term, the load-balancing statistics, the stable counting sort of the assignments by expert,
// the gather, the weighted combine in ascending row order and its backward. Indices and counts must match
// exactly; the gather and the combines must give the bits their spec fixes (a copy, one f32 product rounded
// once, an f32 sum in ascending row order rounded once); f32 values must be within their arithmetic's error
// bound of double, bf16 values within one rounding of it. Every output starts as 0xFF bytes (NaN, or −1 as
// an index), Guarded on both sides: an element left unwritten, or one written outside it, fails.
// Run scripts/emulate_cuda_experts.sh.
#include <numeric>
#include "cuda_emulation.h"

static std::mt19937 gen(2025);
static const double unitRoundoff = std::ldexp(1.0, -24);  // f32's

// CUDABackend's launch geometry (the bottom of MixtureOfExpertsKernels.swift; launchElementwise in
// ElementwiseKernels.swift caps its grid at 16 blocks a multiprocessor).
constexpr int routeThreads = 128, statisticsThreads = 256, sortThreads = 256, elementwiseThreads = 256, dotThreads = 128;
static int routeBlocks(int tokens) { return (tokens + routeThreads - 1) / routeThreads; }
static int elementwiseBlocks(long long count, int multiprocessors) {
    return (int)std::min<long long>((count + elementwiseThreads - 1) / elementwiseThreads, multiprocessors * 16LL);
}
constexpr int h100Multiprocessors = 132;
// A GPU of one multiprocessor caps the elementwise grid at 16 blocks, so the grid-stride loops go round.
constexpr int oneMultiprocessor = 1;

// What every output starts as, in its body and its Guarded margins: 0xFF bytes (NaN, or −1 as an index).
template <class T> static T allBitsSet() {
    T v;
    memset(&v, 0xFF, sizeof v);
    return v;
}

// bf16 values, stated apart from the prelude's conversions: the top half of an f32, and round to nearest
// even from the two bf16 neighbours of a finite value.
static float fromBF16(storage_t b) { return __uint_as_float((unsigned)b << 16); }
static storage_t roundBF16(float f) {
    const unsigned toward = __float_as_uint(f) & 0xFFFF0000u, away = toward + 0x10000u;
    const double below = fabs((double)f - fromBF16(toward >> 16)), above = fabs((double)fromBF16(away >> 16) - f);
    const unsigned r = below < above ? toward : above < below ? away : ((toward >> 16) & 1 ? away : toward);
    return (storage_t)(r >> 16);
}
static std::vector<storage_t> randomBF16(size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<storage_t> v(n);
    for (auto& x : v) x = roundBF16(u(gen));
    return v;
}
static std::vector<float> randomF32(size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = u(gen);
    return v;
}

// The worst |gpu − ref| / scale over the elements, each with its own scale (its magnitude, Σ|terms| of a
// sum, or one bf16 rounding); a NaN (what an unwritten element holds) fails and shows as inf, and a zero
// scale asks for equality.
struct Error {
    double worst = 0; long long bad = 0;
    void add(double g, double ref, double scale) {
        if (!std::isfinite(g) || (scale == 0 && g != ref)) { bad++; worst = INFINITY; return; }
        if (scale == 0) return;
        worst = max(worst, fabs(g - ref) / scale);
    }
    bool ok(double bound) const { return bad == 0 && worst <= bound; }
};
// The f32 arithmetic's own error bound, then one bf16 rounding of its result (half an ulp: at most 2^-8 of it).
static double bf16Rounding(double ref, double f32Error) { return std::ldexp(fabs(ref) + f32Error, -8) + f32Error; }

static const char* verdict(bool ok) { return ok ? "PASS" : "FAIL"; }

struct Config { const char* name; int experts, k; bool normalize; int tokens, width; };

// One routing problem, with its reference results in double and integers. The later kernels' inputs come
// from the reference, not from the kernels before them, so each kernel is checked on its own.
struct Problem {
    Config c;
    std::vector<storage_t> logits;      // [T, E]
    std::vector<double> probabilities;  // [T, E]
    std::vector<float> probabilities32; // the f32 probabilities the later kernels read
    std::vector<int> chosen;            // [T, k]
    std::vector<double> weights;        // [T, k]
    std::vector<float> weights32;
    std::vector<int> rows;              // [T·k]
    std::vector<int> sequenceIds;       // [T], −1 for padding
    int tiedAtK = 0;                    // rows where the tie rule decides which expert is k-th
    long long assignments() const { return (long long)c.tokens * c.k; }
};

// The stable sort by expert as a sort: each assignment's row is its place among all assignments ordered by
// (expert, assignment index); counts[e] how many chose e.
static void referenceSort(const std::vector<int>& chosen, int experts, std::vector<int>& counts, std::vector<int>& rows) {
    std::vector<int> order(chosen.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return chosen[a] < chosen[b]; });
    rows.assign(chosen.size(), 0);
    for (size_t i = 0; i < order.size(); i++) rows[order[i]] = (int)i;
    counts.assign(experts, 0);
    for (int e : chosen) counts[e]++;
}

// Router logits on a grid of 1/16 in [−4, 4]: bf16 values, and distinct ones far enough apart that the f32
// softmax keeps their order, so the top k by probability is the top k by logit. Row 0 is one value
// everywhere; row 1 lies around 110 (its exp overflows f32 unless the row's max is subtracted); every third
// row puts a random 2..2k experts at the top value (ties across the k-th place), every third other row copies
// values between experts (ties anywhere). Two cold experts lie below everything, so they get no tokens (past
// index k, so row 0's tie does not pick them).
static Problem makeProblem(const Config& c) {
    Problem p;
    p.c = c;
    const int T = c.tokens, E = c.experts, k = c.k, coldA = E / 2 + 1, coldB = E - 1;
    auto cold = [&](int e) { return e == coldA || e == coldB; };
    auto warmExpert = [&] { int e; do e = (int)(gen() % E); while (cold(e)); return e; };
    std::uniform_int_distribution<int> sixteenths(-64, 63);
    p.logits.resize((size_t)T * E);
    for (int t = 0; t < T; t++) {
        storage_t* row = &p.logits[(size_t)t * E];
        for (int e = 0; e < E; e++) {
            float v;
            if (t == 0) v = 0.5f;
            else if (t == 1) v = cold(e) ? 100.0f - (e == coldB) : 104.0f + 0.5f * (float)(gen() % 33);
            else v = cold(e) ? -6.0f + (e == coldB) : sixteenths(gen) / 16.0f;
            row[e] = roundBF16(v);
        }
        if (t >= 2 && t % 3 == 2) {
            const int tied = 2 + (int)(gen() % (2 * k - 1));
            for (int i = 0; i < tied; i++) row[warmExpert()] = roundBF16(4.0f);
        } else if (t >= 2 && t % 3 == 1) {
            for (int e = 0; e < E; e++) if (!cold(e) && gen() % 3 == 0) row[e] = row[warmExpert()];
        }
    }
    p.probabilities.resize((size_t)T * E);
    p.chosen.resize((size_t)T * k);
    p.weights.resize((size_t)T * k);
    for (int t = 0; t < T; t++) {
        const storage_t* x = &p.logits[(size_t)t * E];
        double m = -INFINITY, sum = 0;
        for (int e = 0; e < E; e++) m = std::max(m, (double)fromBF16(x[e]));
        for (int e = 0; e < E; e++) sum += exp(fromBF16(x[e]) - m);
        for (int e = 0; e < E; e++) p.probabilities[(size_t)t * E + e] = exp(fromBF16(x[e]) - m) / sum;
        // top-k as a stable sort by logit, descending: equal logits keep the lower expert first
        std::vector<int> order(E);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return fromBF16(x[a]) > fromBF16(x[b]); });
        if (k < E && x[order[k - 1]] == x[order[k]]) p.tiedAtK++;
        double chosenMass = 0;
        for (int j = 0; j < k; j++) chosenMass += p.probabilities[(size_t)t * E + order[j]];
        for (int j = 0; j < k; j++) {
            p.chosen[(size_t)t * k + j] = order[j];
            const double pj = p.probabilities[(size_t)t * E + order[j]];
            p.weights[(size_t)t * k + j] = c.normalize ? pj / chosenMass : pj;
        }
    }
    p.probabilities32.assign(p.probabilities.begin(), p.probabilities.end());
    p.weights32.assign(p.weights.begin(), p.weights.end());
    std::vector<int> counts;  // sortCheck checks the counts
    referenceSort(p.chosen, E, counts, p.rows);
    p.sequenceIds.resize(T);
    for (int t = 0; t < T; t++) p.sequenceIds[t] = gen() % 5 == 0 ? -1 : t / 50;
    return p;
}

// moe_route, as CUDABackend.moeRoute launches it: one thread per token, blocks of 128.
static bool routeCheck(const Problem& p) {
    const Config& c = p.c;
    const int T = c.tokens, E = c.experts, k = c.k, blocks = routeBlocks(T);
    const size_t idle = (size_t)blocks * routeThreads - T + 1;  // the rows the grid's idle threads would reach
    Guarded<float> probabilities((size_t)T * E, allBitsSet<float>(), idle * E);
    Guarded<int> chosen((size_t)T * k, allBitsSet<int>(), idle * k);
    Guarded<float> weights((size_t)T * k, allBitsSet<float>(), idle * k);
    launch({blocks, 1, 1}, routeThreads, [&] {
        moe_route(p.logits.data(), probabilities.data(), chosen.data(), weights.data(), (long long)T, E, k, c.normalize ? 1 : 0);
    });
    Error probabilityError, weightError;
    long long wrongChoices = 0;
    for (size_t i = 0; i < (size_t)T * E; i++) probabilityError.add(probabilities[i], p.probabilities[i], p.probabilities[i]);
    for (size_t i = 0; i < (size_t)T * k; i++) {
        wrongChoices += chosen[i] != p.chosen[i];
        weightError.add(weights[i], p.weights[i], p.weights[i]);
    }
    // relative to each value: the softmax's f32 sum of E terms and the renormalisation's of k, and a few
    // roundings (the GPU's expf is within 2 ulp)
    const double bound = (E + k + 8) * unitRoundoff;
    const bool guards = probabilities.marginsIntact() && chosen.marginsIntact() && weights.marginsIntact();
    const bool covered = p.tiedAtK > 0;
    const bool ok = wrongChoices == 0 && probabilityError.ok(bound) && weightError.ok(bound) && guards && covered;
    printf("route          %-40s %3d tokens: %lld experts chosen wrong (%d rows tied at the k-th), probabilities %.1e, "
           "weights %.1e (bound %.1e)%s%s  %s\n", c.name, T, wrongChoices, p.tiedAtK, probabilityError.worst, weightError.worst,
           bound, guards ? "" : ", WROTE OUTSIDE THE OUTPUT", covered ? "" : ", NO TIES AT THE K-TH", verdict(ok));
    return ok;
}

// moe_route_backward, as CUDABackend.moeRouteBackward launches it; the reference goes through the Jacobians:
// ∂w_j/∂p_e = [c_j = e]/S − [e chosen] p_{c_j}/S² renormalised (S the chosen mass), [c_j = e] otherwise, and
// ∂p_f/∂x_e = p_f ([f = e] − p_e); the load-balancing gradient adds aux[e] to ∂L/∂p_e of counted tokens.
static bool routeBackwardCheck(const Problem& p, bool withAux, bool withSequenceIds) {
    const Config& c = p.c;
    const int T = c.tokens, E = c.experts, k = c.k, blocks = routeBlocks(T);
    const size_t idle = (size_t)blocks * routeThreads - T + 1;
    const auto dWeights = randomF32((size_t)T * k, -1, 1), aux = randomF32(E, -0.05f, 0.05f);
    Guarded<storage_t> dLogits((size_t)T * E, allBitsSet<storage_t>(), idle * E);
    launch({blocks, 1, 1}, routeThreads, [&] {
        moe_route_backward(dWeights.data(), p.probabilities32.data(), p.chosen.data(), withAux ? aux.data() : nullptr,
                           withSequenceIds ? p.sequenceIds.data() : nullptr, dLogits.data(), (long long)T, E, k,
                           c.normalize ? 1 : 0);
    });
    Error error;
    std::vector<double> dP(E), magnitude(E);
    for (int t = 0; t < T; t++) {
        const float* prob = &p.probabilities32[(size_t)t * E];
        const int* ch = &p.chosen[(size_t)t * k];
        const bool counted = withAux && (!withSequenceIds || p.sequenceIds[t] >= 0);
        double mass = 0;
        for (int j = 0; j < k; j++) mass += prob[ch[j]];
        for (int e = 0; e < E; e++) { dP[e] = counted ? aux[e] : 0; magnitude[e] = fabs(dP[e]); }
        for (int j = 0; j < k; j++) for (int i = 0; i < k; i++) {
            const int e = ch[i];
            const double derivative = c.normalize ? ((ch[j] == e) - prob[ch[j]] / mass) / mass : (ch[j] == e);
            dP[e] += dWeights[(size_t)t * k + j] * derivative;
            magnitude[e] += fabs(dWeights[(size_t)t * k + j] * derivative);
        }
        const double largest = *std::max_element(magnitude.begin(), magnitude.end());
        for (int e = 0; e < E; e++) {
            double dx = 0;
            for (int f = 0; f < E; f++) dx += dP[f] * prob[f] * ((f == e) - (double)prob[e]);
            // f32 before the rounding: ∂L/∂p from k terms, then the softmax's dot over E, each bounded by the
            // largest |∂L/∂p| term, times p_e
            const double f32Error = prob[e] * (E + 2 * k + 8) * unitRoundoff * largest;
            error.add(fromBF16(dLogits[(size_t)t * E + e]), dx, bf16Rounding(dx, f32Error));
        }
    }
    const bool guards = dLogits.marginsIntact();
    const bool ok = error.ok(1) && guards;
    printf("route backward %-40s %3d tokens, %-27s: dLogits %.2f of the one-rounding bound%s  %s\n", c.name, T,
           withAux ? (withSequenceIds ? "load balancing, padding" : "load balancing, no padding") : "no load balancing",
           error.worst, guards ? "" : ", WROTE OUTSIDE THE OUTPUT", verdict(ok));
    return ok;
}

// moe_statistics, as CUDABackend.moeRouterStatistics launches it: one block of 256 per expert.
static bool statisticsCheck(const Problem& p, bool withSequenceIds) {
    const Config& c = p.c;
    const int T = c.tokens, E = c.experts, k = c.k;
    Guarded<float> out(2 * (size_t)E, allBitsSet<float>());
    launch({E, 1, 1}, statisticsThreads, [&] {
        moe_statistics(p.probabilities32.data(), p.chosen.data(), withSequenceIds ? p.sequenceIds.data() : nullptr, out.data(),
                       (long long)T, E, k);
    });
    std::vector<long long> count(E, 0);
    std::vector<double> mass(E, 0);
    for (int t = 0; t < T; t++) {
        if (withSequenceIds && p.sequenceIds[t] < 0) continue;
        for (int j = 0; j < k; j++) count[p.chosen[(size_t)t * k + j]]++;
        for (int e = 0; e < E; e++) mass[e] += p.probabilities32[(size_t)t * E + e];
    }
    long long wrongCounts = 0;
    Error massError;
    for (int e = 0; e < E; e++) {
        wrongCounts += out[e] != (float)count[e];
        massError.add(out[E + e], mass[e], mass[e]);
    }
    // positive terms: each thread's own sum, then two five-level warp trees
    const double bound = ((T + statisticsThreads - 1) / statisticsThreads + 10) * unitRoundoff;
    const bool guards = out.marginsIntact();
    const bool ok = wrongCounts == 0 && massError.ok(bound) && guards;
    printf("statistics     %-40s %3d tokens, %-10s: %lld counts wrong, probability sums %.1e (bound %.1e)%s  %s\n", c.name, T,
           withSequenceIds ? "padding" : "no padding", wrongCounts, massError.worst, bound, guards ? "" : ", WROTE OUTSIDE THE OUTPUT",
           verdict(ok));
    return ok;
}

// moe_count then moe_sort_rows, as CUDABackend.moeSort launches them (one block of 256 per expert each,
// the sort reading the count's output).
static bool sortCheck(const char* label, const std::vector<int>& chosenFlat, int experts) {
    std::vector<int> counts, rows;
    referenceSort(chosenFlat, experts, counts, rows);
    const long long n = (long long)chosenFlat.size();
    const size_t pastEnd = (size_t)((n + sortThreads - 1) / sortThreads * sortThreads - n) + 64;
    Guarded<int> gpuCounts(experts, allBitsSet<int>());
    Guarded<int> gpuRows(n, allBitsSet<int>(), pastEnd);
    launch({experts, 1, 1}, sortThreads, [&] { moe_count(chosenFlat.data(), gpuCounts.data(), n); });
    launch({experts, 1, 1}, sortThreads, [&] { moe_sort_rows(chosenFlat.data(), gpuCounts.data(), gpuRows.data(), n); });
    long long wrongCounts = 0, wrongRows = 0;
    for (int e = 0; e < experts; e++) wrongCounts += gpuCounts[e] != counts[e];
    for (long long a = 0; a < n; a++) wrongRows += gpuRows[a] != rows[a];
    const int empty = (int)std::count(counts.begin(), counts.end(), 0);
    const bool guards = gpuCounts.marginsIntact() && gpuRows.marginsIntact();
    const bool ok = wrongCounts == 0 && wrongRows == 0 && guards && empty > 0;
    printf("sort           %-40s %4lld assignments: %lld counts wrong, %lld rows wrong (%d experts empty)%s  %s\n", label, n,
           wrongCounts, wrongRows, empty, guards ? "" : ", WROTE OUTSIDE THE OUTPUT", verdict(ok));
    return ok;
}

// moe_gather, as CUDABackend.moeGather launches it (launchElementwise over rows × width; k = rows / tokens).
static bool gatherCheck(const Problem& p, int multiprocessors) {
    const Config& c = p.c;
    const long long n = p.assignments(), width = c.width, count = n * width;
    const int blocks = elementwiseBlocks(count, multiprocessors);
    const auto x = randomBF16((size_t)c.tokens * width, -2, 2);
    Guarded<storage_t> sorted(count, allBitsSet<storage_t>());
    launch({blocks, 1, 1}, elementwiseThreads, [&] {
        moe_gather(x.data(), p.rows.data(), sorted.data(), n, width, (int)(n / c.tokens));
    });
    long long wrong = 0;
    for (int t = 0; t < c.tokens; t++) for (int j = 0; j < c.k; j++) {
        const storage_t* row = &sorted[(size_t)p.rows[(size_t)t * c.k + j] * width];
        for (long long h = 0; h < width; h++) wrong += row[h] != x[(size_t)t * width + h];
    }
    const bool guards = sorted.marginsIntact();
    const bool ok = wrong == 0 && guards;
    printf("gather         %-40s %3d tokens × %-3lld grid %4d×%d, %lld grid-stride turns: %lld of %lld values differ%s  %s\n", c.name,
           c.tokens, width, blocks, elementwiseThreads, (count + (long long)blocks * elementwiseThreads - 1) / ((long long)blocks * elementwiseThreads),
           wrong, count, guards ? "" : ", WROTE OUTSIDE THE OUTPUT", verdict(ok));
    return ok;
}

// Sorted rows on which the order of moe_combine's f32 sum shows in its bf16 bits: in each token with two
// slots of equal weight (tied probabilities; any two without weights) those slots' rows hold ±b, |b| about
// 2^10, and its other slots' rows values under half an f32 ulp of b, which vanish when added next to ±b but
// survive once the two have cancelled. Other tokens' rows hold values in [−2, 2].
static std::vector<storage_t> cancellingRows(const Problem& p, bool withWeights, int& tokensWithPairs) {
    const int k = p.c.k;
    const long long width = p.c.width;
    auto sorted = randomBF16((size_t)(p.assignments() * width), -2, 2);
    std::uniform_int_distribution<int> tinyExponent(-16, -13);
    std::uniform_real_distribution<float> mantissa(1, 2);
    auto sign = [] { return gen() % 2 ? -1.0f : 1.0f; };
    tokensWithPairs = 0;
    for (int t = 0; t < p.c.tokens; t++) {
        const float* w = &p.weights32[(size_t)t * k];
        int first = -1, second = -1;
        if (withWeights) {
            for (int i = 0; i < k && second < 0; i++) for (int j = i + 1; j < k && second < 0; j++)
                if (w[i] == w[j]) { first = i; second = j; }
        } else {
            first = (int)(gen() % k);
            do second = (int)(gen() % k); while (second == first);
        }
        if (second < 0) continue;
        tokensWithPairs++;
        for (long long h = 0; h < width; h++) {
            const float b = sign() * std::ldexp(mantissa(gen), 10);
            for (int j = 0; j < k; j++) {
                const float v = j == first ? b : j == second ? -b : sign() * std::ldexp(mantissa(gen), tinyExponent(gen));
                sorted[(size_t)p.rows[(size_t)t * k + j] * width + h] = roundBF16(v);
            }
        }
    }
    return sorted;
}

// moe_combine, as CUDABackend.moeCombine launches it: out[t] = Σ_j w_j sorted[rows[t·k + j]], the f32 sum
// over the token's rows in ascending order rounded once (those bits), within one rounding of double;
// without weights (the backward of the gather) every weight is 1. The products may be rounded or fused
// into the additions: NVRTC fuses them (--fmad=true by default), a host compiler may or may not (clang on
// arm64 does), and either way the order is what fixes the bits. With `cancelling` rows the case asks to
// see the order show: elements whose bits a sum in slot order would change.
static bool combineCheck(const Problem& p, bool withWeights, bool cancelling, int multiprocessors) {
    const Config& c = p.c;
    const int T = c.tokens, k = c.k;
    const long long width = c.width, count = (long long)T * width;
    const int blocks = elementwiseBlocks(count, multiprocessors);
    int tokensWithPairs = 0;
    const auto sorted = cancelling ? cancellingRows(p, withWeights, tokensWithPairs)
                                   : randomBF16((size_t)(p.assignments() * width), -2, 2);
    Guarded<storage_t> out(count, allBitsSet<storage_t>());
    launch({blocks, 1, 1}, elementwiseThreads, [&] {
        moe_combine(sorted.data(), p.rows.data(), withWeights ? p.weights32.data() : nullptr, out.data(), (long long)T, width, k);
    });
    long long wrongBits = 0, orderShows = 0;
    Error error;
    std::vector<std::pair<int, int>> slots(k);  // (row, slot)
    for (int t = 0; t < T; t++) {
        for (int j = 0; j < k; j++) slots[j] = {p.rows[(size_t)t * k + j], j};
        std::sort(slots.begin(), slots.end());
        for (long long h = 0; h < width; h++) {
            float inOrder = 0, fusedInOrder = 0, inSlotOrder = 0;
            double exact = 0, terms = 0;
            for (auto [row, j] : slots) {
                const float w = withWeights ? p.weights32[(size_t)t * k + j] : 1.0f, v = fromBF16(sorted[(size_t)row * width + h]);
                inOrder = __fadd_rn(inOrder, __fmul_rn(w, v));
                fusedInOrder = std::fmaf(w, v, fusedInOrder);
                exact += (double)w * v;
                terms += fabs((double)w * v);
            }
            for (int j = 0; j < k; j++) {
                const float w = withWeights ? p.weights32[(size_t)t * k + j] : 1.0f;
                inSlotOrder = __fadd_rn(inSlotOrder, __fmul_rn(w, fromBF16(sorted[(size_t)p.rows[(size_t)t * k + j] * width + h])));
            }
            orderShows += roundBF16(inSlotOrder) != roundBF16(inOrder);
            const storage_t g = out[(size_t)t * width + h];
            wrongBits += g != roundBF16(inOrder) && g != roundBF16(fusedInOrder);
            error.add(fromBF16(g), exact, bf16Rounding(exact, 2 * k * unitRoundoff * terms));
        }
    }
    const bool guards = out.marginsIntact();
    const bool covered = !cancelling || orderShows > 0;
    const bool ok = wrongBits == 0 && error.ok(1) && guards && covered;
    char pairs[48] = "";
    if (cancelling) snprintf(pairs, sizeof pairs, "%d cancelling", tokensWithPairs);
    printf("combine        %-40s %3d tokens × %-3lld %-10s %-14s grid %4d×%d: %lld of %lld differ from the ascending f32 sum's bits "
           "(order shows in %lld), %.2f of the one-rounding bound%s%s  %s\n", c.name, T, width, withWeights ? "weighted" : "unweighted",
           pairs, blocks, elementwiseThreads, wrongBits, count, orderShows, error.worst,
           guards ? "" : ", WROTE OUTSIDE THE OUTPUT", covered ? "" : ", ORDER NEVER SHOWS", verdict(ok));
    return ok;
}

// moe_combine_backward_rows, as CUDABackend.moeCombineBackward launches it first: dSorted[rows[a]] =
// w_a · dOut[t], one f32 product rounded once (those bits).
static bool combineBackwardRowsCheck(const Problem& p, int multiprocessors) {
    const Config& c = p.c;
    const int T = c.tokens, k = c.k;
    const long long n = p.assignments(), width = c.width, count = n * width;
    const int blocks = elementwiseBlocks(count, multiprocessors);
    const auto dOut = randomBF16((size_t)T * width, -1, 1);
    Guarded<storage_t> dSorted(count, allBitsSet<storage_t>());
    launch({blocks, 1, 1}, elementwiseThreads, [&] {
        moe_combine_backward_rows(dOut.data(), p.rows.data(), p.weights32.data(), dSorted.data(), n, width, k);
    });
    long long wrongBits = 0;
    for (long long a = 0; a < n; a++) for (long long h = 0; h < width; h++)
        wrongBits += dSorted[p.rows[a] * width + h] != roundBF16(__fmul_rn(p.weights32[a], fromBF16(dOut[a / k * width + h])));
    const bool guards = dSorted.marginsIntact();
    const bool ok = wrongBits == 0 && guards;
    printf("combine back   %-40s %3d tokens × %-3lld grid %4d×%d: dSorted %lld of %lld differ from w·dOut's bits%s  %s\n",
           c.name, T, width, blocks, elementwiseThreads, wrongBits, count, guards ? "" : ", WROTE OUTSIDE THE OUTPUT", verdict(ok));
    return ok;
}

// moe_combine_backward_weights, as CUDABackend.moeCombineBackward launches it second (one block of 128 per
// assignment): dWeights[a] = Σ_h dOut[t, h] · sorted[rows[a], h].
static bool combineBackwardWeightsCheck(const Problem& p) {
    const Config& c = p.c;
    const int T = c.tokens, k = c.k;
    const long long n = p.assignments(), width = c.width;
    const auto dOut = randomBF16((size_t)T * width, -1, 1), sorted = randomBF16((size_t)(n * width), -2, 2);
    Guarded<float> dWeights(n, allBitsSet<float>());
    launch({(int)n, 1, 1}, dotThreads, [&] {
        moe_combine_backward_weights(dOut.data(), sorted.data(), p.rows.data(), dWeights.data(), width, k);
    });
    Error dotError;
    for (long long a = 0; a < n; a++) {
        const long long t = a / k, row = p.rows[a];
        double dot = 0, terms = 0;
        for (long long h = 0; h < width; h++) {
            const double term = (double)fromBF16(dOut[t * width + h]) * fromBF16(sorted[row * width + h]);
            dot += term;
            terms += fabs(term);
        }
        dotError.add(dWeights[a], dot, terms);
    }
    // relative to Σ|terms|: each thread's own sum, then two five-level warp trees
    const double bound = ((width + dotThreads - 1) / dotThreads + 10) * unitRoundoff;
    const bool guards = dWeights.marginsIntact();
    const bool ok = dotError.ok(bound) && guards;
    printf("combine back   %-40s %3d tokens × %-3lld grid %4lld×%d: dWeights %.1e of Σ|terms| (bound %.1e)%s  %s\n", c.name, T,
           width, n, dotThreads, dotError.worst, bound, guards ? "" : ", WROTE OUTSIDE THE OUTPUT", verdict(ok));
    return ok;
}

int main() {
    // token counts no multiple of 32 or 128; assignments past one block of 256 (the sort's loop) and under it
    const Problem mixtral = makeProblem({"Mixtral 8 experts top-2 renormalised", 8, 2, true, 150, 40}),
                  qwen = makeProblem({"Qwen3-MoE 128 experts top-8", 128, 8, false, 45, 24}),
                  sixteen = makeProblem({"16 experts top-4 renormalised", 16, 4, true, 45, 136});
    bool ok = true;
    for (const Problem* p : {&mixtral, &qwen, &sixteen}) {
        ok &= routeCheck(*p);
        ok &= routeBackwardCheck(*p, true, true);
        ok &= routeBackwardCheck(*p, false, false);
        ok &= statisticsCheck(*p, true);
        ok &= sortCheck(p->c.name, p->chosen, p->c.experts);
        ok &= gatherCheck(*p, h100Multiprocessors);
        ok &= combineCheck(*p, true, false, h100Multiprocessors);
        ok &= combineCheck(*p, false, false, h100Multiprocessors);
        ok &= combineBackwardRowsCheck(*p, h100Multiprocessors);
        ok &= combineBackwardWeightsCheck(*p);
    }
    // the variants once each: no padding, the load-balancing term over every token, several grid-stride turns
    ok &= statisticsCheck(mixtral, false);
    ok &= statisticsCheck(sixteen, false);
    ok &= routeBackwardCheck(qwen, true, false);
    ok &= gatherCheck(mixtral, oneMultiprocessor);
    ok &= combineCheck(mixtral, true, false, oneMultiprocessor);
    ok &= combineBackwardRowsCheck(mixtral, oneMultiprocessor);
    // more than two terms, so the order of the f32 sum matters (with weights and without)
    ok &= combineCheck(qwen, true, true, h100Multiprocessors);
    ok &= combineCheck(sixteen, false, true, h100Multiprocessors);
    // assignments that no top-k would make: runs of one expert across warps and blocks of the sort's loop,
    // the first expert empty (offset 0 from nothing), everything on the last expert
    std::vector<int> skewed(700), allLast(300, 7);
    for (auto& e : skewed) { do e = gen() % 10 < 6 ? 3 : (int)(gen() % 16); while (e == 0 || e == 9); }
    ok &= sortCheck("16 experts, 60% on one, 0 and 9 empty", skewed, 16);
    ok &= sortCheck("8 experts, all on the last", allLast, 8);
    printf(ok ? "all mixture-of-experts emulation checks passed\n" : "SOME MIXTURE-OF-EXPERTS EMULATION CHECKS FAILED\n");
    return ok ? 0 : 1;
}
