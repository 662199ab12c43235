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

int main() {
    bool ok = true;
    ok &= check(8 * 1000, 64, true, 3, 64);     // 1000 units over 192 threads: two turns, the second partial
    ok &= check(8 * 1000, 64, false, 3, 64);
    ok &= check(8 * 777, 8, true, 2, 32);       // the smallest block the kernel takes
    ok &= check(8 * 37, 64, true, 1, 64);       // fewer units than threads
    ok &= check(8 * 4096, 128, true, 5, 96);    // a multiple of the unit, odd grid
    printf(ok ? "all NF4 emulation checks passed\n" : "SOME NF4 EMULATION CHECKS FAILED\n");
    return ok ? 0 : 1;
}
