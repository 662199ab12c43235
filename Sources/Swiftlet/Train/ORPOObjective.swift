/// ORPO as TRL's ORPOTrainer trains it: each micro-batch of preference pairs collated chosen rows then
/// rejected rows (the chosen prompts as targets too, for the NLL term), no reference model, the loss of
/// the micro-batch (`ORPOLoss`) divided by the accumulation steps (the HF Trainer's rule for a loss that
/// is not token-normalised across micro-batches). Metrics are means over the step's micro-batches.
/// The pairs come tokenized and truncated as TRL's ORPO does (`PreferenceDataset` with `.orpo`).
public final class ORPOObjective: MicroBatchMeanObjective {
    public let pairs: [PreferencePair]
    public let loss: ORPOLoss

    /// Every pair needs a completion token on each side (the log-probs are averaged per token).
    public init(pairs: [PreferencePair], loss: ORPOLoss) throws {
        if let i = pairs.firstIndex(where: { $0.chosenIds.isEmpty || $0.rejectedIds.isEmpty }) {
            throw TrainingError.invalid("ORPO: preference pair \(i) has an empty completion (its prompt fills max_length?)")
        }
        self.pairs = pairs; self.loss = loss
    }

    public var rowCount: Int { pairs.count }

    public var resumeKey: String? { "orpo beta=\(loss.beta)" }

    public var dataFingerprint: String {
        var f = FNV1a()
        for pair in pairs {
            f.mix(-1); pair.promptIds.forEach { f.mix(Int64($0)) }
            f.mix(-2); pair.chosenIds.forEach { f.mix(Int64($0)) }
            f.mix(-3); pair.rejectedIds.forEach { f.mix(Int64($0)) }
            if let other = pair.rejectedPromptIds { f.mix(-4); other.forEach { f.mix(Int64($0)) } }
        }
        return f.string
    }

    public func batch(_ rows: [Int]) -> PreferenceBatch {
        Self.batch(rows.map { pairs[$0] })
    }

    static func batch(_ pairs: [PreferencePair]) -> PreferenceBatch {
        PreferenceBatch(pairs: pairs, chosenPromptIsTarget: true)
    }

    /// Data parallel: each micro-batch's loss (its NLL normalised by its own chosen tokens, as TRL
    /// computes it per batch) is divided by the micro-batches of every rank, as one process with
    /// N× the accumulation divides by its own.
    public func accumulate(model: LlamaModel, microBatches: [[Int]], dropoutSeeds: [UInt64], lossScale: Float,
                           totalMicroBatches k: Double) throws -> ObjectiveStep {
        var step = ObjectiveStep(loss: 0, tokens: 0, targetTokens: 0, metrics: [:])
        for (rows, seed) in zip(microBatches, dropoutSeeds) {
            let batch = batch(rows)
            let result = try ORPOStep.run(model: model, batch: batch, loss: loss, gradScale: Double(lossScale) / k, dropoutSeed: seed)
            step.loss += result.loss / k
            for (name, value) in result.metrics { step.metrics![name, default: 0] += value / k }
            step.tokens += batch.batch.tokenCount
            step.targetTokens += batch.batch.targetCount
        }
        return step
    }

    /// Loss and metrics over `pairs` in batches of `batchSize` (each batch weighted by its pairs), gradients untouched.
    public static func evaluate(model: LlamaModel, pairs: [PreferencePair], loss: ORPOLoss, batchSize: Int) throws -> PreferenceEvaluation {
        guard !pairs.isEmpty else { throw TrainingError.invalid("the evaluation data has no preference pairs") }
        var sum = 0.0, metrics: [String: Double] = [:]
        for start in stride(from: 0, to: pairs.count, by: batchSize) {
            let chunk = Array(pairs[start..<Swift.min(start + batchSize, pairs.count)])
            let r = try ORPOStep.evaluate(model: model, batch: batch(chunk), loss: loss)
            let w = Double(chunk.count) / Double(pairs.count)
            sum += r.loss * w
            for (name, value) in r.metrics { metrics[name, default: 0] += value * w }
        }
        return PreferenceEvaluation(loss: sum, pairs: pairs.count, metrics: metrics)
    }
}
