/// One-tensor forms of the multi-tensor ops (the self-test, the AdamW8bit replay and tests call
/// these): a list of one, no gradient multiplier.
extension Backend {
    /// Σ x² of one f32 tensor, accumulated in Double.
    public func sumOfSquares(_ x: Tensor) -> Double { sumOfSquares([x], scaledBy: 1) }

    public func adamw(parameter: Tensor, gradient: Tensor, m: Tensor, v: Tensor, step: Int, hyper: AdamWHyper) {
        adamw(parameters: [parameter], gradients: [gradient], m: [m], v: [v], gradientMultiplier: .one, step: step, hyper: hyper)
    }

    public func sgd(parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?, step: Int, hyper: SGDHyper) {
        sgd(parameters: [parameter], gradients: [gradient], momentumBuffers: momentumBuffer.map { [$0] },
            gradientMultiplier: .one, step: step, hyper: hyper)
    }

    public func adamw8bit(parameter: Tensor, gradient: Tensor, state: AdamW8bitState, step: Int, hyper: AdamWHyper) {
        adamw8bit(parameters: [parameter], gradients: [gradient], states: [state], gradientMultiplier: .one,
                  step: step, hyper: hyper)
    }
}
