/// DPO as TRL's DPOTrainer trains it: each micro-batch of preference pairs collated by
/// `PreferenceBatch` (chosen rows, then rejected), the reference log-probs from the model with its
/// adapters off, the loss a mean over the micro-batch's pairs, divided by the accumulation steps
/// (the HF Trainer's rule for a loss that is not token-normalised). Metrics are means over the
/// step's micro-batches, as TRL averages what it collected since the last log.
public final class DPOObjective: MicroBatchMeanObjective {
    public let pairs: [PreferencePair]
    public let loss: DPOLoss
    /// Prompt+completion longer than this is truncated by `truncation` (TRL's max_length).
    public let maxLength: Int?
    public let truncation: TruncationMode

    /// Each pair's reference Σ log p (chosen, rejected) when computed once before training
    /// (`precomputeReference`); nil: every step runs the reference forward itself.
    public private(set) var referenceLogProbs: [(chosen: Double, rejected: Double)]?

    public init(pairs: [PreferencePair], loss: DPOLoss, maxLength: Int?, truncation: TruncationMode = .keepStart) {
        self.pairs = pairs; self.loss = loss; self.maxLength = maxLength; self.truncation = truncation
    }

    /// TRL's `precompute_ref_log_probs`: the reference (the model with its adapters off) scores
    /// every pair once, in batches of `batchSize`, and the steps run no reference forward. The
    /// values equal the in-step ones up to the batch's padding (bit for bit when the batches are
    /// the same). With a `group` of N ranks, rank r scores batches r, r+N, … and one sum fills in
    /// the others' values (every other rank adds 0, which is exact), so every rank holds what one
    /// process computes, bit for bit, in 1/N of the time.
    public func precomputeReference(model: LlamaModel, batchSize: Int, group: (any Collective)? = nil) throws {
        let rank = group?.rank ?? 0, world = group?.worldSize ?? 1
        var values = [Double](repeating: 0, count: 2 * pairs.count)   // pair i: chosen at 2i, rejected at 2i+1
        let starts = stride(from: 0, to: pairs.count, by: Swift.max(batchSize, 1))
        for (index, start) in starts.enumerated() where index % world == rank {
            let rows = Array(start..<Swift.min(start + batchSize, pairs.count))
            let logps = try DPOStep.referenceLogProbs(model: model, batch: batch(rows))   // chosen rows, then rejected
            for (i, row) in rows.enumerated() { values[2 * row] = logps[i]; values[2 * row + 1] = logps[rows.count + i] }
        }
        if let group, world > 1 { values = try group.allReduceSum(values) }
        referenceLogProbs = pairs.indices.map { (values[2 * $0], values[2 * $0 + 1]) }
    }

    public var rowCount: Int { pairs.count }

    public var resumeKey: String? {
        "dpo loss_type=\(loss.kind.rawValue) beta=\(loss.beta) label_smoothing=\(loss.labelSmoothing) "
            + "max_length=\(maxLength.map(String.init) ?? "none") truncation_mode=\(truncation.rawValue)"
    }

    public var dataFingerprint: String {
        var f = FNV1a()
        for pair in pairs {
            f.mix(-1); pair.promptIds.forEach { f.mix(Int64($0)) }
            f.mix(-2); pair.chosenIds.forEach { f.mix(Int64($0)) }
            f.mix(-3); pair.rejectedIds.forEach { f.mix(Int64($0)) }
        }
        return f.string
    }

    public func batch(_ rows: [Int]) -> PreferenceBatch {
        PreferenceBatch(pairs: rows.map { pairs[$0] }, maxLength: maxLength, truncation: truncation)
    }

    /// Data parallel: the loss and metrics are means over every rank's micro-batches.
    public func accumulate(model: LlamaModel, microBatches: [[Int]], dropoutSeeds: [UInt64], lossScale: Float,
                           totalMicroBatches k: Double) throws -> ObjectiveStep {
        var step = ObjectiveStep(loss: 0, tokens: 0, targetTokens: 0, metrics: [:])
        for (rows, seed) in zip(microBatches, dropoutSeeds) {
            let batch = batch(rows)
            let reference = referenceLogProbs.map { ref in rows.map { ref[$0].chosen } + rows.map { ref[$0].rejected } }
            let result = try DPOStep.run(model: model, batch: batch, loss: loss, gradScale: Double(lossScale) / k,
                                         reference: reference, dropoutSeed: seed)
            step.loss += result.loss / k
            for (name, value) in result.metrics { step.metrics![name, default: 0] += value / k }
            step.tokens += batch.batch.tokenCount
            step.targetTokens += batch.completionCounts.reduce(0, +)
        }
        return step
    }

    /// Loss and metrics over `pairs` in batches of `batchSize` (means over pairs), gradients untouched.
    public static func evaluate(model: LlamaModel, pairs: [PreferencePair], loss: DPOLoss, batchSize: Int,
                                maxLength: Int?, truncation: TruncationMode = .keepStart) throws -> PreferenceEvaluation {
        guard !pairs.isEmpty else { throw TrainingError.invalid("the evaluation data has no preference pairs") }
        var sum = 0.0, metrics: [String: Double] = [:]
        for start in stride(from: 0, to: pairs.count, by: batchSize) {
            let chunk = Array(pairs[start..<Swift.min(start + batchSize, pairs.count)])
            let r = try DPOStep.evaluate(model: model, batch: PreferenceBatch(pairs: chunk, maxLength: maxLength, truncation: truncation),
                                         loss: loss)
            let w = Double(chunk.count) / Double(pairs.count)
            sum += r.loss * w
            for (name, value) in r.metrics { metrics[name, default: 0] += value * w }
        }
        return PreferenceEvaluation(loss: sum, pairs: pairs.count, metrics: metrics)
    }
}

/// A preference objective's (DPO, ORPO) loss and metrics (TRL's names, without the `eval_` prefix)
/// over an evaluation set.
public struct PreferenceEvaluation: Sendable, Equatable {
    public var loss: Double
    public var pairs: Int
    public var metrics: [String: Double]
}

public typealias DPOEvaluation = PreferenceEvaluation
