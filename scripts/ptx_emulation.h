// The inline-PTX functions of the tensor-core attention kernels (FlashAttentionKernels.swift: fa_ldsm,
// fa_ldsm_trans, fa_mma, fa_pack, fa_cp_async, fa_cp_commit, fa_cp_wait), written in C++ as the PTX ISA
// specifies the instructions, for cuda_emulation.h (emulate_cuda.sh leaves the asm versions out of
// kernel.inc). Warp-wide instructions (ldmatrix, mma.sync) post each lane's operands, meet at the warp's
// barrier, compute each lane's part from every lane's posts, and meet again before the posts are reused.
// cp.async copies wait in per-thread groups and land at their commit or at cp.async.wait_group, at random,
// so a kernel that reads a tile before waiting for it reads the poison the emulator filled shared memory
// with, and one that overwrites a tile another warp still reads shows that too.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <deque>

struct WarpPost { const unsigned short* address; unsigned a[4], b[2]; };
WarpPost warpPosts[32][32];

// Shared-memory accesses inside the dynamic buffer must stay within what the launch declared.
const char* dynamicShared = nullptr;
size_t dynamicSharedCapacity = 0, dynamicSharedDeclared = 0;
static inline void check_shared(const void* p, size_t bytes, const char* what) {
    if ((uintptr_t)p % 16) { fprintf(stderr, "%s: address %p is not 16-byte aligned\n", what, p); abort(); }
    const char* c = (const char*)p;
    if (dynamicShared && c >= dynamicShared && c < dynamicShared + dynamicSharedCapacity
        && c + bytes > dynamicShared + dynamicSharedDeclared) {
        fprintf(stderr, "%s: bytes %td..%td of dynamic shared memory, %zu declared\n", what, c - dynamicShared,
                c - dynamicShared + (ptrdiff_t)bytes, dynamicSharedDeclared);
        abort();
    }
}

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lane 8m + i gives row i of matrix m; register m of
// lane l gets row l/4, columns 2(l%4) and 2(l%4) + 1 of matrix m (of its transpose with .trans).
static inline void ldmatrix_x4(unsigned (&r)[4], const unsigned short* p, bool transposed) {
    const int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    check_shared(p, 16, "ldmatrix");
    warpPosts[w][l].address = p;
    warp_meet();
    for (int m = 0; m < 4; m++) {
        unsigned short lo, hi;
        if (transposed) {
            lo = warpPosts[w][8 * m + 2 * (l % 4)].address[l / 4];
            hi = warpPosts[w][8 * m + 2 * (l % 4) + 1].address[l / 4];
        } else {
            const unsigned short* row = warpPosts[w][8 * m + l / 4].address;
            lo = row[2 * (l % 4)]; hi = row[2 * (l % 4) + 1];
        }
        r[m] = lo | (unsigned)hi << 16;
    }
    warp_meet();
}
static inline void fa_ldsm(unsigned (&r)[4], const unsigned short* p) { ldmatrix_x4(r, p, false); }
static inline void fa_ldsm_trans(unsigned (&r)[4], const unsigned short* p) { ldmatrix_x4(r, p, true); }

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (.f16 with f16 storage), c += a b (g = lane/4, t = lane%4):
// A regs {row g, k 2t}, {row g+8, k 2t}, {row g, k 2t+8}, {row g+8, k 2t+8}; B regs {k 2t, n g}, {k 2t+8, n g};
// C {row g, n 2t, 2t+1}, {row g+8, n 2t, 2t+1}; the lower k of a pair in the low half. Products of bf16
// (f16) are exact in f32; the 16 are summed in double and rounded once (the hardware's order is unspecified).
#ifdef EMULATED_STORAGE_F16
// The f16 prelude's conversions (cvt.f32.f16; cvt.rn.f16.f32: round to nearest even), which are PTX too.
static inline float to_f32(unsigned short h) { _Float16 f; memcpy(&f, &h, 2); return (float)f; }
static inline unsigned short to_storage(float f) { _Float16 h = (_Float16)f; unsigned short u; memcpy(&u, &h, 2); return u; }
static inline float storage_value(unsigned pair, int half) { return to_f32(half ? pair >> 16 : pair & 0xffffu); }
#else
static inline float storage_value(unsigned pair, int half) { return __uint_as_float(half ? pair & 0xffff0000u : pair << 16); }
#endif
static inline void fa_mma(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    const int w = threadIdx.x >> 5, l = threadIdx.x & 31, g = l / 4, t = l % 4;
    for (int e = 0; e < 4; e++) warpPosts[w][l].a[e] = a[e];
    warpPosts[w][l].b[0] = b0; warpPosts[w][l].b[1] = b1;
    warp_meet();
    for (int e = 0; e < 4; e++) {
        const int row = g + 8 * (e >> 1), n = 2 * t + (e & 1);
        double sum = c[e];
        for (int k = 0; k < 16; k++) {
            const WarpPost& pa = warpPosts[w][(row % 8) * 4 + (k % 8) / 2];
            const WarpPost& pb = warpPosts[w][n * 4 + (k % 8) / 2];
            sum += (double)storage_value(pa.a[(row >= 8) + 2 * (k >= 8)], k % 2) * storage_value(pb.b[k >= 8], k % 2);
        }
        c[e] = (float)sum;
    }
    warp_meet();
}

// cvt.rn.bf16x2.f32 (cvt.rn.f16x2.f32): round to nearest even (NaN to a quiet NaN), `hi` to the upper half.
static inline unsigned storage_rounded(float f) {
#ifdef EMULATED_STORAGE_F16
    return to_storage(f);
#else
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
#endif
}
static inline unsigned fa_pack(float lo, float hi) { return storage_rounded(lo) | storage_rounded(hi) << 16; }

// cp.async.cg.shared.global (16 bytes; source size 0 fills zeros), commit_group, wait_group N.
struct PendingCopy { unsigned short* destination; const unsigned short* source; };
// Each thread's copies in flight; a block starts with none.
struct CopyQueue { long long block = -1; std::vector<PendingCopy> open; std::deque<std::vector<PendingCopy>> committed; };
CopyQueue copyQueues[1024];
static inline CopyQueue& copy_queue() {
    CopyQueue& q = copyQueues[threadIdx.x];
    if (q.block != block.serial) q = {block.serial, {}, {}};
    return q;
}
static inline void fa_cp_async(unsigned short* s, const unsigned short* g, bool inside) {
    check_shared(s, 16, "cp.async");
    if ((uintptr_t)g % 16) { fprintf(stderr, "cp.async: global address %p is not 16-byte aligned\n", (const void*)g); abort(); }
    copy_queue().open.push_back({s, inside ? g : nullptr});
}
static inline void land(const std::vector<PendingCopy>& group) {
    for (const PendingCopy& c : group) {
        if (c.source) memcpy(c.destination, c.source, 16);
        else memset(c.destination, 0, 16);
    }
}
// A group lands at once or at its wait, at random: a copy may complete any time in between, so both a read
// before the wait and an overwrite of a tile another warp still reads show.
// A group that landed stays in the queue, empty: wait_group N counts the N most recent groups either way.
static inline void fa_cp_commit() {
    CopyQueue& q = copy_queue();
    if (block.order() & 1) { land(q.open); q.open.clear(); }
    q.committed.push_back(std::move(q.open));
    q.open.clear();
}
static inline void fa_cp_wait(int pending) {
    CopyQueue& q = copy_queue();
    while ((int)q.committed.size() > pending) {
        land(q.committed.front());
        q.committed.pop_front();
    }
}
