/// Floating-point operations of one LoRA training step (multiply-add = 2), for model FLOPs
/// utilisation. LoRA training computes no gradient of a frozen weight, so a linear layer costs its
/// forward product and the input-gradient product (4·N per token, not full training's 6·N), plus
/// the adapters' own products. Causal attention counts the visible half of QKᵀ and PV; its backward
/// is 2.5 times its forward (dV, dP, dQ, dK plus the recomputed scores). Gradient checkpointing
/// runs every layer's forward a second time, all but a dense MLP's frozen down_proj product, whose
/// output nothing reads (`DecoderLayer.recompute`): `withRecompute` counts it (what the GPU
/// executes), `model` does not (what the step needs), as PaLM's MFU and HFU distinguish.
public struct TrainingFLOPs: Equatable, Sendable {
    public var model: Double
    public var withRecompute: Double
    /// One forward alone, without gradients (DPO's reference pass: with `rank` 0, the adapters off).
    public var forward: Double

    /// `rows` sequences of `rowLength` tokens (full causal rows, no packing), LoRA of rank `rank` on
    /// all seven projections (0: none).
    public init(config c: LlamaConfig, rows: Int, rowLength: Int, rank: Int, recompute: Bool) {
        let tokens = Double(rows * rowLength), h = Double(c.hiddenSize)
        let q = Double(c.qWidth), kv = Double(c.kvWidth), i = Double(c.intermediateSize)
        // (in, out) of the seven projections
        let attention: [(Double, Double)] = [(h, q), (h, kv), (h, kv), (q, h)]
        let projections = attention + [(h, i), (h, i), (i, h)]
        var frozen = projections.reduce(0) { $0 + $1.0 * $1.1 }
        var adapter = projections.reduce(0) { $0 + Double(rank) * ($1.0 + $1.1) }
        if let moe = c.moe {
            // A mixture: the router, and per token its top-k experts (gate_up's adapter has rank 2r).
            let ie = Double(moe.intermediateSize), k = Double(moe.topK), e = Double(moe.experts), r = Double(rank)
            frozen = attention.reduce(0) { $0 + $1.0 * $1.1 } + h * e + k * 3 * h * ie
            adapter = attention.reduce(0) { $0 + r * ($1.0 + $1.1) } + r * (h + e) + k * (2 * r * (h + 2 * ie) + r * (ie + h))
        }
        // per token: base forward 2·W, input gradient 2·W; adapter forward 2·r(in+out), backward
        // dz, dB, dA, dX 4·r(in+out)
        let linearForward = 2 * (frozen + adapter) * tokens
        let linearBackward = (2 * frozen + 4 * adapter) * tokens
        let causalPairs = Double(rows) * Double(rowLength) * Double(rowLength + 1) / 2
        let attentionForward = 4 * causalPairs * Double(c.heads * c.headDim)
        let layerForward = linearForward + attentionForward
        let layerBackward = linearBackward + 2.5 * attentionForward
        let head = 2 * h * Double(c.vocabSize) * tokens   // forward, and again for the input gradient
        let layers = Double(c.layers)
        model = layers * (layerForward + layerBackward) + 2 * head
        forward = layers * layerForward + head
        let skipped = c.moe == nil && !c.sandwichNorms ? 2 * i * h * tokens : 0   // down_proj's frozen product
        withRecompute = model + (recompute ? layers * (layerForward - skipped) : 0)
    }
}
