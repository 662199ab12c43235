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

    /// The longest sequence the user asked to train on (FastLanguageModel's maxSeqLength).
    public var maxSeqLength: Int?

    /// The LoRA settings of the attached adapters (nil: none attached).
    public internal(set) var loraConfig: LoRAConfig?

    /// Whether the linear layers' base weights are 4-bit NF4 (QLoRA).
    public var isQuantized4bit: Bool { layers.contains { $0.linears.contains { $0.weight.isQuantized } } }

    /// Every LoRA adapter, in layer order, then q k v o gate up down (qkv o gate_up down).
    public var adapters: [LoRAAdapter] { layers.flatMap { $0.linears.compactMap(\.lora) } }

    // MARK: Forward and backward

    /// Σ loss over the batch's targets; with `gradScale`, also accumulates gradScale·dΣloss/dθ
    /// into the LoRA gradients (pass 1/N for the mean over N targets of the accumulated batch).
    public func step(_ batch: Batch, gradScale: Float?, dropoutSeed: UInt64? = nil) throws -> Double {
        try run(batch, training: gradScale != nil, dropoutSeed: dropoutSeed) { h, targets in
            let (losses, dH) = try self.head(h, targets: targets, gradient: gradScale.map { .uniform($0) } ?? .none,
                                             rowLength: nil)
            return (losses.reduce(0, +), dH)
        }
    }

    /// Each row's Σ log p(target) over its targets (−Σ cross-entropy), without gradients: DPO's
    /// per-sequence completion log-probs when the targets are the completion tokens.
    public func rowLogProbs(_ batch: Batch) throws -> [Double] {
        try run(batch, training: false, dropoutSeed: nil) { h, targets in
            (try self.head(h, targets: targets, gradient: .none, rowLength: batch.columns).rowLosses.map { -$0 }, nil)
        }
    }

    /// A step whose loss is a function of the rows' log-probs (DPO): one forward keeps the
    /// activations, the head computes each row's Σ log p, `rowGradients` turns them into dL/dlogp
    /// of each row, and a second pass of the head alone writes the logits' gradient with that
    /// weight per row (dL/dCE = −dL/dlogp) before the usual backward. Returns the rows' log-probs.
    public func rowLogProbStep(_ batch: Batch, dropoutSeed: UInt64? = nil,
                               rowGradients: ([Double]) throws -> [Double]) throws -> [Double] {
        try run(batch, training: true, dropoutSeed: dropoutSeed) { h, targets in
            let logps = try self.head(h, targets: targets, gradient: .none, rowLength: batch.columns).rowLosses.map { -$0 }
            let dLogp = try rowGradients(logps)
            precondition(dLogp.count == batch.rows, "one gradient per row")
            let (_, dH) = try self.head(h, targets: targets, gradient: .perRow(dLogp.map { Float(-$0) }),
                                        rowLength: batch.columns)
            return (logps, dH)
        }
    }

    /// Runs `body` with every LoRA path switched off (the base model, e.g. DPO's reference),
    /// by detaching the adapters and putting them back: no copy of any weight.
    public func withAdaptersDisabled<R>(_ body: () throws -> R) rethrows -> R {
        let saved = layers
        for i in layers.indices {
            for target in LoRAConfig.Target.allCases { layers[i][target]?.lora = nil }
        }
        defer { layers = saved }
        return try body()
    }

    /// Forward (keeping what the backward needs when training), `head` (the loss and dL/dh of the
    /// last layer), and the backward through the layers when `head` returns a gradient.
    private func run<R>(_ batch: Batch, training: Bool, dropoutSeed: UInt64?,
                        head: (Tensor, Tensor) throws -> (R, Tensor?)) throws -> R {
        let context = try stepContext(batch)
        var h = try embed(batch, context)
        var saved: [DecoderLayer.Saved] = []
        var inputs: [Tensor] = []
        var offloaded: [OffloadedTensor] = []
        for (i, layer) in layers.enumerated() {
            var layerContext = context
            layerContext.layerSeed = dropoutSeed.map { $0 &+ UInt64(i) &* 1_000_003 }
            let (next, s) = try layer.forward(h, layerContext)
            if training {
                switch gradientCheckpointing {
                case .off: saved.append(s)
                case .on: inputs.append(h)
                case .offload: offloaded.append(try backend.offload(h))
                }
            }
            h = next
        }
        let targets = try backend.upload(batch.targets, [batch.tokenCount])
        let (result, gradient) = try head(h, targets)
        guard training, var dH = gradient else { return result }
        for i in layers.indices.reversed() {
            var layerContext = context
            layerContext.layerSeed = dropoutSeed.map { $0 &+ UInt64(i) &* 1_000_003 }
            if gradientCheckpointing.recomputes {
                // Recompute this layer's activations from its input (same dropout seed: same masks).
                let input = gradientCheckpointing == .offload ? try backend.reload(offloaded.removeLast())
                                                              : inputs.removeLast()
                let (_, recomputed) = try layers[i].forward(input, layerContext)
                dH = try layers[i].backward(dH, saved: recomputed, layerContext)
            } else {
                dH = try layers[i].backward(dH, saved: saved.removeLast(), layerContext)
            }
        }
        return result
    }

    /// Logits [tokens, vocab] of a batch (for evaluation and tests).
    public func logits(_ batch: Batch) throws -> [Float] {
        let context = try stepContext(batch)
        var h = try embed(batch, context)
        for layer in layers { h = try layer.forward(h, context).0 }
        let normed = try backend.empty(h.shape, backend.computeType)
        let rstd = try backend.empty([batch.tokenCount], .f32)
        backend.rmsNorm(h, weight: finalNorm, eps: config.rmsNormEps, into: normed, rstd: rstd)
        let logits = try backend.empty([batch.tokenCount, config.vocabSize], backend.computeType)
        backend.matmul(normed, transposeA: false, lmHead, transposeB: true, into: logits, alpha: 1, beta: 0)
        return backend.download(logits)
    }

    private func stepContext(_ batch: Batch) throws -> StepContext {
        for (n, id) in batch.tokens.enumerated() where id < 0 || Int(id) >= config.vocabSize {
            throw ModelError.tokenOutOfRange(id: Int(id), index: n, vocabSize: config.vocabSize)
        }
        let longest = Int(batch.positions.max() ?? 0) + 1
        let rope = try RoPEFrequencies.table(config, positions: longest, sequenceLength: longest, on: backend)
        let layout = AttentionLayout(rows: batch.rows, columns: batch.columns, heads: config.heads,
                                     kvHeads: config.kvHeads, headDim: config.headDim,
                                     sequenceIds: try backend.upload(batch.sequenceIds, [batch.tokenCount]),
                                     slidingWindow: config.slidingWindow)
        return StepContext(config: config, positions: try backend.upload(batch.positions, [batch.tokenCount]),
                           rope: rope, layout: layout, layerSeed: nil)
    }

    private func embed(_ batch: Batch, _ context: StepContext) throws -> Tensor {
        let ids = try backend.upload(batch.tokens, [batch.tokenCount])
        let h = try backend.empty([batch.tokenCount, config.hiddenSize], backend.computeType)
        backend.embedding(table: embedding, ids: ids, into: h)
        return h
    }

    /// What the head writes over the logits: nothing, gradScale·dCE for every row, or a scale per
    /// batch row (DPO: each sequence's dL/dCE).
    private enum HeadGradient {
        case none
        case uniform(Float)
        case perRow([Float])
    }

    /// Final norm, LM head and cross-entropy, in chunks of tokens so the logits of the whole
    /// batch never exist at once; with a gradient, returns dL/dh of the last layer too.
    /// With `rowLength` (the batch's columns) no chunk spans two rows and the losses come back
    /// one per row; otherwise one per chunk.
    private func head(_ h: Tensor, targets: Tensor, gradient: HeadGradient,
                      rowLength: Int?) throws -> (rowLosses: [Double], dH: Tensor?) {
        let tokens = h.shape[0], vocab = config.vocabSize
        let normed = try backend.empty(h.shape, backend.computeType)
        let rstd = try backend.empty([tokens], .f32)
        backend.rmsNorm(h, weight: finalNorm, eps: config.rmsNormEps, into: normed, rstd: rstd)
        var training = true
        if case .none = gradient { training = false }
        // Every row of dNormed is written by a GEMM with beta 0, chunk by chunk.
        let dNormed = training ? try backend.empty(h.shape, backend.computeType) : nil

        let chunk = Swift.max(1, Swift.min(tokens, (1 << 22) / Swift.max(vocab, 1)))
        // Logits in the compute type, as transformers' lm_head produces them (the loss upcasts).
        let logits = try backend.empty([chunk, vocab], backend.computeType)
        let span = rowLength.map { Swift.max($0, 1) } ?? tokens
        var losses: [Double] = []
        for rowStart in stride(from: 0, to: tokens, by: Swift.max(span, 1)) {
            let rowEnd = Swift.min(rowStart + span, tokens)
            var rowLoss = 0.0
            let scale: Float?
            switch gradient {
            case .none: scale = nil
            case .uniform(let s): scale = s
            case .perRow(let scales): scale = scales[rowStart / span]
            }
            for start in stride(from: rowStart, to: rowEnd, by: chunk) {
                let rows = start..<Swift.min(start + chunk, rowEnd)
                let chunkLogits = logits.rows(0..<rows.count)
                backend.matmul(normed.rows(rows), transposeA: false, lmHead, transposeB: true,
                               into: chunkLogits, alpha: 1, beta: 0)
                let loss = backend.crossEntropy(logits: chunkLogits, labels: targets.rows(rows), gradScale: scale)
                if rowLength == nil { losses.append(loss) } else { rowLoss += loss }
                if let dNormed {
                    backend.matmul(chunkLogits, transposeA: false, lmHead, transposeB: false,
                                   into: dNormed.rows(rows), alpha: 1, beta: 0)
                }
            }
            if rowLength != nil { losses.append(rowLoss) }
        }
        guard let dNormed else { return (losses, nil) }
        let dH = try backend.zeros(h.shape, backend.computeType)   // the norm's backward accumulates
        backend.rmsNormBackward(dOut: dNormed, x: h, weight: finalNorm, rstd: rstd, accumulateInto: dH)
        return (losses, dH)
    }
}

public enum ModelError: Error, CustomStringConvertible {
    case tokenOutOfRange(id: Int, index: Int, vocabSize: Int)
    case missingTensor(name: String, source: String)
    case shapeMismatch(name: String, source: String, expected: Shape, found: Shape)

    public var description: String {
        switch self {
        case let .tokenOutOfRange(id, index, vocab):
            return "token id \(id) at position \(index) is outside the model's vocabulary (vocab_size \(vocab))"
        case let .missingTensor(name, source):
            return "\(source): tensor '\(name)' is missing"
        case let .shapeMismatch(name, source, expected, found):
            return "\(source): tensor '\(name)' has shape \(found), expected \(expected) from config.json"
        }
    }
}
