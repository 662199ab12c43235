/// Gradient-norm clipping with `torch.nn.utils.clip_grad_norm_` semantics (norm_type 2,
/// `error_if_nonfinite=False`), as the HF Trainer uses it with `max_grad_norm`.
///
/// torch computes each tensor's 2-norm in the gradient's dtype (float32), takes the 2-norm of
/// those norms, then `clip_coef = max_norm / (total_norm + 1e-6)`, clamps it to at most 1 and
/// *always* multiplies the gradients by the clamped coefficient. We instead accumulate Σg² over
/// all gradients in Double (`sumOfSquares` / `totalNorm`) and compute the coefficient in Double;
/// the result differs from torch's float32 norm only in the last float32 bits.
public enum GradientClipping {
    /// The factor to multiply every gradient by, or nil when clipping is disabled
    /// (`maxNorm <= 0`: HF skips clipping when `max_grad_norm` is 0/None).
    /// A NaN/inf `totalNorm` propagates (NaN, or 0 for +inf), as `clamp` does in torch.
    public static func clipCoefficient(totalNorm: Double, maxNorm: Double) -> Double? {
        guard maxNorm > 0 else { return nil }
        let coef = maxNorm / (totalNorm + 1e-6)
        return coef > 1.0 ? 1.0 : coef   // NaN stays NaN (torch.clamp(max=1) propagates NaN)
    }

    /// Σ g² of one gradient buffer, accumulated in Double.
    @inlinable
    public static func sumOfSquares<T: BinaryFloatingPoint>(_ gradient: UnsafeBufferPointer<T>) -> Double {
        var s = 0.0
        for g in gradient { let d = Double(g); s += d * d }
        return s
    }

    /// The global 2-norm over several gradient buffers: sqrt(Σ over all tensors of Σ g²).
    @inlinable
    public static func totalNorm<T: BinaryFloatingPoint>(_ gradients: [UnsafeBufferPointer<T>]) -> Double {
        var s = 0.0
        for g in gradients { s += sumOfSquares(g) }
        return s.squareRoot()
    }

    /// Multiply a gradient buffer in place by `coefficient` (rounded to `T` first, as torch's
    /// `mul_` of a float32 tensor by a float32 scalar).
    @inlinable
    public static func scale<T: BinaryFloatingPoint>(_ gradient: UnsafeMutableBufferPointer<T>, by coefficient: Double) {
        let c = T(coefficient)
        for i in gradient.indices { gradient[i] *= c }
    }
}
