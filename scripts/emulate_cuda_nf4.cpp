// The NF4 dequantization kernels (NF4Kernels.swift) on the CPU (cuda_emulation.h): the wide kernel (four
// units of eight elements a thread) must give the bits of the one-byte-a-thread kernel and of a plain loop
// (code × scale, the scale code[q] × nested + offset, each rounded once), with plain and double-quantized
// absmax, on grids small enough that every thread takes several grid-stride turns and the last turn
// stops inside its four units. The quantization kernel (quantize_nf4_16, quantize_nf4_f32) must give the bits
// of a plain C++ transcription of the Swift host quantizer (NF4.quantize's codes and absmax). Run
// scripts/emulate_cuda_nf4.sh.
#include <bit>
#include <cstdint>
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


// NF4.codes on the host (Quant/NF4Quantization.swift, BlockwiseScaling.swift, NF4.swift), one element after another:
// per block m = the largest |x| (Swift's abs clears the sign bit); a full block multiplies by 1 / max(m, tiny), the
// partial last block divides by max(m, tiny) and stores that; clamped to [-1, 1]; the code is the count of
// midpoints strictly below (CodeBook.bucket's binary search); an odd count is padded with the code of 0. Swift's
// max(x, y) is y >= x ? y : x and min(x, y) is y < x ? y : x (NaN-ordered as they are).
static float swiftMax(float x, float y) { return y >= x ? y : x; }
static float swiftMin(float x, float y) { return y < x ? y : x; }
static unsigned hostCode(float v) {
    float midpoints[15];
    for (int i = 0; i < 15; i++) midpoints[i] = (nf4_code[i] + nf4_code[i + 1]) / 2;
    int low = 0, high = 15;
    while (low < high) {
        const int mid = (low + high) / 2;
        if (midpoints[mid] < v) low = mid + 1; else high = mid;
    }
    return (unsigned)low;
}
static void hostQuantize(const std::vector<float>& x, long long block, std::vector<unsigned char>& packed,
                         std::vector<float>& absmax) {
    const float tiny = 1e-38f;   // BlockwiseScaling.tiny
    const long long n = (long long)x.size(), blocks = (n + block - 1) / block;
    std::vector<float> scaled(n);
    absmax.assign(blocks, 0);
    for (long long b = 0; b < blocks; b++) {
        const long long lo = b * block, hi = std::min((b + 1) * block, n);
        float m = 0;
        for (long long i = lo; i < hi; i++) m = swiftMax(m, std::fabs(x[i]));
        auto clamp = [](float v) { return swiftMin(swiftMax(v, -1.0f), 1.0f); };
        if (hi - lo == block) {
            absmax[b] = m;
            const float reciprocal = 1 / swiftMax(m, tiny);
            for (long long i = lo; i < hi; i++) scaled[i] = clamp(x[i] * reciprocal);
        } else {
            const float am = swiftMax(m, tiny);
            absmax[b] = am;
            for (long long i = lo; i < hi; i++) scaled[i] = clamp(x[i] / am);
        }
    }
    packed.assign((n + 1) / 2, 0);
    for (long long i = 0; i < (long long)packed.size(); i++) {
        const unsigned high = hostCode(scaled[2 * i]), low = 2 * i + 1 < n ? hostCode(scaled[2 * i + 1]) : hostCode(0);
        packed[i] = (unsigned char)(high << 4 | low);
    }
}

static unsigned floatBits(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
static float bitsFloat(unsigned u) { float f; memcpy(&f, &u, 4); return f; }

// Values that probe every branch, block by block: a block's largest magnitude s (from 1e-30 to 1e30, or 1) held
// by one element, the others within ±s: uniform, or (f32 input) s × a code book midpoint and its neighbours a few
// ulps away, where multiplying by 1 / s and dividing by s can round to opposite sides (bucketize's ties); blocks of
// zeros (+0 and -0); and here and there bf16's largest finite, ±inf, NaN (a NaN never becomes the absmax; inf
// makes the block's products NaN) and subnormals (bf16 has them too).
static std::vector<float> probeValues(long long n, bool f32, int block) {
    std::uniform_real_distribution<float> unit(-1, 1), half(0.5f, 1);
    std::uniform_int_distribution<int> kind(0, 63), exponent(-30, 30), level(0, 14), ulps(-3, 3);
    std::vector<float> x(n);
    for (long long lo = 0; lo < n; lo += block) {
        const long long b = lo / block, hi = std::min(lo + block, n);
        const float scale = b % 4 == 0 ? 1.0f : half(gen) * std::pow(10.0f, (float)(b % 4 == 1 ? exponent(gen) : 0));
        for (long long i = lo; i < hi; i++) {
            float v = unit(gen) * scale;
            if (f32 && i % 3 != 0) {
                const int k = level(gen);
                v = (nf4_code[k] + nf4_code[k + 1]) / 2 * scale;
                for (int u = ulps(gen); u != 0; u += u > 0 ? -1 : 1) v = std::nextafter(v, u > 0 ? INFINITY : -INFINITY);
            }
            switch (kind(gen)) {
            case 0: v = bitsFloat(0x7f7f0000u); break;   // bf16's largest finite
            case 1: v = -bitsFloat(0x7f7f0000u); break;
            case 2: if (b % 5 == 1) v = INFINITY; break;
            case 3: if (b % 5 == 2) v = -INFINITY; break;
            case 4: if (b % 5 == 3) v = NAN; break;
            case 5: v = bitsFloat(0x00010000u * (1 + i % 7)); break;   // subnormals
            default: break;
            }
            if (b % 13 == 5) v = 0;                       // a block of zeros
            if (b % 13 == 6) v = i % 2 ? -0.0f : 0.0f;    // of signed zeros
            x[i] = v;
        }
        if (b % 13 != 5 && b % 13 != 6) x[lo + (b * 7) % (hi - lo)] = b % 2 ? scale : -scale;
    }
    return x;
}

// quantize_nf4 on n values (16-bit storage, or f32) against hostQuantize of the values as the host downloads them
// (bf16 widened by the same shift); x and packed may start unaligned (the scalar loads and byte stores).
static bool quantizeCase(long long n, int block, bool f32, int blocks, int threads, int xOffset = 0, int packedOffset = 0,
                         bool quiet = false) {
    std::vector<float> values = probeValues(n, f32, block);
    std::vector<storage_t> bits(n + xOffset);
    std::vector<float> floats(n + xOffset);
    for (long long i = 0; i < n; i++) {
        if (f32) floats[xOffset + i] = values[i];
        else { bits[xOffset + i] = to_storage(values[i]); values[i] = to_f32(bits[xOffset + i]); }
    }
    std::vector<unsigned char> expectedPacked;
    std::vector<float> expectedAbsmax;
    hostQuantize(values, block, expectedPacked, expectedAbsmax);
    const long long packedBytes = (n + 1) / 2, scales = (n + block - 1) / block;
    // poisoned, with guard bytes after the end: every byte must be written and none past it
    std::vector<unsigned char> packed(packedOffset + packedBytes + 16, 0xAB);
    std::vector<float> absmax(scales + 4, bitsFloat(0x7fbadbadu));
    const int laneShift = std::countr_zero(unsigned(block / 8));
    const long long units = scales << laneShift;
    launch({blocks, 1, 1}, threads, [&] {
        if (f32) quantize_nf4_f32(floats.data() + xOffset, packed.data() + packedOffset, absmax.data(), 1e-38f, laneShift, n);
        else quantize_nf4_16(bits.data() + xOffset, packed.data() + packedOffset, absmax.data(), 1e-38f, laneShift, n);
    });
    long long wrongCodes = 0, wrongScales = 0, overrun = 0;
    for (long long i = 0; i < packedBytes; i++) wrongCodes += packed[packedOffset + i] != expectedPacked[i];
    for (long long b = 0; b < scales; b++) wrongScales += floatBits(absmax[b]) != floatBits(expectedAbsmax[b]);
    for (int i = 0; i < packedOffset; i++) overrun += packed[i] != 0xAB;
    for (int i = 0; i < 16; i++) overrun += packed[packedOffset + packedBytes + i] != 0xAB;
    for (int i = 0; i < 4; i++) overrun += floatBits(absmax[scales + i]) != 0x7fbadbadu;
    const bool ok = wrongCodes == 0 && wrongScales == 0 && overrun == 0;
    if (quiet && ok) return ok;
    printf("quantize n %-6lld block %-3d %-4s grid %d×%-3d x+%d packed+%d (%lld units): %lld of %lld bytes differ, %lld of %lld absmax, "
           "%lld written outside  %s\n", n, block, f32 ? "f32" : "bf16", blocks, threads, xOffset, packedOffset, units, wrongCodes,
           packedBytes, wrongScales, scales, overrun, ok ? "PASS" : "FAIL");
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
    ok &= quantizeCase(64 * 300, 64, false, 3, 64);           // full blocks only; two grid-stride turns, the second partial
    ok &= quantizeCase(64 * 300 + 37, 64, false, 2, 96);      // a partial last block, an odd count
    ok &= quantizeCase(64 * 41 + 8, 64, false, 3, 64);        // a partial block of one unit
    ok &= quantizeCase(5, 64, false, 1, 32);                  // a single partial block, fewer than 8 elements
    ok &= quantizeCase(64 * 97 + 19, 64, true, 2, 64);        // f32 input: exact midpoints and their neighbours
    ok &= quantizeCase(64 * 97, 64, true, 2, 64);             // the last block full: it multiplies
    ok &= quantizeCase(64 * 97 + 19, 64, false, 2, 64, 1, 1); // unaligned x and packed: scalar loads, byte stores
    ok &= quantizeCase(64 * 50 + 3, 64, true, 2, 64, 3, 2);
    ok &= quantizeCase(8 * 513 + 3, 8, false, 2, 64);         // one lane a block (no shuffles)
    ok &= quantizeCase(256 * 21 + 100, 256, false, 2, 64);    // 32 lanes a block (the whole warp)
    ok &= quantizeCase(32 * 77 + 31, 32, true, 3, 32);
    // The partial last block divides where full blocks multiply: 60 f32 tensors ending in one of 8 to 63 elements.
    bool partial = true;
    for (int r = 8; r < 64; r++) partial &= quantizeCase(64 * 2 + r, 64, true, 1, 32, 0, 0, true);
    for (int r : {1, 2, 3, 5}) partial &= quantizeCase(64 + r, 64, true, 1, 32, 0, 0, true);
    printf("quantize: 60 f32 tensors with partial last blocks of 1 to 63 elements %s\n", partial ? "PASS" : "FAIL");
    ok &= partial;
    printf(ok ? "all NF4 emulation checks passed\n" : "SOME NF4 EMULATION CHECKS FAILED\n");
    return ok ? 0 : 1;
}
