/// The optimizer over every LoRA parameter of a model: AdamW, AdamW8bit or SGD state per tensor, the
/// global gradient norm and clipping, one update per optimizer step.
public final class LoRAOptimizer {
    public let kind: TrainingArguments.OptimizerKind
    let parameters: [(value: Tensor, gradient: Tensor)]
    /// The parameters and their gradients as lists, in parameter order, for the multi-tensor ops.
    private let values: [Tensor], gradients: [Tensor]
    /// Where the parameters live (nil without adapters).
    private let backend: (any Backend)?
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
        values = parameters.map(\.value)
        gradients = parameters.map(\.gradient)
        backend = parameters.first?.value.backend
        precondition(parameters.allSatisfy { $0.value.backend === backend && $0.gradient.backend === backend },
                     "every LoRA parameter must live on one backend")
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
    public func gradientNorm() -> Double { gradientNorm(unscaledBy: 1) }

    /// √Σ‖g · unscale‖², each product rounded to Float as an in-place unscale would have: one
    /// multi-tensor reduction, so on a GPU one download (one host sync) per optimizer step.
    private func gradientNorm(unscaledBy unscale: Float) -> Double {
        guard let backend else { return 0 }
        return backend.sumOfSquares(gradients, scaledBy: unscale).squareRoot()
    }

    /// Clips (when enabled) and applies one update with learning rate `lr`. Returns the norm
    /// before clipping, as HF logs it. With a loss scaler (fp16), the gradients are first divided by
    /// its scale, and a step whose gradients are not finite is skipped (the norm is then inf/NaN).
    ///
    /// Unscaling and clipping do not rewrite the gradients: the update multiplies each gradient
    /// element by both factors as it reads it, rounding as the in-place passes did (GradientMultiplier),
    /// so the result is bit-identical to scale-then-update. The gradients keep the values the
    /// backward left; `zeroGradients` clears them for the next step.
    @discardableResult
    public func step(lr: Float, scaler: inout LossScaler?) -> Double {
        var multiplier = GradientMultiplier.one
        if let s = scaler?.scale, s != 1 { multiplier.unscale = 1 / s }
        let norm = gradientNorm(unscaledBy: multiplier.unscale)
        if scaler != nil, scaler!.update(gradientsFinite: norm.isFinite) == false { return norm }
        if let coefficient = GradientClipping.clipCoefficient(totalNorm: norm, maxNorm: Double(arguments.maxGradNorm)),
           coefficient < 1 {
            multiplier.clip = Float(coefficient)
        }
        steps += 1
        guard let backend else { return norm }
        let hyper = AdamWHyper(lr: lr, beta1: arguments.adamBeta1, beta2: arguments.adamBeta2,
                               eps: arguments.adamEpsilon, weightDecay: arguments.weightDecay)
        // One call over every LoRA tensor: on a GPU one launch per optimizer step.
        switch kind {
        case .adamw:
            backend.adamw(parameters: values, gradients: gradients, m: firstMoments, v: secondMoments,
                          gradientMultiplier: multiplier, step: steps, hyper: hyper)
        case .adamw8bit:
            backend.adamw8bit(parameters: values, gradients: gradients, states: adamW8bitStates,
                              gradientMultiplier: multiplier, step: steps, hyper: hyper)
        case .sgd:
            backend.sgd(parameters: values, gradients: gradients, momentumBuffers: nil, gradientMultiplier: multiplier,
                        step: steps, hyper: SGDHyper(lr: lr, weightDecay: arguments.weightDecay))
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

    /// Sets every LoRA gradient to zero (one multi-tensor call).
    public func zeroGradients() {
        backend?.zero(gradients)
    }
}
