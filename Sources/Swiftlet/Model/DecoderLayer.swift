/// One Llama-family decoder layer, forward and hand-written backward:
///
///     h2 = h  + norm_a(o_proj(attention(rope(norm_q(q)), rope(norm_k(k)), v)))   q, k, v = qkv(n1), n1 = rmsnorm(h)
///     h3 = h2 + norm_m(down_proj(act(gate) ⊙ up))                                gate, up = gateUp(n2), n2 = rmsnorm(h2)
///
/// The families are configurations of this one layer: q, k, v (and gate, up) are separate linears
/// (Llama, Mistral, Qwen2, Qwen3, Gemma) or one fused linear each (Phi-3's qkv_proj, gate_up_proj; see
/// `ProjectionGroup`); norm_q and norm_k are Qwen3's and Gemma 3's per-head RMSNorms, norm_a and norm_m
/// Gemma's norms of the sublayers' outputs (identity elsewhere); act is SiLU or Gemma's GELU (tanh), and
/// every norm scales by (config.normWeightOffset + w). The MLP is dense or a routed mixture of experts
/// (Mixtral, Qwen3-MoE; `FeedForward`).
/// The backward returns dL/dh and accumulates the LoRA gradients; frozen weights get none.
public struct DecoderLayer {
    public var inputNorm: Tensor
    /// The norm before the MLP: post_attention_layernorm in Llama's naming, Gemma's pre_feedforward_layernorm.
    public var postAttentionNorm: Tensor
    /// Gemma: the norms of the attention output (its post_attention_layernorm) and of the MLP output
    /// (post_feedforward_layernorm), applied before each residual add; nil for the other families.
    public var attentionOutputNorm, mlpOutputNorm: Tensor?
    /// Qwen3's and Gemma 3's q_norm and k_norm: RMSNorm weights [headDim] applied to every head of q
    /// and of k before RoPE; nil for the other families.
    public var qNorm, kNorm: Tensor?
    /// q_proj, k_proj, v_proj, or Phi-3's qkv_proj.
    public var qkvProjections: ProjectionGroup
    public var o: Linear
    /// The dense SwiGLU MLP (gate_proj, up_proj or Phi-3's gate_up_proj; down_proj), or the experts.
    public var feedForward: FeedForward

    /// A layer with separate q, k, v, gate and up linears.
    public init(inputNorm: Tensor, postAttentionNorm: Tensor, qNorm: Tensor? = nil, kNorm: Tensor? = nil,
                q: Linear, k: Linear, v: Linear, o: Linear, gate: Linear, up: Linear, down: Linear) {
        self.init(inputNorm: inputNorm, postAttentionNorm: postAttentionNorm, qNorm: qNorm, kNorm: kNorm,
                  qkvProjections: .separate([q, k, v]), o: o, gateUpProjections: .separate([gate, up]), down: down)
    }

    public init(inputNorm: Tensor, postAttentionNorm: Tensor, attentionOutputNorm: Tensor? = nil,
                mlpOutputNorm: Tensor? = nil, qNorm: Tensor? = nil, kNorm: Tensor? = nil,
                qkvProjections: ProjectionGroup, o: Linear, gateUpProjections: ProjectionGroup, down: Linear) {
        self.init(inputNorm: inputNorm, postAttentionNorm: postAttentionNorm, attentionOutputNorm: attentionOutputNorm,
                  mlpOutputNorm: mlpOutputNorm, qNorm: qNorm, kNorm: kNorm, qkvProjections: qkvProjections, o: o,
                  feedForward: .dense(GatedMLP(gateUp: gateUpProjections, down: down)))
    }

    public init(inputNorm: Tensor, postAttentionNorm: Tensor, attentionOutputNorm: Tensor? = nil,
                mlpOutputNorm: Tensor? = nil, qNorm: Tensor? = nil, kNorm: Tensor? = nil,
                qkvProjections: ProjectionGroup, o: Linear, feedForward: FeedForward) {
        self.inputNorm = inputNorm
        self.postAttentionNorm = postAttentionNorm
        self.attentionOutputNorm = attentionOutputNorm
        self.mlpOutputNorm = mlpOutputNorm
        self.qNorm = qNorm
        self.kNorm = kNorm
        self.qkvProjections = qkvProjections
        self.o = o
        self.feedForward = feedForward
    }

    /// Every linear, in LoRA target order (q k v o gate up down, or qkv o gate_up down; a mixture's
    /// router, then each expert's gate_up and down).
    public var linears: [Linear] { qkvProjections.linears + [o] + feedForward.linears }

    /// Applies `body` to every linear of the layer, the experts' included.
    public mutating func updateLinears(_ body: (inout Linear) throws -> Void) rethrows {
        try qkvProjections.updateLinears(body)
        try body(&o)
        try feedForward.updateLinears(body)
    }

    /// This layer with its NF4 weights dequantized, for a stretch that uses each of them twice:
    /// gradient checkpointing's recompute and the backward right after it dequantize each weight once
    /// instead of once each (the same values; the layer's seven weights are held together meanwhile,
    /// 0.38 GiB at 7B, 1.7 GiB at 70B). A mixture's experts stay quantized (all of them at once would
    /// not fit). Off unless `SWIFTLET_LAYER_DEQUANT=1`: its time saved is predicted, not yet measured,
    /// and its memory is not free; it becomes a default once measured, where memory allows.
    func dequantizedForBackward() throws -> DecoderLayer {
        guard Self.dequantizesForBackward, mixture == nil, linears.contains(where: { $0.weight.isQuantized }) else { return self }
        var layer = self
        try layer.updateLinears { if $0.weight.isQuantized { $0.weight = .dense(try $0.weight.materialized()) } }
        return layer
    }

    nonisolated(unsafe) static var dequantizesForBackward = CUDALibrarySearch.processEnvironment["SWIFTLET_LAYER_DEQUANT"] == "1"
    static let dequantizesForBackwardByDefault = dequantizesForBackward

    /// The layer's adapters as its low-rank ops take them, for `Backend.withPreparedLoRA`: q/k/v and
    /// gate/up together, o and down alone. A mixture's experts are left out (they are many).
    var loraGroups: [[LoRAAdapter]] {
        func alone(_ linear: Linear) -> [[LoRAAdapter]] { linear.lora.map { Linear.takesFusedOps($0) ? [[$0]] : [] } ?? [] }
        var groups = qkvProjections.loraGroups + alone(o)
        if case let .dense(mlp) = feedForward { groups += mlp.gateUp.loraGroups + alone(mlp.down) }
        return groups
    }

    /// The experts, when the MLP is a mixture.
    public var mixture: MixtureOfExperts? {
        if case let .mixture(moe) = feedForward { return moe }
        return nil
    }

    /// The LoRA targets this layer has: the linears `subscript` finds, and for a mixture the experts'
    /// gate and up (one fused adapter per expert, as PEFT's target_parameters gate_up_proj) and down.
    public var loraTargets: Set<LoRAConfig.Target> {
        var targets = Set(LoRAConfig.Target.allCases.filter { self[$0] != nil })
        if mixture != nil { targets.formUnion([.gate, .up, .down]) }
        return targets
    }

    static let qkvNames: [LoRAConfig.Target] = [.q, .k, .v]
    static let gateUpNames: [LoRAConfig.Target] = [.gate, .up]

    /// The linear a LoRA target names, nil when this layer has none by that name (q_proj of a
    /// Phi-3 layer, qkv_proj of a Llama layer, gate_proj of a mixture, whose experts are many linears;
    /// `router` only in a mixture). Setting it replaces that linear.
    public subscript(_ target: LoRAConfig.Target) -> Linear? {
        get {
            switch (target, feedForward) {
            case (.o, _): return o
            case (.q, _), (.k, _), (.v, _), (.qkv, _):
                return qkvProjections.linear(target, names: Self.qkvNames, fusedName: .qkv)
            case let (.down, .dense(mlp)): return mlp.down
            case let (.gate, .dense(mlp)), let (.up, .dense(mlp)), let (.gateUp, .dense(mlp)):
                return mlp.gateUp.linear(target, names: Self.gateUpNames, fusedName: .gateUp)
            case let (.router, .mixture(moe)): return moe.router
            case (.router, .dense), (.gate, .mixture), (.up, .mixture), (.gateUp, .mixture), (.down, .mixture):
                return nil
            }
        }
        set {
            // `layer[target]?.lora = nil` writes the optional back even where the layer has no such
            // linear: nil is a no-op then; removing a linear that exists is a bug.
            guard let new = newValue else {
                precondition(self[target] == nil, "a layer's \(target.rawValue) cannot be removed")
                return
            }
            switch (target, feedForward) {
            case (.o, _): o = new
            case (.q, _), (.k, _), (.v, _), (.qkv, _):
                qkvProjections.setLinear(target, names: Self.qkvNames, fusedName: .qkv, to: new)
            case (.down, .dense(var mlp)): mlp.down = new; feedForward = .dense(mlp)
            case (.gate, .dense(var mlp)), (.up, .dense(var mlp)), (.gateUp, .dense(var mlp)):
                mlp.gateUp.setLinear(target, names: Self.gateUpNames, fusedName: .gateUp, to: new)
                feedForward = .dense(mlp)
            case (.router, .mixture(var moe)): moe.router = new; feedForward = .mixture(moe)
            case (.router, .dense), (.gate, .mixture), (.up, .mixture), (.gateUp, .mixture), (.down, .mixture):
                return
            }
        }
    }

    /// Activations the backward needs.
    public struct Saved {
        /// The layer's input and its norm's rstd. The norm's output (q, k and v's input) is not kept:
        /// the backward recomputes it (one RMSNorm) rather than hold [tokens, hidden] through the MLP's
        /// backward, where a layer's backward peaks.
        var input, inputRstd: Tensor
        var q, k, v, attentionOut, logSumExp: Tensor
        var qkvSaved: ProjectionGroup.Saved
        var oSaved: Linear.Saved
        /// Qwen3: q and k before their head norms, and the norms' rstd.
        var headNorms: (q: Tensor, qRstd: Tensor, k: Tensor, kRstd: Tensor)?
        /// Gemma: the attention's and the MLP's outputs before their norms, and the norms' rstd.
        var attentionOutput, mlpOutput: (x: Tensor, rstd: Tensor)?
        var postRstd: Tensor
        /// h2, the MLP's residual input (for its norm's backward).
        var residual: Tensor?
        /// The MLP's activations; the backward drops them (and `residual`, `mlpOutput`) once the MLP's
        /// backward is done, so that the attention's backward does not hold them too.
        var feedForwardSaved: FeedForward.Saved?
        /// A mixture's [2, experts] load-balancing statistics (nil for a dense MLP).
        public var routerStatistics: Tensor? {
            if case let .mixture(s) = feedForwardSaved { return s.statistics }
            return nil
        }
    }

    // Outputs that an op writes completely (norms, attention, SwiGLU, and the attention backward,
    // which overwrites dQ/dK/dV on every backend) start as `empty`: no fill on the GPU.
    public func forward(_ h: Tensor, _ step: StepContext) throws -> (Tensor, Saved) {
        let (out, saved) = try run(h, step, needsOutput: true, attend: Self.attention(step))
        return (out!, saved)
    }

    /// What the backward needs, recomputed from the layer's input (gradient checkpointing). The
    /// layer's output is not: a dense MLP's down_proj runs only its LoRA down product (the frozen
    /// GEMM, 2 · tokens · hidden · intermediate FLOPs, is skipped) and the residual add is left out.
    public func recompute(_ h: Tensor, _ step: StepContext) throws -> Saved {
        try run(h, step, needsOutput: false, attend: Self.attention(step)).1
    }

    /// The step's causal attention.
    static func attention(_ step: StepContext) -> (_ q: Tensor, _ k: Tensor, _ v: Tensor) throws -> (Tensor, logSumExp: Tensor) {
        { q, k, v in
            let backend = q.backend, tokens = q.shape[0]
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
        let (out, saved) = try run(h, step, needsOutput: true, attend: attend)
        return (out!, saved)
    }

    /// The forward; without `needsOutput` it may return no output (see `recompute`).
    private func run(_ h: Tensor, _ step: StepContext, needsOutput: Bool,
                     attend: (_ q: Tensor, _ k: Tensor, _ v: Tensor) throws -> (Tensor, logSumExp: Tensor)) throws -> (Tensor?, Saved) {
        let backend = h.backend, tokens = h.shape[0], config = step.config
        let offset = config.normWeightOffset
        let rstd1 = try backend.empty([tokens], .f32)
        let qkv: [Tensor], qkvSaved: ProjectionGroup.Saved
        do {  // n1 lives only for q, k and v's products: the backward recomputes it
            let n1 = try inputNormed(h, rstd: rstd1, config)
            // Dropout seeds 0, 1, 2 for q, k, v (the fused qkv_proj takes 0).
            var saved: ProjectionGroup.Saved
            (qkv, saved) = try qkvProjections.forward(n1) { step.dropoutSeed(UInt64($0)) }
            saved.dropInput()
            qkvSaved = saved
        }
        var qOut = qkv[0], kOut = qkv[1]
        let vOut = qkv[2]
        var headNorms: Saved.HeadNorms?
        if let qNorm, let kNorm {
            let (qNormed, qRstd) = try Self.headNorm(qOut, weight: qNorm, heads: config.heads, config)
            let (kNormed, kRstd) = try Self.headNorm(kOut, weight: kNorm, heads: config.kvHeads, config)
            headNorms = (qOut, qRstd, kOut, kRstd)
            qOut = qNormed
            kOut = kNormed
        }
        backend.rope(qOut, positions: step.positions, table: step.rope, heads: config.heads, inverse: false)
        backend.rope(kOut, positions: step.positions, table: step.rope, heads: config.kvHeads, inverse: false)
        let (attention, lse) = try attend(qOut, kOut, vOut)
        let (oOut, oSaved) = try o.forward(attention, dropoutSeed: step.dropoutSeed(3))
        let (h2, attentionOutput) = try Self.outputNorm(oOut, weight: attentionOutputNorm, config)
        backend.add(h, into: h2, alpha: 1)

        let rstd2 = try backend.empty([tokens], .f32)
        let n2 = try backend.empty(h.shape, backend.computeType)
        backend.rmsNorm(h2, weight: postAttentionNorm, weightOffset: offset, eps: config.rmsNormEps, into: n2, rstd: rstd2)
        // Dropout seeds 4, 5, 6 for gate, up, down (the fused gate_up_proj takes 4). Gemma's MLP
        // output norm needs the MLP's output in its backward.
        let (d, feedForwardSaved) = try feedForward.forward(n2, step, needsOutput: needsOutput || mlpOutputNorm != nil)
        var h3: Tensor?, mlpOutput: (x: Tensor, rstd: Tensor)?
        if let d {
            (h3, mlpOutput) = try Self.outputNorm(d, weight: mlpOutputNorm, config)
            if needsOutput { backend.add(h2, into: h3!, alpha: 1) }
        }

        let saved = Saved(input: h, inputRstd: rstd1,
                          q: qOut, k: kOut, v: vOut, attentionOut: attention, logSumExp: lse,
                          qkvSaved: qkvSaved, oSaved: oSaved, headNorms: headNorms,
                          attentionOutput: attentionOutput, mlpOutput: mlpOutput,
                          postRstd: rstd2, residual: h2, feedForwardSaved: feedForwardSaved)
        return (needsOutput ? h3 : nil, saved)
    }

    /// `saved` is consumed: the MLP's activations are freed before the attention's backward (pass
    /// `consume` of a local, or an array's `removeLast()`, so that the caller holds no copy).
    /// `afterFeedForward` runs then, past the layer's peak (the model prefetches the next layer's
    /// offloaded input there).
    public func backward(_ dOut: Tensor, saved s: consuming Saved, _ step: StepContext,
                         afterFeedForward: () throws -> Void = {}) throws -> Tensor {
        let backend = dOut.backend, tokens = dOut.shape[0], config = step.config
        let offset = config.normWeightOffset
        // MLP: dOut flows to the residual h2 unchanged and through (the output norm and) the MLP.
        let dH2 = dOut  // the residual; the norm's gradient is added to it
        do {  // a scope of its own, so that nothing here holds the MLP's activations past it
            guard let feedForwardSaved = s.feedForwardSaved, let residual = s.residual else {
                preconditionFailure("a layer's saved activations used twice")
            }
            let dD = try Self.outputNormBackward(dOut, weight: mlpOutputNorm, saved: s.mlpOutput, config)
            let dN2 = try feedForward.backward(dD, saved: feedForwardSaved, step)
            backend.rmsNormBackward(dOut: dN2, x: residual, weight: postAttentionNorm, weightOffset: offset, rstd: s.postRstd,
                                    accumulateInto: dH2)
        }
        (s.feedForwardSaved, s.residual, s.mlpOutput) = (nil, nil, nil)
        try afterFeedForward()

        // Attention.
        let dO = try Self.outputNormBackward(dH2, weight: attentionOutputNorm, saved: s.attentionOutput, config)
        let dAttention = try o.backward(dO, saved: s.oSaved, accumulateInto: nil)
        var dQ = try backend.empty([tokens, config.qWidth], backend.computeType)
        var dK = try backend.empty([tokens, config.kvWidth], backend.computeType)
        let dV = try backend.empty([tokens, config.kvWidth], backend.computeType)
        backend.attentionBackward(dOut: dAttention, q: s.q, k: s.k, v: s.v, out: s.attentionOut,
                                  logSumExp: s.logSumExp, layout: step.layout, dQ: dQ, dK: dK, dV: dV)
        backend.rope(dQ, positions: step.positions, table: step.rope, heads: config.heads, inverse: true)
        backend.rope(dK, positions: step.positions, table: step.rope, heads: config.kvHeads, inverse: true)
        if let norms = s.headNorms, let qNorm, let kNorm {
            dQ = try Self.headNormBackward(dQ, x: norms.q, weight: qNorm, rstd: norms.qRstd, heads: config.heads, config)
            dK = try Self.headNormBackward(dK, x: norms.k, weight: kNorm, rstd: norms.kRstd, heads: config.kvHeads, config)
        }
        s.qkvSaved.restoreInput(try inputNormed(s.input, rstd: s.inputRstd, config))
        let dN1 = try qkvProjections.backward([dQ, dK, dV], saved: s.qkvSaved)
        let dH = dH2
        backend.rmsNormBackward(dOut: dN1, x: s.input, weight: inputNorm, weightOffset: offset, rstd: s.inputRstd,
                                accumulateInto: dH)
        return dH
    }

    /// n1 = rmsnorm(h), q, k and v's input (rstd written too): in the forward, and again in the
    /// backward, which does not keep n1 (the same op on the same input, the same bits).
    func inputNormed(_ h: Tensor, rstd: Tensor, _ config: LlamaConfig) throws -> Tensor {
        let backend = h.backend
        let n1 = try backend.empty(h.shape, backend.computeType)
        backend.rmsNorm(h, weight: inputNorm, weightOffset: config.normWeightOffset, eps: config.rmsNormEps, into: n1, rstd: rstd)
        return n1
    }

    /// Gemma's norm of a sublayer's output (a fresh tensor, the residual is added to it later), with
    /// what its backward needs; x itself (nothing saved) where the family has no such norm.
    static func outputNorm(_ x: Tensor, weight: Tensor?, _ config: LlamaConfig) throws -> (Tensor, saved: (x: Tensor, rstd: Tensor)?) {
        guard let weight else { return (x, nil) }
        let backend = x.backend
        let out = try backend.empty(x.shape, x.dtype)
        let rstd = try backend.empty([x.shape[0]], .f32)
        backend.rmsNorm(x, weight: weight, weightOffset: config.normWeightOffset, eps: config.rmsNormEps, into: out, rstd: rstd)
        return (out, (x, rstd))
    }

    /// dL/dx of `outputNorm` (dOut itself without the norm).
    static func outputNormBackward(_ dOut: Tensor, weight: Tensor?, saved: (x: Tensor, rstd: Tensor)?,
                                   _ config: LlamaConfig) throws -> Tensor {
        guard let weight, let saved else { return dOut }
        let dX = try dOut.backend.zeros(dOut.shape, dOut.dtype)
        dOut.backend.rmsNormBackward(dOut: dOut, x: saved.x, weight: weight, weightOffset: config.normWeightOffset,
                                     rstd: saved.rstd, accumulateInto: dX)
        return dX
    }

    /// Qwen3's and Gemma 3's per-head RMSNorm: x [tokens, heads·headDim] seen as [tokens·heads, headDim] rows, so
    /// the model's RMSNorm op (every backend's) normalises each head on its own.
    static func headNorm(_ x: Tensor, weight: Tensor, heads: Int, _ config: LlamaConfig) throws -> (Tensor, rstd: Tensor) {
        let backend = x.backend, rows = x.shape[0] * heads
        let out = try backend.empty(x.shape, x.dtype)
        let rstd = try backend.empty([rows], .f32)
        backend.rmsNorm(x.reshaped([rows, config.headDim]), weight: weight, weightOffset: config.normWeightOffset, eps: config.rmsNormEps,
                        into: out.reshaped([rows, config.headDim]), rstd: rstd)
        return (out, rstd)
    }

    /// dL/dx of `headNorm` (a fresh tensor: the op accumulates into zeros).
    static func headNormBackward(_ dOut: Tensor, x: Tensor, weight: Tensor, rstd: Tensor, heads: Int,
                                 _ config: LlamaConfig) throws -> Tensor {
        let backend = x.backend, rows = x.shape[0] * heads, headDim = weight.count
        let dX = try backend.zeros(x.shape, x.dtype)
        backend.rmsNormBackward(dOut: dOut.reshaped([rows, headDim]), x: x.reshaped([rows, headDim]), weight: weight,
                                weightOffset: config.normWeightOffset, rstd: rstd, accumulateInto: dX.reshaped([rows, headDim]))
        return dX
    }
}

extension DecoderLayer.Saved {
    typealias HeadNorms = (q: Tensor, qRstd: Tensor, k: Tensor, kRstd: Tensor)
}

/// What every layer of one step shares: positions, the RoPE table, who attends to whom.
public struct StepContext {
    public var config: LlamaConfig
    public var positions: Tensor
    public var rope: RoPETable
    public var layout: AttentionLayout
    /// Training with LoRA dropout: the seed for this layer's masks; nil disables dropout.
    public var layerSeed: UInt64?
    /// Gemma 2/3: the sliding layers' layout (their window), and Gemma 3's local RoPE table, which
    /// `forLayer` puts in place of `layout` and `rope` on those layers.
    public var slidingLayout: AttentionLayout? = nil
    public var slidingRope: RoPETable? = nil
    /// [experts] f32: dL/dp[t, e] that the load-balancing loss adds to every (unpadded) token's router
    /// probabilities in the backward; nil when the loss is off (LlamaModel computes it after the forward).
    public var routerAuxGradient: Tensor? = nil

    /// The context of layer i: its own window and RoPE where the family varies them by layer.
    public func forLayer(_ i: Int) -> StepContext {
        guard config.isSliding(layer: i) else { return self }
        var context = self
        if let slidingLayout { context.layout = slidingLayout }
        if let slidingRope { context.rope = slidingRope }
        return context
    }

    func dropoutSeed(_ module: UInt64) -> UInt64? {
        layerSeed.map { $0 &* 31 &+ module &* 0x9E37_79B9 }
    }
}
