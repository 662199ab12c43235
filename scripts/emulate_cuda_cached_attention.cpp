// The CUDA cached-attention kernels (Sources/Swiftlet/CUDA/Kernels/CachedAttentionKernels.swift) run on
// the CPU (cuda_emulation.h), against attention in double, with and without Gemma 2's softcap.
// The launch logic (passes, key splits, merge) is CachedAttentionKernels.swift's, written again here.
// Run scripts/emulate_cuda_cached_attention.sh (it extracts the kernel source into kernel.inc).
#include "cuda_emulation.h"

int run(int rows, int queries, int start, int capacity, int heads, int kvHeads, int headDim, int window,
        std::vector<int> padding, int sms, float softcap = 0, float scaleGiven = 0) {
    std::mt19937 gen(rows * 7 + queries * 13 + start);
    std::uniform_real_distribution<float> u(-2, 2);
    int qW = heads * headDim, kvW = kvHeads * headDim;
    std::vector<storage_t> q(rows * queries * qW), k(rows * capacity * kvW), v(rows * capacity * kvW);
    for (auto& x : q) x = to_storage(u(gen));
    for (auto& x : k) x = to_storage(u(gen));
    for (auto& x : v) x = to_storage(u(gen) / 2);
    std::vector<int> valid(rows * capacity);
    for (int r = 0; r < rows; r++) for (int c = 0; c < capacity; c++)
        valid[r * capacity + c] = c < (padding.empty() ? 0 : padding[r]) ? 0 : c < start + queries ? 1 : (int)(gen() % 2);
    // host logic of CachedAttentionKernels.swift
    int group = heads / kvHeads, passes = (group + 7) / 8;
    int blocks = queries * rows * kvHeads * passes;
    int wanted = (2 * sms + blocks - 1) / blocks;
    int splits = max(1, min(wanted, (start + queries) / 32));
    int outputs = rows * queries * heads;
    std::vector<storage_t> out(outputs * headDim, 0xFFFF);
    std::vector<float> pm(outputs * splits), ps(outputs * splits), po(outputs * splits * headDim);
    int d = headDim <= 64 ? 2 : headDim <= 128 ? 4 : 8;
    float scale = scaleGiven > 0 ? scaleGiven : 1 / sqrtf(headDim);
    launch({queries, rows * kvHeads * passes, splits}, 128, [&] {
        if (softcap > 0) {
            auto f = d == 2 ? cached_attention_2_softcap : d == 4 ? cached_attention_4_softcap : cached_attention_8_softcap;
            f(q.data(), k.data(), v.data(), valid.data(), out.data(), pm.data(), ps.data(), po.data(),
              queries, start, capacity, heads, kvHeads, headDim, window, scale, softcap);
        } else {
            auto f = d == 2 ? cached_attention_2 : d == 4 ? cached_attention_4 : cached_attention_8;
            f(q.data(), k.data(), v.data(), valid.data(), out.data(), pm.data(), ps.data(), po.data(),
              queries, start, capacity, heads, kvHeads, headDim, window, scale);
        }
    });
    if (splits > 1) {
        int t = min(128, (headDim + 31) / 32 * 32);
        launch({outputs, 1, 1}, t, [&] { cached_attention_merge(pm.data(), ps.data(), po.data(), out.data(), splits, headDim); });
    }
    // reference in double
    double maxDiff = 0, maxRef = 0; int nan = 0;
    for (int r = 0; r < rows; r++) for (int h = 0; h < heads; h++) for (int i = 0; i < queries; i++) {
        int kvh = h / group, column = start + i;
        std::vector<double> s; std::vector<int> js;
        for (int j = 0; j <= column; j++) {
            if (!valid[r * capacity + j]) continue;
            if (window > 0 && column - j >= window) continue;
            double dot = 0;
            for (int c = 0; c < headDim; c++) dot += (double)to_f32(q[(r * queries + i) * qW + h * headDim + c]) * to_f32(k[(r * capacity + j) * kvW + kvh * headDim + c]);
            s.push_back(softcap > 0 ? softcap * tanh(dot * scale / softcap) : dot * scale); js.push_back(j);
        }
        double m = -1e300; for (double x : s) m = std::max(m, x);
        double tot = 0; for (double& x : s) { x = exp(x - m); tot += x; }
        for (int c = 0; c < headDim; c++) {
            double o = 0;
            for (size_t n = 0; n < s.size(); n++) o += s[n] / tot * to_f32(v[(r * capacity + js[n]) * kvW + kvh * headDim + c]);
            float g = to_f32(out[(r * queries + i) * qW + h * headDim + c]);
            if (!std::isfinite(g)) { nan++; continue; }
            maxDiff = std::max(maxDiff, fabs(g - o)); maxRef = std::max(maxRef, fabs(o));
        }
    }
    printf("rows %d queries %d start %d heads %d/%d d %d window %d splits %d softcap %g: max rel %.2e, NaN %d\n",
           rows, queries, start, heads, kvHeads, headDim, window, splits, softcap, maxDiff / maxRef, nan);
    return maxDiff / maxRef < 1e-2 && nan == 0;
}

int main() {
    int ok = 1;
    ok &= run(1, 1, 150, 200, 32, 4, 64, 0, {}, 132);
    ok &= run(2, 1, 60, 70, 16, 8, 128, 0, {0, 17}, 132);
    ok &= run(1, 1, 100, 120, 32, 2, 128, 20, {}, 132);
    ok &= run(2, 1, 40, 50, 8, 1, 256, 0, {5, 0}, 132);
    ok &= run(1, 7, 30, 50, 12, 2, 64, 8, {}, 132);
    ok &= run(2, 9, 0, 20, 4, 2, 96, 0, {0, 4}, 132);   // generic kernel on a prefill (the backend sends these to training attention)
    ok &= run(1, 5, 10, 30, 6, 3, 40, 0, {}, 1);
    ok &= run(1, 7, 130, 150, 12, 2, 64, 40, {}, 1000);  // several queries with key splits
    ok &= run(3, 1, 200, 260, 32, 8, 128, 0, {0, 150, 199}, 132);  // a row that sees only its last key
    // Gemma 2: softcapped scores (1.5: far from linear; 50 as the model), d 256, scale 1/16
    ok &= run(2, 1, 150, 200, 16, 8, 256, 64, {0, 9}, 132, 1.5f, 1.0f / 16);
    ok &= run(1, 1, 300, 320, 8, 4, 256, 0, {}, 1000, 50.0f, 1.0f / 16);   // key splits
    ok &= run(1, 7, 130, 150, 12, 2, 64, 40, {}, 1000, 1.5f);
    printf(ok ? "ALL PASS\n" : "FAILURES\n");
    return ok ? 0 : 1;
}
