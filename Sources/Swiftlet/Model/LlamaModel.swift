import Foundation

/// A Llama-family causal language model on a backend: frozen base weights, optional LoRA
/// adapters, and the training step's forward, fused loss and backward.
public final class LlamaModel {
    public let config: LlamaConfig
    public let backend: any Backend
    public var embedding: Tensor
    public var layers: [DecoderLayer]
    public var finalNorm: Tensor
    /// The output projection [vocab, hidden]; the embedding itself when tied.
    public var lmHead: Tensor

    public init(config: LlamaConfig, backend: any Backend, embedding: Tensor, layers: [DecoderLayer],
                finalNorm: Tensor, lmHead: Tensor) {
        self.config = config
        self.backend = backend
        self.embedding = embedding
        self.layers = layers
        self.finalNorm = finalNorm
        self.lmHead = lmHead
    }

    /// Whether the forward keeps every activation, or only each layer's input (on the device, or
    /// offloaded to host memory) and the backward recomputes the layer.
    public var gradientCheckpointing = GradientCheckpointing.off
    /// With checkpointing, how many of the last layers keep their activations anyway (no recompute):
    /// what `CheckpointPlanner` fills a memory budget with. 0: every layer is checkpointed.
    public var layersKeptWhole = 0
    /// Tokens a chunk of the head, in place of `headChunk`'s: tests cross chunk ends with small vocabularies.
    var headChunkOverride: Int?
    /// Device bytes that keeping one layer's activations adds, measured on the last training forward
    /// (layer 0), for `CheckpointPlanner`.
    public private(set) var layerActivationBytes = 0

    /// The longest sequence the user asked to train on (FastLanguageModel's maxSeqLength).
    public var maxSeqLength: Int?

    /// The load-balancing loss of the last training forward of a mixture of experts (transformers'
    /// `aux_loss`, before router_aux_loss_coef); nil for dense models.
    public private(set) var lastRouterAuxLoss: Double?

    /// The LoRA settings of the attached adapters (nil: none attached).
    public internal(set) var loraConfig: LoRAConfig?

    /// Whether the linear layers' base weights are 4-bit NF4 (QLoRA).
    public var isQuantized4bit: Bool { layers.contains { $0.linears.contains { $0.weight.isQuantized } } }

    /// Every LoRA adapter, in layer order, then q k v o gate up down (qkv o gate_up down).
    public var adapters: [LoRAAdapter] { layers.flatMap { $0.linears.compactMap(\.lora) } }

    // MARK: Forward and backward

    /// Σ loss over the batch's targets; with `gradScale`, also accumulates gradScale·dΣloss/dθ
    /// into the LoRA gradients (pass 1/N for the mean over N targets of the accumulated batch).
    ///
    /// A mixture of experts with config.json's `output_router_logits` adds the load-balancing loss
    /// as transformers does, `router_aux_loss_coef · aux` per forward, when `routerAuxScale` is
    /// given: its gradient enters scaled by routerAuxScale · coef (1, or the fp16 loss scale; the
    /// HF Trainer adds each micro-batch's aux term unnormalised). The returned Σ loss is the
    /// cross-entropy only; `lastRouterAuxLoss` holds aux.
    public func step(_ batch: Batch, gradScale: Float?, dropoutSeed: UInt64? = nil, routerAuxScale: Float? = nil) throws -> Double {
        let auxWeight = config.moe.flatMap { moe in
            moe.auxLossEnabled && gradScale != nil ? routerAuxScale.map { $0 * moe.auxLossCoefficient } : nil }
        return try run(batch, training: gradScale != nil, dropoutSeed: dropoutSeed, routerAuxWeight: auxWeight) { h, targets in
            let (losses, dH) = try self.head(h, targets: targets, gradient: gradScale.map { .uniform($0) } ?? .none,
                                             spans: [0..<batch.tokenCount])
            return (losses[0], dH)
        }
    }

    /// Each row's Σ log p(target) over its targets (−Σ cross-entropy), without gradients: DPO's
    /// per-sequence completion log-probs when the targets are the completion tokens.
    public func rowLogProbs(_ batch: Batch) throws -> [Double] {
        try spanLogProbs(batch, spans: batch.rowSpans)
    }

    /// Σ log p(target) over each span of the batch's tokens (flat token ranges that cover the batch in
    /// order, e.g. a row's prompt and its completion), without gradients.
    public func spanLogProbs(_ batch: Batch, spans: [Range<Int>]) throws -> [Double] {
        try run(batch, training: false, dropoutSeed: nil) { h, targets in
            (try self.head(h, targets: targets, gradient: .none, spans: spans).spanLosses.map { -$0 }, nil)
        }
    }

    /// A step whose loss is a function of the rows' log-probs (DPO): `spanLogProbStep` with one span per row.
    public func rowLogProbStep(_ batch: Batch, dropoutSeed: UInt64? = nil,
                               rowGradients: ([Double]) throws -> [Double]) throws -> [Double] {
        try spanLogProbStep(batch, spans: batch.rowSpans, dropoutSeed: dropoutSeed, spanGradients: rowGradients)
    }

    /// A step whose loss is a function of the log-probs summed over spans of tokens (DPO: one span per
    /// row; ORPO: a chosen row's prompt and completion apart, as its NLL term weighs them differently):
    /// one forward keeps the activations, the head computes each span's Σ log p, `spanGradients` turns
    /// them into dL/dlogp of each span, and a second pass of the head alone writes the logits' gradient
    /// with that weight per span (dL/dCE = −dL/dlogp) before the usual backward. Returns the spans' log-probs.
    public func spanLogProbStep(_ batch: Batch, spans: [Range<Int>], dropoutSeed: UInt64? = nil,
                                spanGradients: ([Double]) throws -> [Double]) throws -> [Double] {
        try run(batch, training: true, dropoutSeed: dropoutSeed) { h, targets in
            let logps = try self.head(h, targets: targets, gradient: .none, spans: spans).spanLosses.map { -$0 }
            let dLogp = try spanGradients(logps)
            precondition(dLogp.count == spans.count, "one gradient per span")
            let (_, dH) = try self.head(h, targets: targets, gradient: .perSpan(dLogp.map { Float(-$0) }), spans: spans,
                                        readLosses: false)
            return (logps, dH)
        }
    }

    /// Runs `body` with every LoRA path switched off (the base model, e.g. DPO's reference),
    /// by detaching the adapters and putting them back: no copy of any weight.
    public func withAdaptersDisabled<R>(_ body: () throws -> R) rethrows -> R {
        let saved = layers
        for i in layers.indices { layers[i].updateLinears { $0.lora = nil } }
        defer { layers = saved }
        return try body()
    }

    /// Whether layer i keeps its activations for the backward although checkpointing is on.
    private func keepsWhole(_ i: Int) -> Bool { i >= layers.count - layersKeptWhole }

    /// Forward (keeping what the backward needs when training), `head` (the loss and dL/dh of the
    /// last layer), and the backward through the layers when `head` returns a gradient.
    private func run<R>(_ batch: Batch, training: Bool, dropoutSeed: UInt64?, routerAuxWeight: Float? = nil,
                        head: (Tensor, Tensor) throws -> (R, Tensor?)) throws -> R {
        var context = try stepContext(batch)
        // Uploaded now: an upload waits for the work queued before it, and after the forward it would
        // hold the host until the forward ends, with nothing queued behind it.
        let targets = try backend.upload(batch.targets, [batch.tokenCount])
        var routerStatistics: [Tensor] = []
        var h = try embed(batch, context)
        var saved: [DecoderLayer.Saved] = []
        var inputs: [Tensor] = []
        var offloaded: [OffloadedTensor] = []
        for (i, layer) in layers.enumerated() {
            var layerContext = context.forLayer(i)
            layerContext.layerSeed = dropoutSeed.map { $0 &+ UInt64(i) &* 1_000_003 }
            // Offloaded before the forward, so that the copy runs beside it.
            if training && gradientCheckpointing == .offload && !keepsWhole(i) { offloaded.append(try backend.offload(h)) }
            let before = backend.memory.current
            backend.memory.phase = "forward \(i)"
            let (next, s) = try backend.withPreparedLoRA(layer.loraGroups) { try layer.forward(h, layerContext) }
            if let statistics = s.routerStatistics { routerStatistics.append(statistics) }
            if training {
                // what the layer's saved activations hold beyond its input (already counted) and output
                if i == 0 { layerActivationBytes = Swift.max(0, backend.memory.current - before - next.byteCount) }
                switch gradientCheckpointing {
                case _ where keepsWhole(i), .off: saved.append(s)
                case .on: inputs.append(h)
                case .offload: break
                }
            }
            h = next
        }
        if training && gradientCheckpointing == .offload {
            try backend.settleOffloads()
            // The last layer's input comes back during the head (below the step's peak, which is in
            // that layer's MLP backward, where the input is held anyway).
            if let last = offloaded.last { try backend.prefetch(last) }
        }
        if !routerStatistics.isEmpty, let moe = config.moe {
            let (aux, gradient) = RouterLoadBalancing.loss(statistics: routerStatistics.map { backend.download($0) },
                                                           experts: moe.experts,
                                                           tokens: batch.sequenceIds.filter { $0 >= 0 }.count)
            lastRouterAuxLoss = aux
            if let weight = routerAuxWeight {
                context.routerAuxGradient = try backend.upload(gradient.map { Float(Double(weight) * $0) }, [moe.experts], .f32)
            }
        }
        backend.memory.phase = "head"
        let (result, gradient) = try head(h, targets)
        defer { backend.memory.phase = "" }
        guard training, var dH = gradient else { return result }
        for i in layers.indices.reversed() {
            var layerContext = context.forLayer(i)
            layerContext.layerSeed = dropoutSeed.map { $0 &+ UInt64(i) &* 1_000_003 }
            let attentionPhase = "backward \(i) attention"
            if gradientCheckpointing.recomputes && !keepsWhole(i) {
                // Recompute this layer's activations from its input (same dropout seed: same masks).
                backend.memory.phase = "recompute \(i)"
                let input = gradientCheckpointing == .offload ? try backend.reload(offloaded.removeLast())
                                                              : inputs.removeLast()
                let layer = try layers[i].dequantizedForBackward()
                dH = try backend.withPreparedLoRA(layer.loraGroups) {
                    let recomputed = try layer.recompute(input, layerContext)
                    backend.memory.phase = "backward \(i) MLP"
                    // The layer below's input comes back while this layer's attention backward runs.
                    return try layer.backward(dH, saved: consume recomputed, layerContext) {
                        backend.memory.phase = attentionPhase
                        if let below = offloaded.last { try backend.prefetch(below) }
                    }
                }
            } else {
                backend.memory.phase = "backward \(i) MLP"
                dH = try backend.withPreparedLoRA(layers[i].loraGroups) {
                    // removed inside: a copy held out here would keep the MLP's activations alive
                    try layers[i].backward(dH, saved: saved.removeLast(), layerContext) { backend.memory.phase = attentionPhase }
                }
            }
        }
        return result
    }

    /// Logits [tokens, vocab] of a batch (for evaluation and tests).
    public func logits(_ batch: Batch) throws -> [Float] {
        let context = try stepContext(batch)
        var h = try embed(batch, context)
        for (i, layer) in layers.enumerated() { h = try layer.forward(h, context.forLayer(i)).0 }
        return try outputLogits(h)
    }

    /// The final norm and LM head of every row of h, downloaded, softcapped where the family caps
    /// its logits (Gemma 2): the logits transformers returns.
    func outputLogits(_ h: Tensor) throws -> [Float] {
        let rows = h.shape[0]
        let normed = try backend.empty(h.shape, backend.computeType)
        let rstd = try backend.empty([rows], .f32)
        backend.rmsNorm(h, weight: finalNorm, weightOffset: config.normWeightOffset, eps: config.rmsNormEps,
                        into: normed, rstd: rstd)
        let logits = try backend.empty([rows, config.vocabSize], backend.computeType)
        backend.matmul(normed, transposeA: false, lmHead, transposeB: true, into: logits, alpha: 1, beta: 0)
        var values = backend.download(logits)
        LogitSoftcap.apply(&values, cap: config.finalLogitSoftcap)
        return values
    }

    func stepContext(_ batch: Batch) throws -> StepContext {
        for (n, id) in batch.tokens.enumerated() where id < 0 || Int(id) >= config.vocabSize {
            throw ModelError.tokenOutOfRange(id: Int(id), index: n, vocabSize: config.vocabSize)
        }
        let longest = Int(batch.positions.max() ?? 0) + 1
        let sequenceIds = try backend.upload(batch.sequenceIds, [batch.tokenCount])
        let wholeRows = AttentionLayout.rowsAreWhole(batch.sequenceIds, columns: batch.columns)
        func layout(window: Int?) -> AttentionLayout {
            AttentionLayout(rows: batch.rows, columns: batch.columns, heads: config.heads, kvHeads: config.kvHeads,
                            headDim: config.headDim, sequenceIds: sequenceIds, slidingWindow: window,
                            scale: config.attentionScale, softcap: config.attentionSoftcap, wholeRows: wholeRows)
        }
        func table(_ rope: RoPEScaling) throws -> RoPETable {
            try RoPEFrequencies.table(config, rope: rope, positions: longest, sequenceLength: longest, on: backend)
        }
        // Per-layer windows (Gemma): the main layout is the global layers', the sliding one apart.
        let perLayer = config.slidingLayers != nil
        return StepContext(config: config, positions: try backend.upload(batch.positions, [batch.tokenCount]),
                           rope: try table(config.rope), layout: layout(window: perLayer ? nil : config.slidingWindow),
                           layerSeed: nil,
                           slidingLayout: perLayer ? layout(window: config.slidingWindow) : nil,
                           slidingRope: try config.localRope.map(table))
    }

    private func embed(_ batch: Batch, _ context: StepContext) throws -> Tensor {
        try embed(ids: try backend.upload(batch.tokens, [batch.tokenCount]))
    }

    /// The embeddings of `ids` ([tokens] i32), times Gemma's √hidden where the family scales them.
    func embed(ids: Tensor) throws -> Tensor {
        let h = try backend.empty([ids.count, config.hiddenSize], backend.computeType)
        backend.embedding(table: embedding, ids: ids, into: h)
        if config.scalesEmbeddings { backend.scale(h, by: config.embeddingScale(backend.computeType)) }
        return h
    }

    /// What the head writes over the logits: nothing, gradScale·dCE for every token, or a scale per
    /// span (DPO, ORPO: each sequence's or span's dL/dCE).
    private enum HeadGradient {
        case none
        case uniform(Float)
        case perSpan([Float])
    }

    /// Tokens a chunk of the head: 16 Mi logits, and at least 256. A GEMM of m rows does
    /// m FLOPs per byte of the lm_head it reads, and an H200 needs about 200 (989 TFLOP/s over 4.8 TB/s)
    /// to be bound by its tensor cores: 16 Mi logits alone left Gemma's 256,000-word head 65 rows a
    /// chunk, 63 reads of its 1.8 GB a pass (≈ 58 ms a step in all, against ≈ 22 ms of products).
    static func headChunk(tokens: Int, vocab: Int) -> Int {
        Swift.max(1, Swift.min(tokens, Swift.max(256, (1 << 24) / Swift.max(vocab, 1))))
    }

    /// Final norm, LM head and cross-entropy, in chunks of tokens so the logits of the whole
    /// batch never exist at once; with a gradient, returns dL/dh of the last layer too.
    /// `spans` cover the tokens in order; no chunk crosses a span's end, and the losses come back
    /// one Σ per span (each the Σ of its chunks' sums, in order) — or none without `readLosses`, which
    /// spares the gradient pass of a span step a synchronisation before its backward.
    private func head(_ h: Tensor, targets: Tensor, gradient: HeadGradient, spans: [Range<Int>],
                      readLosses: Bool = true) throws -> (spanLosses: [Double], dH: Tensor?) {
        let tokens = h.shape[0], vocab = config.vocabSize
        precondition(spans.first?.lowerBound ?? 0 == 0 && spans.last?.upperBound ?? 0 == tokens
                     && zip(spans, spans.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound },
                     "the spans cover the batch's tokens in order")
        let normed = try backend.empty(h.shape, backend.computeType)
        let rstd = try backend.empty([tokens], .f32)
        backend.rmsNorm(h, weight: finalNorm, weightOffset: config.normWeightOffset, eps: config.rmsNormEps,
                        into: normed, rstd: rstd)
        var training = true
        if case .none = gradient { training = false }
        // Every row of dNormed is written by a GEMM with beta 0, chunk by chunk.
        let dNormed = training ? try backend.empty(h.shape, backend.computeType) : nil

        // 16 Mi logits a chunk (32 MiB in 16 bits; transformers holds all of them in f32), at least 256
        // rows (a span — a DPO row, an ORPO prompt — ends its chunk early).
        let chunk = headChunkOverride ?? Self.headChunk(tokens: tokens, vocab: vocab)
        // Logits in the compute type, as transformers' lm_head produces them (the loss upcasts).
        let logits = try backend.empty([chunk, vocab], backend.computeType)
        // Each token's loss stays on the backend until every chunk is done: one download per call,
        // not one synchronisation per chunk.
        let tokenLosses = try backend.empty([tokens], .f32)
        for (index, span) in spans.enumerated() {
            let scale: Float?
            switch gradient {
            case .none: scale = nil
            case .uniform(let s): scale = s
            case .perSpan(let scales): scale = scales[index]
            }
            for start in stride(from: span.lowerBound, to: span.upperBound, by: chunk) {
                let rows = start..<Swift.min(start + chunk, span.upperBound)
                let chunkLogits = logits.rows(0..<rows.count)
                backend.matmul(normed.rows(rows), transposeA: false, lmHead, transposeB: true,
                               into: chunkLogits, alpha: 1, beta: 0)
                backend.crossEntropy(logits: chunkLogits, labels: targets.rows(rows), softcap: config.finalLogitSoftcap,
                                     gradScale: scale, losses: tokenLosses.rows(rows))
                if let dNormed {
                    backend.matmul(chunkLogits, transposeA: false, lmHead, transposeB: false,
                                   into: dNormed.rows(rows), alpha: 1, beta: 0)
                }
            }
        }
        // Σ per chunk, then per span, in Double: the order the sums had when each chunk was read back alone.
        let values = readLosses ? backend.download(tokenLosses) : []
        let losses = !readLosses ? [] : spans.map { span in
            stride(from: span.lowerBound, to: span.upperBound, by: chunk).reduce(0.0) { sum, start in
                sum + values[start..<Swift.min(start + chunk, span.upperBound)].reduce(0.0) { $0 + Double($1) }
            }
        }
        guard let dNormed else { return (losses, nil) }
        let dH = try backend.zeros(h.shape, backend.computeType)   // the norm's backward accumulates
        backend.rmsNormBackward(dOut: dNormed, x: h, weight: finalNorm, weightOffset: config.normWeightOffset, rstd: rstd,
                                accumulateInto: dH)
        return (losses, dH)
    }
}

public enum ModelError: Error, CustomStringConvertible {
    case tokenOutOfRange(id: Int, index: Int, vocabSize: Int)
    case missingTensor(name: String, source: String)
    case shapeMismatch(name: String, source: String, expected: Shape, found: Shape)
    case mixedExpertQuantization(gate: String, up: String)

    public var description: String {
        switch self {
        case let .tokenOutOfRange(id, index, vocab):
            return "token id \(id) at position \(index) is outside the model's vocabulary (vocab_size \(vocab))"
        case let .missingTensor(name, source):
            return "\(source): tensor '\(name)' is missing"
        case let .shapeMismatch(name, source, expected, found):
            return "\(source): tensor '\(name)' has shape \(found), expected \(expected) from config.json"
        case let .mixedExpertQuantization(gate, up):
            return "expert weights '\(gate)' and '\(up)' must both be 4-bit or both 16-bit (they are fused into one linear)"
        }
    }
}
