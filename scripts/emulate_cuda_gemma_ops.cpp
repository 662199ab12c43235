// The CUDA kernels Gemma added or changed beside attention, on the CPU (cuda_emulation.h), against double:
// the gated linear unit with SiLU and with GELU-tanh (GatedLinearUnitKernels.swift), RMSNorm with weight
// offsets 0 and 1 (RMSNormKernels.swift, forward and backward into an f32 or a bf16 dX), and the cross-entropy
// with and without a logit softcap (CrossEntropyKernels.swift, loss and the gradient written over the logits).
// Run scripts/emulate_cuda_gemma_ops.sh.
#include "cuda_emulation.h"

static std::mt19937 gen(2024);
static std::vector<storage_t> randoms(int n, float lo, float hi) {
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<storage_t> v(n); for (auto& x : v) x = to_storage(u(gen)); return v;
}
static double d(storage_t x) { return to_f32(x); }
static int report(const char* what, std::initializer_list<std::pair<const char*, const Measure*>> ms, double bound) {
    bool ok = true;
    printf("%-44s", what);
    for (auto& [name, m] : ms) { printf(" %s %.1e", name, m->rel()); ok = ok && m->ok(bound); }
    printf("  %s\n", ok ? "PASS" : "FAIL");
    return ok;
}

// v8: the eight-wide kernels (n % 8 == 0; std::vector's storage is 16-byte aligned).
int glu(bool gelu, bool v8) {
    const int n = 3000;
    auto g = randoms(n, -4, 4), u = randoms(n, -1, 1), dy = randoms(n, -1, 1);
    std::vector<storage_t> out(n, 0xFFFF), dg(n, 0xFFFF), du(n, 0xFFFF);
    auto forward = gelu ? (v8 ? swiftlet_geglu_tanh_forward_v8 : swiftlet_geglu_tanh_forward)
                        : (v8 ? swiftlet_swiglu_forward_v8 : swiftlet_swiglu_forward);
    auto backward = gelu ? (v8 ? swiftlet_geglu_tanh_backward_v8 : swiftlet_geglu_tanh_backward)
                         : (v8 ? swiftlet_swiglu_backward_v8 : swiftlet_swiglu_backward);
    launch({3, 1, 1}, 64, [&] { forward(g.data(), u.data(), out.data(), n); });
    launch({3, 1, 1}, 64, [&] { backward(dy.data(), g.data(), u.data(), dg.data(), du.data(), n); });
    // in place (the decoder's use): the same bits as separate outputs
    auto gi = g, ui = u;
    launch({3, 1, 1}, 64, [&] { backward(dy.data(), gi.data(), ui.data(), gi.data(), ui.data(), n); });
    const bool inPlace = gi == dg && ui == du;
    Measure mo, mg, mu;
    const double beta = 0.7978845608028654, kappa = 0.044715;
    for (int i = 0; i < n; i++) {
        double x = d(g[i]), act, der;
        if (gelu) {
            double t = tanh(beta * (x + kappa * x * x * x));
            act = 0.5 * x * (1 + t);
            der = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * beta * (1 + 3 * kappa * x * x);
        } else {
            double s = 1 / (1 + exp(-x));
            act = x * s; der = s * (1 + x * (1 - s));
        }
        mo.add(to_f32(out[i]), act * d(u[i]));
        mg.add(to_f32(dg[i]), d(dy[i]) * d(u[i]) * der);
        mu.add(to_f32(du[i]), d(dy[i]) * act);
    }
    char label[64];
    snprintf(label, sizeof label, "%s 3000%s%s", gelu ? "GeGLU (tanh)" : "SwiGLU", v8 ? ", eight-wide" : "",
             inPlace ? "" : " IN PLACE DIFFERS");
    return report(label, {{"out", &mo}, {"dGate", &mg}, {"dUp", &mu}}, 1e-2) && inPlace;
}

// The fused layout (a mixture's gate_up output: gate | up side by side in each row): forward and backward
// (in place, as the mixture runs it) give the bits of the separate kernels on the same values, and every
// element of both halves is written.
int gluFused(bool gelu, bool v8) {
    const int rows = 7, width = 200, n = rows * width;
    auto gu = randoms(2 * n, -4, 4), dy = randoms(n, -1, 1);
    std::vector<storage_t> g(n), u(n);
    for (int r = 0; r < rows; r++) for (int c = 0; c < width; c++) {
        g[r * width + c] = gu[r * 2 * width + c]; u[r * width + c] = gu[r * 2 * width + width + c];
    }
    auto forward = gelu ? (v8 ? swiftlet_geglu_tanh_forward_v8 : swiftlet_geglu_tanh_forward)
                        : (v8 ? swiftlet_swiglu_forward_v8 : swiftlet_swiglu_forward);
    auto backward = gelu ? (v8 ? swiftlet_geglu_tanh_backward_v8 : swiftlet_geglu_tanh_backward)
                         : (v8 ? swiftlet_swiglu_backward_v8 : swiftlet_swiglu_backward);
    auto fusedForward = gelu ? (v8 ? swiftlet_geglu_tanh_fused_forward_v8 : swiftlet_geglu_tanh_fused_forward)
                             : (v8 ? swiftlet_swiglu_fused_forward_v8 : swiftlet_swiglu_fused_forward);
    auto fusedBackward = gelu ? (v8 ? swiftlet_geglu_tanh_fused_backward_v8 : swiftlet_geglu_tanh_fused_backward)
                              : (v8 ? swiftlet_swiglu_fused_backward_v8 : swiftlet_swiglu_fused_backward);
    std::vector<storage_t> out(n, 0xFFFF), fusedOut(n, 0xFFFF), dg(n, 0xFFFF), du(n, 0xFFFF);
    launch({3, 1, 1}, 64, [&] { forward(g.data(), u.data(), out.data(), n); });
    launch({3, 1, 1}, 64, [&] { fusedForward(gu.data(), fusedOut.data(), n, width); });
    launch({3, 1, 1}, 64, [&] { backward(dy.data(), g.data(), u.data(), dg.data(), du.data(), n); });
    auto dgu = gu;
    launch({3, 1, 1}, 64, [&] { fusedBackward(dy.data(), dgu.data(), dgu.data(), n, width); });
    bool same = out == fusedOut;
    for (int r = 0; r < rows; r++) for (int c = 0; c < width; c++) {
        same = same && dgu[r * 2 * width + c] == dg[r * width + c] && dgu[r * 2 * width + width + c] == du[r * width + c];
    }
    printf("%-44s %s\n", gelu ? (v8 ? "GeGLU fused gate | up, eight-wide" : "GeGLU fused gate | up")
                             : (v8 ? "SwiGLU fused gate | up, eight-wide" : "SwiGLU fused gate | up"),
           same ? "PASS (the separate kernels' bits)" : "FAIL");
    return same;
}

int rmsnorm(float offset, bool v8) {
    const int rows = 5, width = 200;
    auto x = randoms(rows * width, -2, 2), w = randoms(width, 0.5f - offset, 1.5f - offset), dy = randoms(rows * width, -1, 1);
    std::vector<storage_t> y(rows * width, 0xFFFF);
    std::vector<float> rstd(rows, NAN), dx(rows * width, 0.25f);
    std::vector<storage_t> dx16(rows * width, to_storage(0.25f));   // dX in the storage type (frozen layers' inputs)
    const int threads = 256;   // CUDARMSNorm.threads
    launch({rows, 1, 1}, threads, [&] {
        (v8 ? swiftlet_rmsnorm_forward_v8 : swiftlet_rmsnorm_forward)(x.data(), w.data(), y.data(), rstd.data(), width, 1e-5f, offset);
    });
    launch({rows, 1, 1}, threads, [&] {
        (v8 ? swiftlet_rmsnorm_backward_f32_v8 : swiftlet_rmsnorm_backward_f32)(dy.data(), x.data(), w.data(), rstd.data(),
                                                                                 dx.data(), width, offset);
    });
    launch({rows, 1, 1}, threads, [&] {
        (v8 ? swiftlet_rmsnorm_backward_16_v8 : swiftlet_rmsnorm_backward_16)(dy.data(), x.data(), w.data(), rstd.data(),
                                                                               dx16.data(), width, offset);
    });
    Measure my, mr, mdx, mdx16;
    for (int r = 0; r < rows; r++) {
        double ss = 0; for (int j = 0; j < width; j++) ss += d(x[r * width + j]) * d(x[r * width + j]);
        double s = 1 / sqrt(ss / width + 1e-5), dot = 0;
        mr.add(rstd[r], s);
        for (int j = 0; j < width; j++) {
            double wj = offset + d(w[j]);
            my.add(to_f32(y[r * width + j]), wj * d(x[r * width + j]) * s);
            dot += wj * d(dy[r * width + j]) * d(x[r * width + j]);
        }
        for (int j = 0; j < width; j++) {
            double wj = offset + d(w[j]);
            const double g = 0.25 + s * wj * d(dy[r * width + j]) - dot * s * s * s / width * d(x[r * width + j]);
            mdx.add(dx[r * width + j], g);
            mdx16.add(to_f32(dx16[r * width + j]), g);
        }
    }
    char label[64]; snprintf(label, sizeof label, "RMSNorm 5x200, weight offset %g%s", offset, v8 ? ", eight-wide" : "");
    return report(label, {{"y", &my}, {"rstd", &mr}, {"dX (f32, +=)", &mdx}, {"dX (bf16, +=)", &mdx16}}, 1e-2);
}

int crossEntropy(float softcap) {
    const int rows = 4, vocab = 500;
    auto z = randoms(rows * vocab, -8, 8);
    std::vector<int> labels = {3, -100, 499, 250};
    std::vector<storage_t> grad = z;
    std::vector<float> losses(rows, NAN), lossesNoGrad(rows, NAN);
    std::vector<storage_t> untouched = z;
    launch({rows, 1, 1}, 64, [&] { cross_entropy_16(untouched.data(), labels.data(), lossesNoGrad.data(), vocab, 0.f, 0, softcap); });
    launch({rows, 1, 1}, 64, [&] { cross_entropy_16(grad.data(), labels.data(), losses.data(), vocab, 0.5f, 1, softcap); });
    Measure ml, mg, same;
    for (int r = 0; r < rows; r++) {
        std::vector<double> c(vocab);
        for (int j = 0; j < vocab; j++) c[j] = softcap > 0 ? softcap * tanh(d(z[r * vocab + j]) / softcap) : d(z[r * vocab + j]);
        for (int j = 0; j < vocab; j++) same.add(to_f32(untouched[r * vocab + j]), d(z[r * vocab + j]));
        if (labels[r] == -100) {
            ml.add(losses[r], 0);
            for (int j = 0; j < vocab; j++) mg.add(to_f32(grad[r * vocab + j]), 0);
            continue;
        }
        double m = -1e300; for (double x : c) m = std::max(m, x);
        double tot = 0; for (double x : c) tot += exp(x - m);
        double lse = m + log(tot);
        ml.add(losses[r], lse - c[labels[r]]);
        ml.add(lossesNoGrad[r], lse - c[labels[r]]);
        for (int j = 0; j < vocab; j++) {
            double g = exp(c[j] - lse) - (j == labels[r] ? 1 : 0);
            if (softcap > 0) g *= 1 - (c[j] / softcap) * (c[j] / softcap);
            mg.add(to_f32(grad[r * vocab + j]), 0.5 * g);
        }
    }
    char label[64]; snprintf(label, sizeof label, "cross-entropy 4x500, softcap %g", softcap);
    int ok = report(label, {{"loss", &ml}, {"gradient", &mg}}, 1e-2);
    if (same.diff != 0) { printf("  FAIL: without a gradient the logits changed\n"); ok = 0; }
    return ok;
}

int main() {
    int ok = 1;
    for (bool v8 : {false, true}) {
        ok &= glu(false, v8);
        ok &= glu(true, v8);
        ok &= gluFused(false, v8);
        ok &= gluFused(true, v8);
        ok &= rmsnorm(0, v8);
        ok &= rmsnorm(1, v8);
    }
    ok &= crossEntropy(0);
    ok &= crossEntropy(3);
    printf(ok ? "ALL PASS\n" : "FAILURES\n");
    return ok ? 0 : 1;
}
