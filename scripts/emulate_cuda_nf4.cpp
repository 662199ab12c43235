// The NF4 dequantization kernels (NF4Kernels.swift) on the CPU (cuda_emulation.h): the wide kernel (four
// units of eight elements a thread) must give the bits of the one-byte-a-thread kernel and of a plain loop
// (code × scale, the scale code[q] × nested + offset, each rounded once), with plain and double-quantized
// absmax, on grids small enough that every thread takes several grid-stride turns and the last turn
// stops inside its four units. Run scripts/emulate_cuda_nf4.sh.
#include <bit>
#include "cuda_emulation.h"

static std::mt19937 gen(7);

static int check(long long n, int block, bool nested, int blocks, int threads) {
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> real(-1, 1);
    const long long scales = (n + block - 1) / block;
    const int nestedBlock = 256;
    std::vector<unsigned char> packed((n + 1) / 2 + 16), q(scales);
    for (auto& b : packed) b = (unsigned char)byte(gen);
    for (auto& b : q) b = (unsigned char)byte(gen);
    std::vector<float> absmax(scales), codebook(256), nestedScales((scales + nestedBlock - 1) / nestedBlock);
    for (auto& v : absmax) v = real(gen);
    for (auto& v : codebook) v = real(gen);
    for (auto& v : nestedScales) v = real(gen);
    const float offset = 0.0371f;
    // the plain loop
    std::vector<storage_t> reference(n);
    for (long long i = 0; i < n; i++) {
        const long long b = i / block;
        const float scale = nested ? __fadd_rn(__fmul_rn(codebook[q[b]], nestedScales[b / nestedBlock]), offset) : absmax[b];
        const unsigned byteValue = packed[i / 2];
        reference[i] = to_storage(__fmul_rn(nf4_code[i % 2 == 0 ? byteValue >> 4 : byteValue & 15u], scale));
    }
    const float* am = nested ? nullptr : absmax.data();
    const unsigned char* qa = nested ? q.data() : nullptr;
    std::vector<storage_t> wide(n, 0xFFFF), scalar(n, 0xFFFF);
    launch({blocks, 1, 1}, threads, [&] {
        // block sizes as shifts (both are powers of two here)
        dequantize_nf4_x8_16(packed.data(), am, qa, nestedScales.data(), codebook.data(), offset, std::countr_zero(unsigned(nestedBlock)),
                             std::countr_zero(unsigned(block)), wide.data(), n);
    });
    launch({blocks, 1, 1}, threads, [&] {
        dequantize_nf4_16(packed.data(), am, qa, nestedScales.data(), codebook.data(), offset, nestedBlock, block, scalar.data(), n);
    });
    long long wrong = 0, wrongScalar = 0;
    for (long long i = 0; i < n; i++) { wrong += wide[i] != reference[i]; wrongScalar += scalar[i] != reference[i]; }
    const bool ok = wrong == 0 && wrongScalar == 0;
    printf("n %-7lld block %-3d %-6s grid %d×%-3d  wide: %lld of %lld differ, one byte a thread: %lld  %s\n", n, block,
           nested ? "nested" : "plain", blocks, threads, wrong, n, wrongScalar, ok ? "PASS" : "FAIL");
    return ok;
}

// The layout CUDABackend's nf4Job writes, field by field (72 bytes a job).
#include <cstddef>
static_assert(offsetof(NF4Job, out) == 40 && offsetof(NF4Job, n) == 48 && offsetof(NF4Job, offset) == 56 &&
              offsetof(NF4Job, nested_shift) == 60 && offsetof(NF4Job, block_shift) == 64 && sizeof(NF4Job) == 72 &&
              sizeof(NF4Jobs) == 32 * 72, "NF4Job layout");

// dequantize_nf4_x8_jobs: three weights (plain and double-quantized absmax, different sizes and blocks) in one
// launch give each the bits of its own dequantize_nf4_x8_16 launch; the grid fits the largest, so the smaller
// jobs' extra threads must do nothing.
static bool jobsCase() {
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> real(-1, 1);
    struct Spec { long long n; int block; bool nested; };
    const Spec specs[] = {{8 * 1000, 64, true}, {8 * 37, 64, false}, {8 * 300, 128, true}};
    const int nestedBlock = 256;
    std::vector<std::vector<unsigned char>> packed(3), q(3);
    std::vector<std::vector<float>> absmax(3), codebook(3), nestedScales(3);
    std::vector<std::vector<storage_t>> viaJobs(3), alone(3);
    NF4Jobs jobs{};
    for (int j = 0; j < 3; j++) {
        const Spec& sp = specs[j];
        const long long scales = (sp.n + sp.block - 1) / sp.block;
        packed[j].resize(sp.n / 2); q[j].resize(scales); absmax[j].resize(scales); codebook[j].resize(256);
        nestedScales[j].resize((scales + nestedBlock - 1) / nestedBlock);
        for (auto& b : packed[j]) b = (unsigned char)byte(gen);
        for (auto& b : q[j]) b = (unsigned char)byte(gen);
        for (auto& v : absmax[j]) v = real(gen);
        for (auto& v : codebook[j]) v = real(gen);
        for (auto& v : nestedScales[j]) v = real(gen);
        viaJobs[j].assign(sp.n, 0xFFFF); alone[j].assign(sp.n, 0xFFFF);
        jobs.job[j] = {packed[j].data(), sp.nested ? nullptr : absmax[j].data(), sp.nested ? q[j].data() : nullptr,
                       nestedScales[j].data(), codebook[j].data(), viaJobs[j].data(), sp.n, 0.0371f,
                       std::countr_zero(unsigned(nestedBlock)), std::countr_zero(unsigned(sp.block)), 0};
    }
    launch({3, 3, 1}, 64, [&] { dequantize_nf4_x8_jobs(jobs); });
    bool ok = true;
    for (int j = 0; j < 3; j++) {
        const Spec& sp = specs[j];
        launch({2, 1, 1}, 64, [&] {
            dequantize_nf4_x8_16(packed[j].data(), sp.nested ? nullptr : absmax[j].data(), sp.nested ? q[j].data() : nullptr,
                                 nestedScales[j].data(), codebook[j].data(), 0.0371f, std::countr_zero(unsigned(nestedBlock)),
                                 std::countr_zero(unsigned(sp.block)), alone[j].data(), sp.n);
        });
        ok = ok && viaJobs[j] == alone[j];
    }
    printf("jobs: 3 dequantizations in one launch (nested and plain absmax, blocks 64 and 128) %s\n", ok ? "PASS" : "FAIL");
    return ok;
}

int main() {
    bool ok = true;
    ok &= check(8 * 1000, 64, true, 3, 64);     // 1000 units over 192 threads: two turns, the second partial
    ok &= check(8 * 1000, 64, false, 3, 64);
    ok &= check(8 * 777, 8, true, 2, 32);       // the smallest block the kernel takes
    ok &= check(8 * 37, 64, true, 1, 64);       // fewer units than threads
    ok &= check(8 * 4096, 128, true, 5, 96);    // a multiple of the unit, odd grid
    ok &= jobsCase();
    printf(ok ? "all NF4 emulation checks passed\n" : "SOME NF4 EMULATION CHECKS FAILED\n");
    return ok ? 0 : 1;
}
