// Runs CUDA kernel source on the CPU, for checking kernels on a machine without a GPU: a block's threads are
// fibers (ucontext) on one OS thread, blocks one after another. Between two __syncthreads the warps run one
// at a time, in a random order (seed EMULATION_SEED, default 1), each as far as it can: the most skewed
// schedule a GPU may pick, so a read that a missing barrier leaves unordered with another warp's write sees
// the wrong value, rather than by chance of OS scheduling. A warp's lanes meet at its warp-wide instructions
// (shuffles, ballots, ldmatrix, mma.sync). A barrier that some threads never reach is reported as a
// deadlock. The tensor-core kernels' PTX is C++ (ptx_emulation.h). It includes "kernel.inc" (the prelude and
// one kernel family's source, which the emulate_cuda_*.sh scripts extract from the Swift files); dynamic
// shared memory is one buffer of EMULATED_DYNAMIC_SHARED_BYTES. Used by every emulate_cuda_*.cpp.
#pragma once
#include <ucontext.h>
#include <vector>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <algorithm>
#include <atomic>
#include <functional>
using std::min; using std::max;
#define __CUDA_ARCH__ 800  // the tensor-core kernels' guard: the emulator has their instructions
#ifndef EMULATED_DYNAMIC_SHARED_BYTES
#define EMULATED_DYNAMIC_SHARED_BYTES (227 * 1024)  // the most an H100/H200 block may ask for
#endif
struct D3 { int x = 0, y = 0, z = 0; };
D3 threadIdx, blockIdx;  // the running thread's: the scheduler sets them before it resumes a fiber
D3 blockDim, gridDim;

// The block's threads as fibers, and where each one waits.
struct Fiber {
    enum State { runnable, atWarpBarrier, atBlockBarrier, finished } state = runnable;
    ucontext_t context;
    std::vector<char> stack;
};
struct BlockScheduler {
    std::vector<Fiber> fibers;
    ucontext_t scheduler;
    int current = -1;
    long long serial = 0;   // counts the blocks run
    std::mt19937 order{[] { const char* s = getenv("EMULATION_SEED"); return s ? (unsigned)atoi(s) : 1u; }()};
    std::function<void()> body;

    // Back to the scheduler until the barrier releases this thread.
    void wait(Fiber::State barrier) {
        Fiber& f = fibers[current];
        f.state = barrier;
        swapcontext(&f.context, &scheduler);
    }
    static void start();
    void run(int threads, D3 block);
    // Lanes of warp w: [first, last).
    int first(int w) const { return 32 * w; }
    int last(int w) const { return min(32 * w + 32, (int)fibers.size()); }
    // Releases warp w's barrier if every live lane waits at it.
    bool releaseWarp(int w) {
        bool waiting = false, all = true;
        for (int t = first(w); t < last(w); t++) {
            waiting |= fibers[t].state == Fiber::atWarpBarrier;
            all &= fibers[t].state == Fiber::atWarpBarrier || fibers[t].state == Fiber::finished;
        }
        if (!(waiting && all)) return false;
        for (int t = first(w); t < last(w); t++) if (fibers[t].state == Fiber::atWarpBarrier) fibers[t].state = Fiber::runnable;
        return true;
    }
    // Runs warp w until none of its lanes can run (they wait at __syncthreads, or have finished).
    void runWarp(int w) {
        std::vector<int> lanes;
        do {
            lanes.clear();
            for (int t = first(w); t < last(w); t++) if (fibers[t].state == Fiber::runnable) lanes.push_back(t);
            std::shuffle(lanes.begin(), lanes.end(), order);
            for (int t : lanes) {
                current = t;
                threadIdx = {t, 0, 0};
                swapcontext(&scheduler, &fibers[t].context);
            }
        } while (!lanes.empty() || releaseWarp(w));
    }
    // Releases __syncthreads if every live thread waits at it.
    bool releaseBlock() {
        bool waiting = false, all = true;
        for (const Fiber& f : fibers) {
            waiting |= f.state == Fiber::atBlockBarrier;
            all &= f.state == Fiber::atBlockBarrier || f.state == Fiber::finished;
        }
        if (!(waiting && all)) return false;
        for (Fiber& f : fibers) if (f.state == Fiber::atBlockBarrier) f.state = Fiber::runnable;
        return true;
    }
};
BlockScheduler block;

void BlockScheduler::start() {
    block.body();
    block.fibers[block.current].state = Fiber::finished;   // uc_link returns to the scheduler
}

void BlockScheduler::run(int threads, D3 blockIndex) {
    serial++;
    fibers.resize(threads);
    for (int t = 0; t < threads; t++) {
        Fiber& f = fibers[t];
        f.state = Fiber::runnable;
        f.stack.resize(256 * 1024);
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack.data();
        f.context.uc_stack.ss_size = f.stack.size();
        f.context.uc_link = &scheduler;
        makecontext(&f.context, start, 0);
    }
    blockIdx = blockIndex;
    const int warps = (threads + 31) / 32;
    std::vector<int> ready;
    while (true) {
        ready.clear();
        for (int w = 0; w < warps; w++)
            for (int t = first(w); t < last(w); t++) if (fibers[t].state == Fiber::runnable) { ready.push_back(w); break; }
        if (!ready.empty()) {
            runWarp(ready[std::uniform_int_distribution<int>(0, (int)ready.size() - 1)(order)]);
            continue;
        }
        if (releaseBlock()) continue;
        if (std::all_of(fibers.begin(), fibers.end(), [](const Fiber& f) { return f.state == Fiber::finished; })) return;
        fprintf(stderr, "deadlock in block (%d, %d, %d): threads wait at barriers others never reach:", blockIndex.x,
                blockIndex.y, blockIndex.z);
        for (int t = 0; t < threads; t++) fprintf(stderr, " %d:%s", t, fibers[t].state == Fiber::finished ? "done"
                                                  : fibers[t].state == Fiber::atWarpBarrier ? "warp" : "block");
        fprintf(stderr, "\n");
        abort();
    }
}

// The meeting point of a warp-wide instruction: every live lane of the warp has posted its operands.
static inline void warp_meet() { block.wait(Fiber::atWarpBarrier); }
static inline void __syncthreads() { block.wait(Fiber::atBlockBarrier); }

double shuffleSlots[32][32];  // float, int and double values pass through a double exactly
template <class T> static inline T __shfl_xor_sync(unsigned, T v, int o) {
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    shuffleSlots[w][l] = v; warp_meet();
    T r = (T)shuffleSlots[w][l ^ o]; warp_meet();
    return r;
}
unsigned ballotSlots[32][32];
static inline unsigned __ballot_sync(unsigned, int predicate) {
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    ballotSlots[w][l] = predicate != 0; warp_meet();
    unsigned bits = 0; for (int i = 0; i < 32; i++) bits |= ballotSlots[w][i] << i;
    warp_meet();
    return bits;
}
static inline int __popc(unsigned v) { return __builtin_popcount(v); }
// the GPU's atomics: only their result is defined, not the order of the additions
template <class T> static inline T atomicAdd(T* p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }
int votes[1024];
static inline int __syncthreads_and(int predicate) {
    votes[threadIdx.x] = predicate != 0; __syncthreads();
    int all = 1; for (int t = 0; t < blockDim.x; t++) all &= votes[t];
    __syncthreads();
    return all;
}
static inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
static inline float __int_as_float(long long i) { unsigned u = (unsigned)i; float f; memcpy(&f, &u, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
struct uint4 { unsigned x, y, z, w; };
struct float4 { float x, y, z, w; };
struct float2 { float x, y; };
struct uint2 { unsigned x, y; };
static inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
#define __expf expf
#define __constant__ static
static inline float __fmul_rn(float a, float b) { volatile float p = a * b; return p; }
static inline float __fadd_rn(float a, float b) { volatile float p = a + b; return p; }
static inline float __fsub_rn(float a, float b) { volatile float p = a - b; return p; }
static inline float __fdiv_rn(float a, float b) { volatile float p = a / b; return p; }
#define __logf logf
#define __powf powf  // the GPU's fast __powf and __fdividef are approximate (a few ulp); exact here
static inline float __fdividef(float a, float b) { return a / b; }
#define __device__
#define __global__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(x)
#define __grid_constant__
#define __align__(n) __attribute__((aligned(n)))
#include "ptx_emulation.h"
#include "kernel.inc"

// max |gpu − ref| / max |ref| over finite reference values; NaN or a missing value counts as a failure.
struct Measure {
    double diff = 0, ref = 0; int bad = 0;
    void add(float g, double r) {
        if (!std::isfinite(g)) { bad++; return; }
        diff = std::max(diff, fabs(g - r)); ref = std::max(ref, fabs(r));
    }
    double rel() const { return diff / std::max(ref, 1e-30); }
    bool ok(double bound) const { return bad == 0 && rel() < bound; }
};

// What an element no kernel wrote holds: NaN patterns that no kernel writes (to_storage's NaN is 0x7FC0,
// arithmetic's 0x7FC00000 or 0xFFC00000).
template <class T> T poison();
template <> inline unsigned short poison() { return 0x7FA5; }
template <> inline unsigned int poison() { return 0x7FA5A5A5u; }
template <> inline float poison() { return __uint_as_float(0x7FA5A5A5u); }
template <> inline int poison() { return 0x7FA5A5A5; }

// A kernel operand with margins of `pattern` on both sides, its body starting `misalign` elements past a
// 16-byte boundary (0: aligned for every vector path): a write outside the body's n elements changes a
// margin. `reset` restores what it was made with, so two runs start from the same bits at the same addresses.
// The trailing margin holds at least `after` elements (no fewer than `margin`): a grid whose idle threads
// would write rows past the end needs one as long as those rows.
template <class T> struct Guarded {
    static constexpr size_t margin = 64;
    std::vector<T> all, initial;
    size_t begin, n;
    Guarded(const std::vector<T>& body, T pattern = poison<T>(), int misalign = 0, size_t after = margin)
        : all(body.size() + margin + std::max(after, margin) + 16, pattern), begin(margin), n(body.size()) {
        while ((uintptr_t)(all.data() + begin) % 16) begin++;
        begin += misalign;
        std::copy(body.begin(), body.end(), all.begin() + begin);
        initial = all;
    }
    // n elements of `pattern`, for a kernel to write
    explicit Guarded(size_t n, T pattern = poison<T>(), size_t after = margin)
        : Guarded(std::vector<T>(n, pattern), pattern, 0, after) {}
    T* data() { return all.data() + begin; }
    T& operator[](size_t i) { return all[begin + i]; }
    T operator[](size_t i) const { return all[begin + i]; }
    T start(size_t i) const { return initial[begin + i]; }
    std::vector<T> values() const { return {all.begin() + begin, all.begin() + begin + n}; }
    void reset() { std::copy(initial.begin(), initial.end(), all.begin()); }
    bool unchanged() const { return memcmp(all.data(), initial.data(), all.size() * sizeof(T)) == 0; }
    size_t marginElements() const { return all.size() - n; }
    size_t marginsChanged() const {
        size_t changed = 0;
        for (size_t i = 0; i < all.size(); i++)
            if ((i < begin || i >= begin + n) && memcmp(&all[i], &initial[i], sizeof(T))) changed++;
        return changed;
    }
    bool marginsIntact() const { return marginsChanged() == 0; }
};

// `eachBlock` runs before each block's threads start (to poison shared memory, check a canary).
template <class F> void launch(D3 grid, int threads, F body, std::function<void()> eachBlock = {}) {
    gridDim = grid; blockDim = {threads, 1, 1};
    block.body = body;
    for (int z = 0; z < grid.z; z++) for (int y = 0; y < grid.y; y++) for (int x = 0; x < grid.x; x++) {
        if (eachBlock) eachBlock();
        block.run(threads, {x, y, z});
    }
}

static float bf(float f) { return to_f32(to_storage(f)); }
