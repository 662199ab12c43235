/// One-tensor forms of the multi-tensor ops (the self-test, the AdamW8bit replay and tests call
/// these): a list of one, no gradient multiplier.
extension Backend {
    /// Σ loss over the counted rows of `crossEntropy`, read back at once (one synchronisation).
    public func crossEntropy(logits: Tensor, labels: Tensor, softcap: Float? = nil, gradScale: Float?) -> Double {
        let losses = try! zeros([labels.count], .f32)
        crossEntropy(logits: logits, labels: labels, softcap: softcap, gradScale: gradScale, losses: losses)
        return download(losses).reduce(0.0) { $0 + Double($1) }
    }

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
