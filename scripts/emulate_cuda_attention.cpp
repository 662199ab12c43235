// The simple CUDA training-attention kernels (Sources/Swiftlet/CUDA/Kernels/AttentionKernels.swift: forward,
// dQ, dK/dV; the ones Gemma's head dim 256 runs on) on the CPU (cuda_emulation.h), plain and softcapped,
// against attention and its gradients in double on packed rows with padding, GQA and windows.
// Run scripts/emulate_cuda_attention.sh (it extracts the kernel source into kernel.inc).
#include "cuda_emulation.h"

int run(int rows, int columns, int heads, int kvHeads, int headDim, int window, float scale, float softcap,
        std::vector<int> sequences) {
    std::mt19937 gen(rows * 7 + columns * 13 + headDim);
    std::uniform_real_distribution<float> u(-2, 2);
    int n = rows * columns, qW = heads * headDim, kvW = kvHeads * headDim, group = heads / kvHeads;
    std::vector<storage_t> q(n * qW), k(n * kvW), v(n * kvW), dOut(n * qW);
    for (auto& x : q) x = to_storage(u(gen));
    for (auto& x : k) x = to_storage(u(gen));
    for (auto& x : v) x = to_storage(u(gen) / 2);
    for (auto& x : dOut) x = to_storage(u(gen) / 2);
    std::vector<int> seq(n);
    for (int r = 0; r < rows; r++) for (int c = 0; c < columns; c++) seq[r * columns + c] = sequences[c];
    std::vector<storage_t> out(n * qW, 0xFFFF), dQ(n * qW, 0xFFFF), dK(n * kvW, 0xFFFF), dV(n * kvW, 0xFFFF);
    std::vector<float> lse(n * heads), rowDot(n * heads);
    int warps = 4, tiles = (columns + warps - 1) / warps;
    bool cap = softcap > 0;
    launch({tiles, rows * heads, 1}, 32 * warps, [&] {
        if (cap) attention_forward_softcap(q.data(), k.data(), v.data(), seq.data(), out.data(), lse.data(), rows, columns,
                                           heads, kvHeads, headDim, window, scale, softcap);
        else attention_forward(q.data(), k.data(), v.data(), seq.data(), out.data(), lse.data(), rows, columns, heads,
                               kvHeads, headDim, window, scale);
    });
    launch({tiles, rows * heads, 1}, 32 * warps, [&] {
        if (cap) attention_backward_dq_softcap(dOut.data(), q.data(), k.data(), v.data(), out.data(), lse.data(), seq.data(),
                                               dQ.data(), rowDot.data(), rows, columns, heads, kvHeads, headDim, window, scale, softcap);
        else attention_backward_dq(dOut.data(), q.data(), k.data(), v.data(), out.data(), lse.data(), seq.data(), dQ.data(),
                                   rowDot.data(), rows, columns, heads, kvHeads, headDim, window, scale);
    });
    launch({tiles, rows * kvHeads, 1}, 32 * warps, [&] {
        if (cap) attention_backward_dkdv_softcap(dOut.data(), q.data(), k.data(), v.data(), lse.data(), rowDot.data(), seq.data(),
                                                 dK.data(), dV.data(), rows, columns, heads, kvHeads, headDim, window, scale, softcap);
        else attention_backward_dkdv(dOut.data(), q.data(), k.data(), v.data(), lse.data(), rowDot.data(), seq.data(), dK.data(),
                                     dV.data(), rows, columns, heads, kvHeads, headDim, window, scale);
    });

    // reference in double (the kernels' inputs as they stored them; the backward from the double forward)
    auto f = [](storage_t x) { return (double)to_f32(x); };
    std::vector<double> rdQ(n * qW, 0), rdK(n * kvW, 0), rdV(n * kvW, 0);
    Measure mOut, mLse, mdQ, mdK, mdV;
    for (int r = 0; r < rows; r++) for (int h = 0; h < heads; h++) for (int i = 0; i < columns; i++) {
        int g = h / group, qi = r * columns + i, qs = seq[qi];
        std::vector<int> js; std::vector<double> s, slope;
        if (qs >= 0) for (int j = 0; j <= i; j++) {
            int kj = r * columns + j;
            if (seq[kj] != qs || (window > 0 && i - j >= window)) continue;
            double dot = 0;
            for (int c = 0; c < headDim; c++) dot += f(q[qi * qW + h * headDim + c]) * f(k[kj * kvW + g * headDim + c]);
            double z = dot * scale, t = cap ? tanh(z / softcap) : 0;
            s.push_back(cap ? softcap * t : z); slope.push_back(cap ? 1 - t * t : 1); js.push_back(kj);
        }
        if (js.empty()) { mLse.add(std::isinf(lse[qi * heads + h]) && lse[qi * heads + h] < 0 ? 0 : 1, 0); continue; }
        double m = -1e300; for (double x : s) m = std::max(m, x);
        double tot = 0; for (double x : s) tot += exp(x - m);
        mLse.add(lse[qi * heads + h], m + log(tot));
        std::vector<double> p(s.size()), o(headDim, 0);
        for (size_t a = 0; a < s.size(); a++) p[a] = exp(s[a] - m) / tot;
        for (int c = 0; c < headDim; c++) {
            for (size_t a = 0; a < s.size(); a++) o[c] += p[a] * f(v[js[a] * kvW + g * headDim + c]);
            mOut.add(to_f32(out[qi * qW + h * headDim + c]), o[c]);
        }
        double D = 0; for (int c = 0; c < headDim; c++) D += f(dOut[qi * qW + h * headDim + c]) * o[c];
        for (size_t a = 0; a < s.size(); a++) {
            double dp = 0;
            for (int c = 0; c < headDim; c++) dp += f(dOut[qi * qW + h * headDim + c]) * f(v[js[a] * kvW + g * headDim + c]);
            double ds = p[a] * (dp - D) * slope[a] * scale;
            for (int c = 0; c < headDim; c++) {
                rdQ[qi * qW + h * headDim + c] += ds * f(k[js[a] * kvW + g * headDim + c]);
                rdK[js[a] * kvW + g * headDim + c] += ds * f(q[qi * qW + h * headDim + c]);
                rdV[js[a] * kvW + g * headDim + c] += p[a] * f(dOut[qi * qW + h * headDim + c]);
            }
        }
    }
    for (int e = 0; e < n * qW; e++) mdQ.add(to_f32(dQ[e]), rdQ[e]);
    for (int e = 0; e < n * kvW; e++) { mdK.add(to_f32(dK[e]), rdK[e]); mdV.add(to_f32(dV[e]), rdV[e]); }
    bool ok = true;
    for (auto* x : {&mOut, &mdQ, &mdK, &mdV}) ok = ok && x->bad == 0 && x->rel() < 1e-2;
    ok = ok && mLse.bad == 0 && mLse.diff < 1e-3 * std::max(mLse.ref, 1.0);
    printf("%s rows %d columns %d heads %d/%d d %d window %d softcap %g: out %.1e lse %.1e dQ %.1e dK %.1e dV %.1e (max rel)\n",
           ok ? "PASS" : "FAIL", rows, columns, heads, kvHeads, headDim, window, softcap, mOut.rel(), mLse.diff,
           mdQ.rel(), mdK.rel(), mdV.rel());
    return ok;
}

int main() {
    int ok = 1;
    // columns: sequence ids (two packed sequences, then padding)
    std::vector<int> packed; for (int c = 0; c < 24; c++) packed.push_back(c < 10 ? 0 : c < 20 ? 1 : -1);
    std::vector<int> one(24, 0);
    ok &= run(1, 24, 4, 2, 64, 0, 1 / sqrtf(64), 0, one);
    ok &= run(2, 24, 4, 2, 96, 5, 1 / sqrtf(96), 0, packed);
    // Gemma 2: caps 1.5 (far from linear) and 50 (the model's), d 256 with scale 1/16, GQA, windows, packing
    ok &= run(2, 24, 4, 2, 256, 0, 1.0f / 16, 1.5f, packed);
    ok &= run(1, 24, 8, 4, 256, 6, 1.0f / 16, 1.5f, one);
    ok &= run(1, 24, 4, 4, 256, 0, 1.0f / 16, 50.0f, one);
    ok &= run(2, 24, 6, 2, 64, 7, 0.3f, 1.5f, packed);
    printf(ok ? "ALL PASS\n" : "FAILURES\n");
    return ok ? 0 : 1;
}
