// The split-bf16 LoRA kernels (SplitBF16Kernels.swift) on the CPU (cuda_emulation.h): split_bf16 writing
// stacked planes and side-by-side planes into the columns of a wider matrix (a row stride, and an offset as
// the grouped ops use them), and sum_blocks3 over column blocks of a wider matrix and over row blocks,
// against plain loops: the parts must sum back to each value within 2^-24 of it, every element outside
// the written region must stay untouched, and the block sums must equal ((B3 + B2) + B1) in f32.
// Run scripts/emulate_cuda_split.sh.
#include "cuda_emulation.h"

#include <cstddef>
// The layouts that CUDABackend.SplitJob.bytes and SumJob.bytes write, field by field (48 bytes a job).
static_assert(offsetof(SplitJob, rows) == 16 && offsetof(SplitJob, ld) == 24 && offsetof(SplitJob, cols) == 32 &&
              offsetof(SplitJob, n) == 36 && offsetof(SplitJob, parts) == 40 && offsetof(SplitJob, stacked) == 44 &&
              sizeof(SplitJob) == 48 && sizeof(Jobs<SplitJob, 8>) == 8 * 48 && sizeof(Jobs<SplitJob, 32>) == 32 * 48, "SplitJob layout");
static_assert(offsetof(SumJob, out) == 8 && offsetof(SumJob, rows) == 16 && offsetof(SumJob, ld) == 24 &&
              offsetof(SumJob, cols) == 32 && offsetof(SumJob, rowBlocks) == 36 && offsetof(SumJob, alpha) == 40 &&
              offsetof(SumJob, accumulate) == 44 && sizeof(SumJob) == 48 && sizeof(Jobs<SumJob, 8>) == 8 * 48 && sizeof(Jobs<SumJob, 32>) == 32 * 48, "SumJob layout");

static std::mt19937 gen(5);
static float bf16(unsigned short u) { return __uint_as_float((unsigned)u << 16); }
// What unwritten elements hold: a NaN pattern, which no part of a finite value can be (a finite
// value such as 0xBEEF would make the count of untouched elements wrong when a part happens to equal it).

static bool splitCase(int rows, int cols, bool stacked, int ld, int offset) {
    std::uniform_real_distribution<float> u(-3, 3);
    std::vector<float> src(rows * cols);
    for (auto& v : src) v = u(gen) * std::pow(10.0f, (float)(gen() % 7) - 3);
    const int parts = 1 | (2 << 2) | (3 << 4), n = 3;   // planes 1, 2, 3
    const size_t size = stacked ? (size_t)offset + (size_t)n * rows * cols : (size_t)rows * ld;
    std::vector<unsigned short> dst(size, 0x7FFF);
    launch({3, 1, 1}, 64, [&] { split_bf16(src.data(), dst.data() + offset, rows, cols, n, parts, stacked, ld); });
    bool ok = true; long long touched = 0;
    for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) {
        float sum = 0; float p[3];
        for (int i = 0; i < n; i++) {
            const size_t at = stacked ? (size_t)offset + ((size_t)i * rows + r) * cols + c : (size_t)r * ld + offset + (size_t)i * cols + c;
            p[i] = bf16(dst[at]); touched++;
        }
        sum = (p[2] + p[1]) + p[0];
        const float v = src[r * cols + c];
        if (fabsf(sum - v) > std::ldexp(fabsf(v), -23)) ok = false;
    }
    long long untouched = 0;
    for (auto d : dst) untouched += d == 0x7FFF;
    ok = ok && untouched == (long long)size - touched;
    printf("split %-11s %3d×%-3d row stride %-4d offset %-4d  %s\n", stacked ? "stacked" : "side by side", rows, cols, ld, offset,
           ok ? "PASS" : "FAIL");
    return ok;
}

static bool sumCase(int rows, int cols, bool rowBlocks, int ld, int offset) {
    std::uniform_real_distribution<float> u(-1, 1);
    const size_t size = rowBlocks ? (size_t)offset + 3 * (size_t)rows * cols : (size_t)rows * ld;
    std::vector<float> src(size);
    for (auto& v : src) v = u(gen);
    std::vector<float> out(rows * cols), expected(rows * cols);
    for (int e = 0; e < rows * cols; e++) out[e] = expected[e] = u(gen);
    const float alpha = 0.75f;
    for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) {
        float b[3];
        for (int i = 0; i < 3; i++)
            b[i] = rowBlocks ? src[offset + ((size_t)i * rows + r) * cols + c] : src[(size_t)r * ld + offset + (size_t)i * cols + c];
        expected[r * cols + c] += alpha * ((b[2] + b[1]) + b[0]);
    }
    launch({2, 1, 1}, 64, [&] { sum_blocks3(src.data() + offset, out.data(), rows, cols, rowBlocks, alpha, 1, ld); });
    const bool ok = out == expected;
    printf("sum   %-11s %3d×%-3d row stride %-4d offset %-4d  %s\n", rowBlocks ? "row blocks" : "col blocks", rows, cols, ld, offset,
           ok ? "PASS" : "FAIL");
    return ok;
}

// split_bf16_jobs (the grouped ops' one launch for several adapters): each job's planes where split_bf16
// puts them, every other element untouched. Jobs of different sizes share a grid whose x size fits the
// largest, so the small ones' extra threads must do nothing.
static bool jobsCase() {
    std::uniform_real_distribution<float> u(-3, 3);
    struct Spec { int rows, cols, parts, n, stacked, ld; size_t offset; };
    const int cross = 1 | (1 << 2) | (2 << 4) | (1 << 6) | (3 << 8) | (2 << 10);   // crossLeft 1 1 2 1 3 2
    const Spec specs[] = {{37, 16, 1 | (2 << 2) | (3 << 4), 3, 0, 6 * 16 + 6 * 8, 0},   // z's parts side by side
                          {37, 8, cross, 6, 0, 6 * 16 + 6 * 8, 6 * 16},               // the next z's, further along
                          {16, 24, cross, 6, 1, 24, 37 * (6 * 16 + 6 * 8)}};           // a weight stacked after them
    const size_t size = specs[2].offset + 6 * 16 * 24;
    std::vector<unsigned short> viaJobs(size, 0x7FFF), oneByOne(size, 0x7FFF);
    std::vector<std::vector<float>> sources;
    Jobs<SplitJob, 8> jobs{};
    for (int j = 0; j < 3; j++) {
        const Spec& sp = specs[j];
        sources.emplace_back(sp.rows * sp.cols);
        for (auto& v : sources.back()) v = u(gen) * std::pow(10.0f, (float)(gen() % 7) - 3);
        jobs.job[j] = {sources.back().data(), viaJobs.data() + sp.offset, sp.rows, sp.ld, sp.cols, sp.n, sp.parts, sp.stacked};
    }
    launch({2, 3, 1}, 64, [&] { split_bf16_jobs(jobs); });
    for (int j = 0; j < 3; j++) {
        const Spec& sp = specs[j];
        launch({3, 1, 1}, 64, [&] { split_bf16(sources[j].data(), oneByOne.data() + sp.offset, sp.rows, sp.cols, sp.n, sp.parts, sp.stacked, sp.ld); });
    }
    long long written = 0;
    for (auto d : viaJobs) written += d != 0x7FFF;
    const bool ok = viaJobs == oneByOne && written > 0;
    printf("split jobs: 3 splits in one launch (side by side, cross parts, stacked) %s\n", ok ? "PASS" : "FAIL");
    return ok;
}

// sum_blocks3_jobs (the grouped ops' one launch for their adapters' block sums): each job's output as
// sum_blocks3 writes it, with column blocks of two adapters from one wide product and row blocks after them.
static bool sumJobsCase() {
    std::uniform_real_distribution<float> u(-1, 1);
    struct Spec { int rows, cols, rowBlocks, ld; size_t offset; float alpha; int accumulate; };
    const int width = 3 * 16 + 3 * 8;
    const Spec specs[] = {{37, 16, 0, width, 0, 1.0f, 0},                    // the first adapter's columns
                          {37, 8, 0, width, 3 * 16, 0.5f, 1},                // the second's, accumulated
                          {12, 24, 1, 24, 37 * (size_t)width, 0.25f, 1}};     // row blocks after them
    const size_t size = specs[2].offset + 3 * 12 * 24;
    std::vector<float> src(size);
    for (auto& v : src) v = u(gen);
    std::vector<std::vector<float>> viaJobs, oneByOne;
    Jobs<SumJob, 8> jobs{};
    for (int j = 0; j < 3; j++) {
        const Spec& sp = specs[j];
        viaJobs.emplace_back(sp.rows * sp.cols);
        for (auto& v : viaJobs.back()) v = u(gen);
        oneByOne.push_back(viaJobs.back());
        jobs.job[j] = {src.data() + sp.offset, viaJobs[j].data(), sp.rows, sp.ld, sp.cols, sp.rowBlocks, sp.alpha, sp.accumulate};
    }
    launch({2, 3, 1}, 64, [&] { sum_blocks3_jobs(jobs); });
    for (int j = 0; j < 3; j++) {
        const Spec& sp = specs[j];
        launch({3, 1, 1}, 64, [&] { sum_blocks3(src.data() + sp.offset, oneByOne[j].data(), sp.rows, sp.cols, sp.rowBlocks,
                                                sp.alpha, sp.accumulate, sp.ld); });
    }
    bool ok = true;
    for (int j = 0; j < 3; j++) ok = ok && viaJobs[j] == oneByOne[j];
    printf("sum jobs: 3 block sums in one launch (columns of one product, accumulated, row blocks) %s\n", ok ? "PASS" : "FAIL");
    return ok;
}

int main() {
    bool ok = true;
    ok &= splitCase(37, 16, true, 16, 0);          // one adapter's parts, as before
    ok &= splitCase(37, 16, false, 48, 0);         // side by side, a matrix of its own
    ok &= splitCase(37, 8, false, 72, 24);         // the second adapter's columns in a [T, 72] matrix
    ok &= splitCase(20, 40, true, 40, 3 * 8 * 40); // the second adapter's rows in a stacked matrix
    ok &= sumCase(37, 16, false, 48, 0);
    ok &= sumCase(37, 8, false, 72, 48);           // the third adapter's column blocks
    ok &= sumCase(21, 40, true, 40, 3 * 16 * 40);  // the second adapter's row blocks
    ok &= jobsCase();
    ok &= sumJobsCase();
    printf(ok ? "all split-bf16 emulation checks passed\n" : "SOME SPLIT-BF16 EMULATION CHECKS FAILED\n");
    return ok ? 0 : 1;
}
