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

    struct Saved {
        var gate, up: Tensor
        var gateUpSaved: ProjectionGroup.Saved
        var downSaved: Linear.Saved
    }

    /// `dropoutSeed(i)` is module i's seed: 0 gate (or the fused gate_up), 1 up, 2 down. Without
    /// `needsOutput`, only what the backward needs (down's input and LoRA terms, not its output).
    func forward(_ x: Tensor, activation: GatedActivation, needsOutput: Bool = true,
                 dropoutSeed: (Int) -> UInt64?) throws -> (Tensor?, Saved) {
        let backend = x.backend
        let (gateUpOut, gateUpSaved) = try gateUp.forward(x, dropoutSeed: dropoutSeed)
        let (g, u) = (gateUpOut[0], gateUpOut[1])
        let m = try backend.empty(g.shape, backend.computeType)
        backend.gatedLinearUnit(activation, gate: g, up: u, into: m)
        let (d, downSaved): (Tensor?, Linear.Saved)
        if needsOutput {
            (d, downSaved) = try down.forward(m, dropoutSeed: dropoutSeed(2))
        } else {
            (d, downSaved) = (nil, try down.saved(for: m, dropoutSeed: dropoutSeed(2)))
        }
        return (d, Saved(gate: g, up: u, gateUpSaved: gateUpSaved, downSaved: downSaved))
    }

    /// dL/dx (a fresh tensor); the LoRA gradients accumulate as a side effect. Works in place where
    /// the forward's tensors are dead: dL/dm takes m's storage (m is only down's input), and the gated
    /// unit's gradients overwrite gate and up (every backend reads an element before writing it), so
    /// the peak is three [tokens, intermediate] tensors lower; the same ops, the same bits.
    func backward(_ dY: Tensor, saved s: Saved, activation: GatedActivation) throws -> Tensor {
        let backend = dY.backend
        let dM = try down.backward(dY, saved: s.downSaved, accumulateInto: nil, overwritingInput: true)
        let (dGate, dUp) = (s.gate, s.up)
        backend.gatedLinearUnitBackward(activation, dOut: dM, gate: s.gate, up: s.up, dGate: dGate, dUp: dUp)
        return try gateUp.backward([dGate, dUp], saved: s.gateUpSaved)
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
