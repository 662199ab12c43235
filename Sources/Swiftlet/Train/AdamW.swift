#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// torch.optim.AdamW, single-tensor path (`foreach=False`, `fused=False`, `amsgrad=False`,
/// `maximize=False`, `capturable=False`), i.e. `torch.optim.adam._single_tensor_adam` with
/// `decoupled_weight_decay=True`, as it runs on CPU for float32 tensors.
///
/// What is matched, op by op (torch 2.x CPU kernels):
/// - The optimizer's hyperparameters are Python floats (float64). Scalar arithmetic that torch
///   does in Python (`1 - lr*wd`, `1 - beta1`, `1 - beta2`, `1 - beta^step`, `lr / bc1`,
///   `bc2 ** 0.5`) is done here in `Double`, from the `Float` hyperparameters widened exactly.
///   (So a torch run reproduces these bits when given the float32-rounded hyperparameters,
///   as `scripts/make_optimizer_fixtures.py` does.)
/// - When such a scalar meets a float32 tensor, the CPU kernel casts it to float32 (`opmath_t`
///   for float is float) and does the arithmetic in float32: so do we, in `T`.
/// - `exp_avg.lerp_(grad, w)`: torch's lerp kernel is `fma(w, g - m, m)` for `|w| < 0.5`,
///   else `fma(-(1 - w), g - m, g)` — a *fused* multiply-add (ATen's `vec::fmadd`/`fnmadd`,
///   and the compiler contracts the scalar tail the same way). We use `addingProduct`.
/// - `exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1-beta2)`: `fma((1-beta2)*g, g, v*beta2)`.
/// - `denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)`: sqrt, true division by the float32
///   scalar, plus float32 eps (no fusion possible).
/// - `param.addcdiv_(exp_avg, denom, value=-step_size)`: `p + ((-step_size) * m) / denom`.
///
/// With these, results are bit-identical to torch on CPU for float32 (checked by
/// `OptimizerTests` against fixtures produced by the real torch). `step` is 1-based: the first
/// update is `step == 1` (torch increments `state["step"]` before using it).
///
/// Note: `addingProduct` is a true fused multiply-add; on CPUs without FMA hardware it falls back
/// to libm's `fma` (correct, slower). Torch's CUDA kernels differ from the CPU ones in the last
/// ULP (e.g. the fused/foreach variants); this routine is the CPU single-tensor reference.
public enum AdamW {
    @inlinable
    public static func update<T: BinaryFloatingPoint>(
        parameter: UnsafeMutableBufferPointer<T>,
        gradient: UnsafeBufferPointer<T>,
        m: UnsafeMutableBufferPointer<T>,
        v: UnsafeMutableBufferPointer<T>,
        step: Int,
        hyper: AdamWHyper,
        gradientMultiplier: GradientMultiplier = .one
    ) {
        precondition(step >= 1, "AdamW step is 1-based")
        let n = parameter.count
        precondition(gradient.count == n && m.count == n && v.count == n, "AdamW buffer sizes differ")

        // Python-float (Double) scalars, exactly as torch computes them.
        let lr = Double(hyper.lr), beta1 = Double(hyper.beta1), beta2 = Double(hyper.beta2)
        let eps = Double(hyper.eps), wd = Double(hyper.weightDecay)
        let bias1 = 1 - pow(beta1, Double(step))
        let bias2 = 1 - pow(beta2, Double(step))
        let stepSize = lr / bias1
        let bias2Sqrt = bias2.squareRoot()   // Python `bc2 ** 0.5` (correctly rounded sqrt)

        // Scalars as the float32 kernels see them.
        let decay = T(1 - lr * wd)
        let w1 = T(1 - beta1)
        let oneMinusW1 = T(1) - w1           // lerp computes (1 - weight) in opmath (float32)
        let smallW1 = abs(w1) < T(0.5)
        let b2 = T(beta2)
        let w2 = T(1 - beta2)
        let bc2s = T(bias2Sqrt)
        let epsT = T(eps)
        let negStep = T(-stepSize)

        for i in 0..<n {
            let g = gradientMultiplier.apply(gradient[i])
            var p = parameter[i]
            if wd != 0 { p = p * decay }
            let mi = m[i]
            let diff = g - mi
            let mNew = smallW1 ? mi.addingProduct(w1, diff) : g.addingProduct(-oneMinusW1, diff)
            let vNew = (v[i] * b2).addingProduct(w2 * g, g)
            let denom = vNew.squareRoot() / bc2s + epsT
            p = p + (negStep * mNew) / denom
            m[i] = mNew
            v[i] = vNew
            parameter[i] = p
        }
    }
}
