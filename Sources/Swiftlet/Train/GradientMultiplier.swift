/// What the optimizer multiplies each gradient element by before using it: first the loss scaler's
/// `1/scale` (fp16), then the clip coefficient. The update kernels apply it as they read the
/// gradient instead of separate in-place `scale` passes over every tensor.
///
/// The two factors stay separate, each product rounded to the gradient's type, because that is what
/// the in-place passes did (and what torch does: `clip_grad_norm_` multiplies the float32 gradient
/// in place before the optimizer reads it): `(g · unscale) · clip` is not `g · (unscale · clip)` in
/// floating point. A factor of 1 changes nothing (`g · 1 == g` exactly), so a disabled factor costs
/// no exactness.
public struct GradientMultiplier: Sendable, Equatable {
    /// 1 / the loss scale, or 1 without loss scaling.
    public var unscale: Float = 1
    /// The clip coefficient when clipping applies (it is below 1), else 1.
    public var clip: Float = 1

    public init(unscale: Float = 1, clip: Float = 1) {
        self.unscale = unscale
        self.clip = clip
    }

    public static let one = GradientMultiplier()

    /// `(g · unscale) · clip`, rounded to `T` after each product.
    @inlinable
    public func apply<T: BinaryFloatingPoint>(_ g: T) -> T {
        g * T(unscale) * T(clip)
    }
}
