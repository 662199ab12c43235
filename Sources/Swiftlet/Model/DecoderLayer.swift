/// One Llama decoder layer, forward and hand-written backward:
///
///     h2 = h  + o_proj(attention(rope(q_proj(n1)), rope(k_proj(n1)), v_proj(n1)))   n1 = rmsnorm(h)
///     h3 = h2 + down_proj(silu(gate_proj(n2)) ⊙ up_proj(n2))                          n2 = rmsnorm(h2)
///
/// The backward returns dL/dh and accumulates the LoRA gradients; frozen weights get none.
public struct DecoderLayer {
    public var inputNorm: Tensor
    public var postAttentionNorm: Tensor
    public var q, k, v, o: Linear
    public var gate, up, down: Linear

    public var linears: [Linear] { [q, k, v, o, gate, up, down] }

    /// Activations the backward needs.
    public struct Saved {
        var input, inputRstd, attentionInput: Tensor
        var q, k, v, attentionOut, logSumExp: Tensor
        var qSaved, kSaved, vSaved, oSaved: Linear.Saved
        var residual, postRstd, mlpInput: Tensor
        var gate, up: Tensor
        var gateSaved, upSaved, downSaved: Linear.Saved
    }

    // Outputs that an op writes completely (norms, attention, SwiGLU, and the attention backward,
    // which overwrites dQ/dK/dV on every backend) start as `empty`: no fill on the GPU.
    public func forward(_ h: Tensor, _ step: StepContext) throws -> (Tensor, Saved) {
        try forward(h, step) { q, k, v in
            let backend = h.backend, tokens = h.shape[0]
            let attention = try backend.empty([tokens, step.config.qWidth], backend.computeType)
            let lse = try backend.empty([tokens, step.config.heads], .f32)
            backend.attention(q, k, v, layout: step.layout, into: attention, logSumExp: lse)
            return (attention, lse)
        }
    }

    /// The layer with `attend` turning the roped q, k and v into the attention output and its
    /// log-sum-exp: the step's causal attention in training, attention to the KV cache in
    /// generation (Generate/DecoderLayer+Cached.swift).
    func forward(_ h: Tensor, _ step: StepContext,
                 attend: (_ q: Tensor, _ k: Tensor, _ v: Tensor) throws -> (Tensor, logSumExp: Tensor)) throws -> (Tensor, Saved) {
        let backend = h.backend, tokens = h.shape[0], config = step.config
        let rstd1 = try backend.empty([tokens], .f32)
        let n1 = try backend.empty(h.shape, backend.computeType)
        backend.rmsNorm(h, weight: inputNorm, eps: config.rmsNormEps, into: n1, rstd: rstd1)

        let (qOut, qSaved) = try q.forward(n1, dropoutSeed: step.dropoutSeed(0))
        let (kOut, kSaved) = try k.forward(n1, dropoutSeed: step.dropoutSeed(1))
        let (vOut, vSaved) = try v.forward(n1, dropoutSeed: step.dropoutSeed(2))
        backend.rope(qOut, positions: step.positions, table: step.rope, heads: config.heads, inverse: false)
        backend.rope(kOut, positions: step.positions, table: step.rope, heads: config.kvHeads, inverse: false)
        let (attention, lse) = try attend(qOut, kOut, vOut)
        let (oOut, oSaved) = try o.forward(attention, dropoutSeed: step.dropoutSeed(3))
        backend.add(h, into: oOut, alpha: 1)
        let h2 = oOut

        let rstd2 = try backend.empty([tokens], .f32)
        let n2 = try backend.empty(h.shape, backend.computeType)
        backend.rmsNorm(h2, weight: postAttentionNorm, eps: config.rmsNormEps, into: n2, rstd: rstd2)
        let (g, gateSaved) = try gate.forward(n2, dropoutSeed: step.dropoutSeed(4))
        let (u, upSaved) = try up.forward(n2, dropoutSeed: step.dropoutSeed(5))
        let m = try backend.empty(g.shape, backend.computeType)
        backend.swiglu(gate: g, up: u, into: m)
        let (d, downSaved) = try down.forward(m, dropoutSeed: step.dropoutSeed(6))
        backend.add(h2, into: d, alpha: 1)

        let saved = Saved(input: h, inputRstd: rstd1, attentionInput: n1,
                          q: qOut, k: kOut, v: vOut, attentionOut: attention, logSumExp: lse,
                          qSaved: qSaved, kSaved: kSaved, vSaved: vSaved, oSaved: oSaved,
                          residual: h2, postRstd: rstd2, mlpInput: n2, gate: g, up: u,
                          gateSaved: gateSaved, upSaved: upSaved, downSaved: downSaved)
        return (d, saved)
    }

    public func backward(_ dOut: Tensor, saved s: Saved, _ step: StepContext) throws -> Tensor {
        let backend = dOut.backend, tokens = dOut.shape[0], config = step.config
        // MLP: dOut flows to the residual h2 unchanged and through down_proj.
        let dM = try down.backward(dOut, saved: s.downSaved, accumulateInto: nil)
        let dGate = try backend.empty(s.gate.shape, backend.computeType)
        let dUp = try backend.empty(s.up.shape, backend.computeType)
        backend.swigluBackward(dOut: dM, gate: s.gate, up: s.up, dGate: dGate, dUp: dUp)
        let dN2 = try gate.backward(dGate, saved: s.gateSaved, accumulateInto: nil)
        try up.backward(dUp, saved: s.upSaved, accumulateInto: dN2)
        let dH2 = dOut  // the residual; the norm's gradient is added to it
        backend.rmsNormBackward(dOut: dN2, x: s.residual, weight: postAttentionNorm, rstd: s.postRstd, accumulateInto: dH2)

        // Attention.
        let dAttention = try o.backward(dH2, saved: s.oSaved, accumulateInto: nil)
        let dQ = try backend.empty([tokens, config.qWidth], backend.computeType)
        let dK = try backend.empty([tokens, config.kvWidth], backend.computeType)
        let dV = try backend.empty([tokens, config.kvWidth], backend.computeType)
        backend.attentionBackward(dOut: dAttention, q: s.q, k: s.k, v: s.v, out: s.attentionOut,
                                  logSumExp: s.logSumExp, layout: step.layout, dQ: dQ, dK: dK, dV: dV)
        backend.rope(dQ, positions: step.positions, table: step.rope, heads: config.heads, inverse: true)
        backend.rope(dK, positions: step.positions, table: step.rope, heads: config.kvHeads, inverse: true)
        let dN1 = try q.backward(dQ, saved: s.qSaved, accumulateInto: nil)
        try k.backward(dK, saved: s.kSaved, accumulateInto: dN1)
        try v.backward(dV, saved: s.vSaved, accumulateInto: dN1)
        let dH = dH2
        backend.rmsNormBackward(dOut: dN1, x: s.input, weight: inputNorm, rstd: s.inputRstd, accumulateInto: dH)
        return dH
    }
}

/// What every layer of one step shares: positions, the RoPE table, who attends to whom.
public struct StepContext {
    public var config: LlamaConfig
    public var positions: Tensor
    public var rope: RoPETable
    public var layout: AttentionLayout
    /// Training with LoRA dropout: the seed for this layer's masks; nil disables dropout.
    public var layerSeed: UInt64?

    func dropoutSeed(_ module: UInt64) -> UInt64? {
        layerSeed.map { $0 &* 31 &+ module &* 0x9E37_79B9 }
    }
}
