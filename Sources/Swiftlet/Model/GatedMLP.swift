/// The gated MLP, down(act(gate(x)) ⊙ up(x)) (SwiGLU, or Gemma's GeGLU), forward and backward: a dense layer's MLP, and each
/// expert of a mixture (Mixtral's w1 | w3 and w2, Qwen3-MoE's gate_proj | up_proj and down_proj,
/// held as one fused gate_up linear as transformers 5 holds them).
public struct GatedMLP {
    /// gate_proj, up_proj (separate), or one fused gate_up linear (Phi-3, every expert).
    public var gateUp: ProjectionGroup
    public var down: Linear

    public init(gateUp: ProjectionGroup, down: Linear) {
        self.gateUp = gateUp
        self.down = down
    }

    public var linears: [Linear] { gateUp.linears + [down] }

    /// The gated unit's inputs: gate and up apart, or gate | up side by side as a fused gate_up wrote
    /// them (Phi-3), where the unit reads them without copying them out.
    enum GateAndUp {
        case apart(gate: Tensor, up: Tensor)
        case sideBySide(Tensor)
    }

    struct Saved {
        var gateAndUp: GateAndUp
        var gateUpSaved: ProjectionGroup.Saved
        var downSaved: Linear.Saved
    }

    /// A fused gate_up with equal halves, whose output the gated unit reads as it lies.
    private var fusedGateUp: Linear? {
        if case let .fused(linear, widths) = gateUp, widths.count == 2, widths[0] == widths[1] { return linear }
        return nil
    }

    /// `dropoutSeed(i)` is module i's seed: 0 gate (or the fused gate_up), 1 up, 2 down. Without
    /// `needsOutput`, only what the backward needs (down's input and LoRA terms, not its output).
    func forward(_ x: Tensor, activation: GatedActivation, needsOutput: Bool = true,
                 dropoutSeed: (Int) -> UInt64?) throws -> (Tensor?, Saved) {
        let backend = x.backend
        let gateAndUp: GateAndUp, gateUpSaved: ProjectionGroup.Saved, m: Tensor
        if let fused = fusedGateUp {
            let (gu, saved) = try fused.forward(x, dropoutSeed: dropoutSeed(0))   // PEFT's one mask for the fused module
            m = try backend.empty([x.shape[0], fused.outFeatures / 2], backend.computeType)
            backend.gatedLinearUnit(activation, gateUp: gu, into: m)
            (gateAndUp, gateUpSaved) = (.sideBySide(gu), ProjectionGroup.Saved(linears: [saved]))
        } else {
            let (gateUpOut, saved) = try gateUp.forward(x, dropoutSeed: dropoutSeed)
            let (g, u) = (gateUpOut[0], gateUpOut[1])
            m = try backend.empty(g.shape, backend.computeType)
            backend.gatedLinearUnit(activation, gate: g, up: u, into: m)
            (gateAndUp, gateUpSaved) = (.apart(gate: g, up: u), saved)
        }
        let (d, downSaved): (Tensor?, Linear.Saved)
        if needsOutput {
            (d, downSaved) = try down.forward(m, dropoutSeed: dropoutSeed(2))
        } else {
            (d, downSaved) = (nil, try down.saved(for: m, dropoutSeed: dropoutSeed(2)))
        }
        return (d, Saved(gateAndUp: gateAndUp, gateUpSaved: gateUpSaved, downSaved: downSaved))
    }

    /// dL/dx (a fresh tensor); the LoRA gradients accumulate as a side effect. Works in place where
    /// the forward's tensors are dead: dL/dm takes m's storage (m is only down's input), and the gated
    /// unit's gradients overwrite gate and up (every backend reads an element before writing it), so
    /// the peak is three [tokens, intermediate] tensors lower; the same ops, the same bits. Side by
    /// side, dGate | dUp is then the fused gate_up's output gradient as it lies.
    func backward(_ dY: Tensor, saved s: Saved, activation: GatedActivation) throws -> Tensor {
        let backend = dY.backend
        let dM = try down.backward(dY, saved: s.downSaved, accumulateInto: nil, overwritingInput: true)
        switch s.gateAndUp {
        case let .apart(gate, up):
            backend.gatedLinearUnitBackward(activation, dOut: dM, gate: gate, up: up, dGate: gate, dUp: up)
            return try gateUp.backward([gate, up], saved: s.gateUpSaved)
        case let .sideBySide(gu):
            guard let fused = fusedGateUp else { preconditionFailure("gate | up saved side by side for a gate_up apart") }
            backend.gatedLinearUnitBackward(activation, dOut: dM, gateUp: gu, dGateUp: gu)
            return try fused.backward(gu, saved: s.gateUpSaved.linears[0], accumulateInto: nil)
        }
    }
}

/// A layer's MLP: dense, or a routed mixture of experts (Mixtral, Qwen3-MoE).
public enum FeedForward {
    case dense(GatedMLP)
    case mixture(MixtureOfExperts)

    public var linears: [Linear] {
        switch self {
        case let .dense(mlp): return mlp.linears
        case let .mixture(moe): return moe.linears
        }
    }

    /// Applies `body` to every linear (router and experts included).
    mutating func updateLinears(_ body: (inout Linear) throws -> Void) rethrows {
        switch self {
        case var .dense(mlp):
            try mlp.gateUp.updateLinears(body)
            try body(&mlp.down)
            self = .dense(mlp)
        case var .mixture(moe):
            try moe.updateLinears(body)
            self = .mixture(moe)
        }
    }

    enum Saved {
        case dense(GatedMLP.Saved)
        case mixture(MixtureOfExperts.Saved)
    }

    /// Dropout seeds 4, 5, 6 for gate (or gate_up), up, down, as before the mixture existed. Without
    /// `needsOutput` a dense MLP returns no output (`GatedMLP.forward`); a mixture always does.
    func forward(_ x: Tensor, _ step: StepContext, needsOutput: Bool = true) throws -> (Tensor?, Saved) {
        switch self {
        case let .dense(mlp):
            let (y, s) = try mlp.forward(x, activation: step.config.activation, needsOutput: needsOutput) {
                step.dropoutSeed(4 + UInt64($0))
            }
            return (y, .dense(s))
        case let .mixture(moe):
            let (y, s) = try moe.forward(x, step)
            return (y, .mixture(s))
        }
    }

    func backward(_ dY: Tensor, saved: Saved, _ step: StepContext) throws -> Tensor {
        switch (self, saved) {
        case let (.dense(mlp), .dense(s)): return try mlp.backward(dY, saved: s, activation: step.config.activation)
        case let (.mixture(moe), .mixture(s)): return try moe.backward(dY, saved: s, step)
        default: preconditionFailure("saved activations of another kind of MLP")
        }
    }
}
