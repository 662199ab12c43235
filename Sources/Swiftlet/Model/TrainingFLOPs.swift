/// Floating-point operations of one LoRA training step (multiply-add = 2), for model FLOPs
/// utilisation. LoRA training computes no gradient of a frozen weight, so a linear layer costs its
/// forward product and the input-gradient product (4·N per token, not full training's 6·N), plus
/// the adapters' own products. Causal attention counts the visible half of QKᵀ and PV; its backward
/// is 2.5 times its forward (dV, dP, dQ, dK plus the recomputed scores). Gradient checkpointing
/// runs every layer's forward a second time: `withRecompute` counts it (what the GPU executes),
/// `model` does not (what the step needs), as PaLM's MFU and HFU distinguish.
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
        let projections: [(Double, Double)] = [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]
        let frozen = projections.reduce(0) { $0 + $1.0 * $1.1 }
        let adapter = projections.reduce(0) { $0 + Double(rank) * ($1.0 + $1.1) }
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
        withRecompute = model + (recompute ? layers * layerForward : 0)
    }
}
