// Runs CUDA kernel source on the CPU, for checking kernels on a machine without a GPU: one std::thread
// per CUDA thread, blocks one after another, warp shuffles and __syncthreads through barriers, the
// tensor-core kernels' PTX in C++ (ptx_emulation.h). It includes "kernel.inc" (the prelude and one kernel
// family's source, which the emulate_cuda_*.sh scripts extract from the Swift files); dynamic shared memory
// is one buffer of EMULATED_DYNAMIC_SHARED_BYTES. Used by every emulate_cuda_*.cpp.
#pragma once
#include <barrier>
#include <thread>
#include <vector>
#include <cmath>
#include <cstring>
#include <cstdio>
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
thread_local D3 threadIdx, blockIdx;
D3 blockDim, gridDim;
std::barrier<>* blockBarrier;
std::barrier<>* warpBarrier[32];
double shuffleSlots[32][32];  // float, int and double values pass through a double exactly
template <class T> static inline T __shfl_xor_sync(unsigned, T v, int o) {
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    shuffleSlots[w][l] = v; warpBarrier[w]->arrive_and_wait();
    T r = (T)shuffleSlots[w][l ^ o]; warpBarrier[w]->arrive_and_wait();
    return r;
}
static inline void __syncthreads() { blockBarrier->arrive_and_wait(); }
unsigned ballotSlots[32][32];
static inline unsigned __ballot_sync(unsigned, int predicate) {
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    ballotSlots[w][l] = predicate != 0; warpBarrier[w]->arrive_and_wait();
    unsigned bits = 0; for (int i = 0; i < 32; i++) bits |= ballotSlots[w][i] << i;
    warpBarrier[w]->arrive_and_wait();
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

// `eachBlock` runs before each block's threads start (to poison shared memory, check a canary).
template <class F> void launch(D3 grid, int threads, F body, std::function<void()> eachBlock = {}) {
    gridDim = grid; blockDim = {threads, 1, 1};
    for (int z = 0; z < grid.z; z++) for (int y = 0; y < grid.y; y++) for (int x = 0; x < grid.x; x++) {
        if (eachBlock) eachBlock();
        std::barrier<> bb(threads); blockBarrier = &bb;
        std::vector<std::barrier<>*> wb;
        for (int w = 0; w < threads / 32; w++) { warpBarrier[w] = new std::barrier<>(32); }
        std::vector<std::thread> ts;
        for (int t = 0; t < threads; t++) ts.emplace_back([=] { threadIdx = {t, 0, 0}; blockIdx = {x, y, z}; body(); });
        for (auto& t : ts) t.join();
        for (int w = 0; w < threads / 32; w++) delete warpBarrier[w];
    }
}

static float bf(float f) { return to_f32(to_storage(f)); }
