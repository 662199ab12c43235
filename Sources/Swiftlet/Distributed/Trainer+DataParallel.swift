import Foundation

/// Data-parallel training: every rank walks the same global data order (same seed, same cursor) and
/// takes the same `gradientAccumulation × worldSize` micro-batches for a step; rank r computes
/// micro-batches r·G ..< (r+1)·G of them (`DataParallelSplit`), with the dropout seeds of their global
/// index. The objective normalises by the whole step's totals (SFT: target tokens), the gradients are
/// summed over the ranks before the norm, clipping and the update, so a step is the single-process
/// step with N× the accumulation; every rank applies the same update and the adapters stay equal.
extension Trainer {
    /// Ranks training together (1 without a collective).
    public var worldSize: Int { collective?.worldSize ?? 1 }

    /// Whether this process writes checkpoints, metrics and adapters: rank 0, or the only process.
    public var writesOutputs: Bool { collective.map { $0.rank == 0 } ?? true }

    /// The arguments as one process would run this job: the accumulation counts every rank's
    /// micro-batches. Checkpoints store this, so a resume with another world size continues the same
    /// trajectory when the global batch (batch × accumulation × world size) is unchanged.
    var globalArguments: TrainingArguments {
        var global = arguments
        global.gradientAccumulation *= worldSize
        return global
    }

    /// This rank's share of the step's micro-batches, run by the objective, then the loss, counts,
    /// metrics and LoRA gradients summed over the ranks.
    func accumulate(microBatches: [[Int]], dropoutSeeds: [UInt64], lossScale: Float) throws -> ObjectiveStep {
        guard let collective else {
            return try objective.accumulate(model: model, microBatches: microBatches, dropoutSeeds: dropoutSeeds, lossScale: lossScale)
        }
        let mine = DataParallelSplit(rank: collective.rank, worldSize: collective.worldSize,
                                     microBatchesPerRank: arguments.gradientAccumulation).microBatches
        var result = try objective.accumulate(model: model, microBatches: Array(microBatches[mine]),
                                              dropoutSeeds: Array(dropoutSeeds[mine]), lossScale: lossScale, group: collective)
        // Every term is already divided by the global normaliser, so the step's values are plain sums.
        let metricNames = (result.metrics ?? [:]).keys.sorted()
        let local = [result.loss, Double(result.tokens), Double(result.targetTokens)] + metricNames.map { result.metrics![$0]! }
        let total = try collective.allReduceSum(local)
        result.loss = total[0]
        result.tokens = Int(total[1].rounded())
        result.targetTokens = Int(total[2].rounded())
        if result.metrics != nil {
            result.metrics = Dictionary(uniqueKeysWithValues: zip(metricNames, total[3...]))
        }
        // Timed between two syncs so the time is the sum itself (copies, transfer, and any wait for a
        // slower rank), not this rank's backward: docs/PERFORMANCE.md's all-reduce arithmetic, measured.
        // The optimizer reads the norm back right after, so the extra sync costs a launch or two.
        model.backend.synchronize()
        let start = Date()
        try collective.allReduceSum(model.adapters.flatMap { [$0.gradA, $0.gradB] })
        model.backend.synchronize()
        result.gradientSumSeconds = Date().timeIntervalSince(start)
        return result
    }

    /// `stopWhen`, agreed by all ranks: any rank asking to stop (Ctrl-C reaches each process) stops all
    /// before the same step, so none waits forever in a sum the others left.
    func shouldStop(_ stopWhen: () -> Bool) throws -> Bool {
        let local = stopWhen()
        guard let collective, collective.worldSize > 1 else { return local }
        return try collective.sum(local ? 1 : 0) > 0
    }

    /// Rank 0's LoRA weights to every rank before the first step (they are seeded alike, but an
    /// adapter loaded from disk or a resumed checkpoint must be one and the same everywhere).
    func broadcastAdaptersOnce() throws {
        guard !adaptersBroadcast, let collective else { return }
        try collective.broadcast(model.adapters.flatMap { [$0.a, $0.b] }, from: 0)
        adaptersBroadcast = true
    }
}
