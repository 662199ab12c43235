/// One ORPO step on a model with LoRA adapters: no reference model. One forward of the collated pairs
/// (chosen rows with their prompt as targets too, then rejected rows) gives Σ log p over three kinds of
/// span — a chosen row's prompt, its completion, a rejected row's completion — from which the host
/// computes TRL's loss; the backward weighs each span's tokens by the loss's derivative for it.
public enum ORPOStep {
    public struct Result: Equatable, Sendable {
        public var loss: Double
        public var metrics: [String: Double]
    }

    /// Accumulates `gradScale`·dLoss/dθ into the LoRA gradients (1 for one batch; 1/k when
    /// accumulating k batches).
    public static func run(model: LlamaModel, batch: PreferenceBatch, loss: ORPOLoss, gradScale: Double = 1,
                           dropoutSeed: UInt64? = nil) throws -> Result {
        var result: ORPOLoss.Result?
        _ = try model.spanLogProbStep(batch.batch, spans: spans(batch), dropoutSeed: dropoutSeed) { logps in
            let r = evaluate(logps, batch: batch, loss: loss)
            result = r
            let n = batch.pairCount
            var gradient: [Double] = []
            for i in 0..<n { gradient += [r.sequenceGradient, r.sequenceGradient + r.chosenGradient[i]] }
            gradient += r.rejectedGradient
            return gradient.map { $0 * gradScale }
        }
        return Result(loss: result!.loss, metrics: result!.metrics)
    }

    /// Loss and metrics without touching the gradients (evaluation).
    public static func evaluate(model: LlamaModel, batch: PreferenceBatch, loss: ORPOLoss) throws -> Result {
        let r = evaluate(try model.spanLogProbs(batch.batch, spans: spans(batch)), batch: batch, loss: loss)
        return Result(loss: r.loss, metrics: r.metrics)
    }

    /// Spans in order: each chosen row's prompt targets and completion targets, then each rejected row.
    /// Token t's target is token t+1, so a row with p prompt tokens has p − 1 prompt targets.
    static func spans(_ batch: PreferenceBatch) -> [Range<Int>] {
        let n = batch.pairCount, rows = batch.batch.rowSpans
        var spans: [Range<Int>] = []
        for i in 0..<n {
            let cut = rows[i].lowerBound + Swift.max(batch.promptCounts[i] - 1, 0)
            spans += [rows[i].lowerBound..<cut, cut..<rows[i].upperBound]
        }
        return spans + rows[n...]
    }

    private static func evaluate(_ logps: [Double], batch: PreferenceBatch, loss: ORPOLoss) -> ORPOLoss.Result {
        let n = batch.pairCount, columns = batch.batch.columns
        let chosenTargets = batch.batch.targets[0..<(n * columns)].lazy.filter { $0 != Batch.ignoreIndex }.count
        let chosen = (0..<n).map { logps[2 * $0 + 1] }
        var sequence = 0.0
        for i in 0..<n { sequence += logps[2 * i] + logps[2 * i + 1] }
        return loss.evaluate(chosenSequence: sequence, chosenTargets: chosenTargets, chosen: chosen,
                             chosenCounts: Array(batch.completionCounts[..<n]), rejected: Array(logps[(2 * n)...]),
                             rejectedCounts: Array(batch.completionCounts[n...]))
    }
}
