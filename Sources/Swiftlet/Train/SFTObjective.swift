/// Supervised fine-tuning: next-token cross-entropy, normalised over every target token of the
/// accumulated batch (as the HF Trainer does).
public final class SFTObjective: TrainingObjective {
    /// Each training row: one example, or several packed into `maxSeqLength` tokens.
    let rows: [[Example]]
    let packing: Bool
    let maxSeqLength: Int

    public init(examples: [Example], arguments: TrainingArguments) {
        let truncated = examples.map { $0.truncated(to: arguments.maxSeqLength) }
        rows = arguments.packing ? Packing.pack(truncated, seqLength: arguments.maxSeqLength) : truncated.map { [$0] }
        packing = arguments.packing
        maxSeqLength = arguments.maxSeqLength
    }

    public var rowCount: Int { rows.count }
    public var resumeKey: String? { nil }

    public var dataFingerprint: String {
        var f = FNV1a()
        for row in rows {
            f.mix(-1)
            for e in row {
                f.mix(-2); e.inputIds.forEach { f.mix(Int64($0)) }
                f.mix(-3); e.labels?.forEach { f.mix(Int64($0)) }
                f.mix(-4); e.attentionMask?.forEach { f.mix(Int64($0)) }
            }
        }
        return f.string
    }

    public func accumulate(model: LlamaModel, microBatches: [[Int]], dropoutSeeds: [UInt64], lossScale: Float) throws -> ObjectiveStep {
        try accumulate(model: model, microBatches: microBatches, dropoutSeeds: dropoutSeeds, lossScale: lossScale) { $0 }
    }

    /// Data parallel: the loss is normalised by the target tokens of every rank's micro-batches.
    public func accumulate(model: LlamaModel, microBatches: [[Int]], dropoutSeeds: [UInt64], lossScale: Float,
                           group: any Collective) throws -> ObjectiveStep {
        try accumulate(model: model, microBatches: microBatches, dropoutSeeds: dropoutSeeds, lossScale: lossScale) {
            Int(try group.sum(Double($0)).rounded())
        }
    }

    /// `totalTargets` turns the target tokens of `microBatches` into the step's (the same, or summed over ranks).
    private func accumulate(model: LlamaModel, microBatches: [[Int]], dropoutSeeds: [UInt64], lossScale: Float,
                            totalTargets: (Int) throws -> Int) throws -> ObjectiveStep {
        let batches = microBatches.map { batch($0.map { rows[$0] }) }
        let local = batches.reduce(0) { $0 + $1.targetCount }
        let targets = try totalTargets(local)
        var lossSum = 0.0, auxSum = 0.0
        for (batch, seed) in zip(batches, dropoutSeeds) {
            lossSum += try model.step(batch, gradScale: lossScale / Float(Swift.max(targets, 1)), dropoutSeed: seed,
                                      routerAuxScale: lossScale)
            // A mixture's load-balancing term, added per micro-batch as the HF Trainer adds it.
            if let moe = model.config.moe, moe.auxLossEnabled, let aux = model.lastRouterAuxLoss {
                auxSum += Double(moe.auxLossCoefficient) * aux
            }
        }
        return ObjectiveStep(loss: lossSum / Double(Swift.max(targets, 1)) + auxSum, tokens: batches.reduce(0) { $0 + $1.tokenCount },
                             targetTokens: local, metrics: nil)   // this rank's term; the trainer sums the ranks
    }

    /// Right-padded examples, or packed rows of exactly maxSeqLength.
    private func batch(_ chosen: [[Example]]) -> Batch {
        guard packing else { return Batch(examples: chosen.map { $0[0] }) }
        return Batch(stacking: chosen.map { Batch(packing: $0, columns: maxSeqLength) }, columns: maxSeqLength)
    }
}
