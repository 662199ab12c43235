/// The optimizer over every LoRA parameter of a model: AdamW, AdamW8bit or SGD state per tensor, the
/// global gradient norm and clipping, one update per optimizer step.
public final class LoRAOptimizer {
    public let kind: TrainingArguments.OptimizerKind
    let parameters: [(value: Tensor, gradient: Tensor)]
    private var firstMoments: [Tensor] = []
    private var secondMoments: [Tensor] = []
    /// AdamW8bit's state per parameter, in parameter order.
    public private(set) var adamW8bitStates: [AdamW8bitState] = []
    public private(set) var steps = 0
    private let arguments: TrainingArguments

    public init(adapters: [LoRAAdapter], arguments: TrainingArguments) throws {
        kind = arguments.optimizer
        self.arguments = arguments
        parameters = adapters.flatMap { [($0.a, $0.gradA), ($0.b, $0.gradB)] }
        if kind == .adamw {
            for (value, _) in parameters {
                firstMoments.append(try value.backend.zeros(value.shape, .f32))
                secondMoments.append(try value.backend.zeros(value.shape, .f32))
            }
        }
        if kind == .adamw8bit {
            adamW8bitStates = try parameters.map { try AdamW8bitState.zeros(for: $0.value) }
        }
    }

    /// √Σ‖g‖² over all LoRA gradients.
    public func gradientNorm() -> Double {
        parameters.reduce(0.0) { $0 + $1.gradient.backend.sumOfSquares($1.gradient) }.squareRoot()
    }

    /// Clips (when enabled) and applies one update with learning rate `lr`. Returns the norm
    /// before clipping, as HF logs it. With a loss scaler (fp16), the gradients are first divided by
    /// its scale, and a step whose gradients are not finite is skipped (the norm is then inf/NaN).
    @discardableResult
    public func step(lr: Float, scaler: inout LossScaler?) -> Double {
        if let s = scaler?.scale, s != 1 {
            for (_, g) in parameters { g.backend.scale(g, by: 1 / s) }
        }
        let norm = gradientNorm()
        if scaler != nil, scaler!.update(gradientsFinite: norm.isFinite) == false { return norm }
        if let coefficient = GradientClipping.clipCoefficient(totalNorm: norm, maxNorm: Double(arguments.maxGradNorm)),
           coefficient < 1 {
            for (_, g) in parameters { g.backend.scale(g, by: Float(coefficient)) }
        }
        steps += 1
        let hyper = AdamWHyper(lr: lr, beta1: arguments.adamBeta1, beta2: arguments.adamBeta2,
                               eps: arguments.adamEpsilon, weightDecay: arguments.weightDecay)
        for (i, (value, gradient)) in parameters.enumerated() {
            switch kind {
            case .adamw:
                value.backend.adamw(parameter: value, gradient: gradient, m: firstMoments[i],
                                    v: secondMoments[i], step: steps, hyper: hyper)
            case .adamw8bit:
                value.backend.adamw8bit(parameter: value, gradient: gradient, state: adamW8bitStates[i], step: steps, hyper: hyper)
            case .sgd:
                value.backend.sgd(parameter: value, gradient: gradient, momentumBuffer: nil, step: steps,
                                  hyper: SGDHyper(lr: lr, weightDecay: arguments.weightDecay))
            }
        }
        return norm
    }

    /// One update without loss scaling.
    @discardableResult
    public func step(lr: Float) -> Double {
        var none: LossScaler? = nil
        return step(lr: lr, scaler: &none)
    }

    /// AdamW's first and second moments, in parameter order (A then B per adapter); empty for SGD.
    var moments: [(m: Tensor, v: Tensor)] { Array(zip(firstMoments, secondMoments)).map { (m: $0.0, v: $0.1) } }

    /// Restores the update count (AdamW's bias correction depends on it) after a resume.
    func restore(steps: Int) { self.steps = steps }

    public func zeroGradients() {
        for (_, g) in parameters { g.backend.scale(g, by: 0) }
    }
}
