/// One DPO step on a model with LoRA adapters: the reference log-probs from the same model with
/// its adapters switched off (no second copy of the weights), then the policy's forward, TRL's
/// loss on the host, and the backward with each sequence's dL/dlogp as its cross-entropy weight.
public enum DPOStep {
    public struct Result: Equatable, Sendable {
        public var loss: Double
        public var metrics: [String: Double]
        public var policyLogProbs: [Double]
        public var referenceLogProbs: [Double]
    }

    /// Accumulates `gradScale`·dLoss/dθ into the LoRA gradients (1 for one batch; 1/k when
    /// accumulating k batches of equal size). `reference`: precomputed reference log-probs.
    public static func run(model: LlamaModel, batch: PreferenceBatch, loss: DPOLoss, gradScale: Double = 1,
                           reference: [Double]? = nil, dropoutSeed: UInt64? = nil) throws -> Result {
        let ref = try reference ?? referenceLogProbs(model: model, batch: batch)
        var result: DPOLoss.Result?
        let policy = try model.rowLogProbStep(batch.batch, dropoutSeed: dropoutSeed) { logps in
            let r = loss.evaluate(policy: logps, reference: ref, completionCounts: batch.completionCounts)
            result = r
            return r.gradient.map { $0 * gradScale }
        }
        return Result(loss: result!.loss, metrics: result!.metrics, policyLogProbs: policy, referenceLogProbs: ref)
    }

    /// The base model's Σ log p of each row's completion (adapters off, no gradients).
    public static func referenceLogProbs(model: LlamaModel, batch: PreferenceBatch) throws -> [Double] {
        try model.withAdaptersDisabled { try model.rowLogProbs(batch.batch) }
    }

    /// Loss and metrics without touching the gradients (evaluation).
    public static func evaluate(model: LlamaModel, batch: PreferenceBatch, loss: DPOLoss) throws -> Result {
        let ref = try referenceLogProbs(model: model, batch: batch)
        let policy = try model.rowLogProbs(batch.batch)
        let r = loss.evaluate(policy: policy, reference: ref, completionCounts: batch.completionCounts)
        return Result(loss: r.loss, metrics: r.metrics, policyLogProbs: policy, referenceLogProbs: ref)
    }
}
