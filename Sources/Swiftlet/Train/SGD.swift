/// torch.optim.SGD, single-tensor path (`foreach=False`, `dampening=0`, `nesterov=False`,
/// `maximize=False`), as it runs on CPU for float32 tensors:
///
///     g = grad.add(param, alpha=weight_decay)         # L2, if weight_decay != 0
///     if momentum != 0:
///         buf = clone(g) at the first step, else buf.mul_(momentum).add_(g)
///         g = buf
///     param.add_(g, alpha=-lr)
///
/// `add(x, alpha=a)` is `fma(x, a, self)` in ATen's CPU kernel; we use `addingProduct` so the
/// result is bit-identical. `lr`, `momentum` and `weight_decay` are Python floats in torch; the
/// kernels cast them to float32, which is what a `Float` hyperparameter already is.
///
/// `step` is 1-based; at `step == 1` the momentum buffer is initialised to the gradient (its
/// previous contents are ignored). `momentumBuffer` may be nil when `momentum == 0`.
/// `gradientMultiplier` scales each gradient element as it is read (GradientMultiplier.swift).
public enum SGD {
    @inlinable
    public static func update<T: BinaryFloatingPoint>(
        parameter: UnsafeMutableBufferPointer<T>,
        gradient: UnsafeBufferPointer<T>,
        momentumBuffer: UnsafeMutableBufferPointer<T>?,
        step: Int,
        hyper: SGDHyper,
        gradientMultiplier: GradientMultiplier = .one
    ) {
        precondition(step >= 1, "SGD step is 1-based")
        let n = parameter.count
        precondition(gradient.count == n, "SGD buffer sizes differ")
        let wd = T(hyper.weightDecay)
        let mom = T(hyper.momentum)
        let negLR = T(-Double(hyper.lr))
        let useMomentum = hyper.momentum != 0
        if useMomentum {
            precondition(momentumBuffer != nil, "SGD with momentum needs a momentum buffer")
            precondition(momentumBuffer!.count == n, "SGD momentum buffer size differs")
        }
        for i in 0..<n {
            let p = parameter[i]
            var g = gradientMultiplier.apply(gradient[i])
            if hyper.weightDecay != 0 { g = g.addingProduct(p, wd) }
            if useMomentum, let buf = momentumBuffer {
                let b = step == 1 ? g : (buf[i] * mom).addingProduct(g, T(1))
                buf[i] = b
                g = b
            }
            parameter[i] = p.addingProduct(g, negLR)
        }
    }
}
