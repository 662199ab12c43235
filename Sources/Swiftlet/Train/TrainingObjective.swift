/// What `Trainer` optimizes, apart from the loop it shares (data order, accumulation, clipping, the
/// schedule, fp16 loss scaling, checkpoints): the training rows and the loss and LoRA gradients of one
/// optimizer step's micro-batches. `SFTObjective` is next-token cross-entropy, `DPOObjective` TRL's
/// DPO losses.
public protocol TrainingObjective: AnyObject {
    /// Rows the data order runs over (examples, packed rows, or preference pairs).
    var rowCount: Int { get }
    /// FNV-1a over every row, so a resume on other data is an error.
    var dataFingerprint: String { get }
    /// What must match on resume besides `TrainingArguments` (nil: nothing); stored in trainer_state.json.
    var resumeKey: String? { get }
    /// Accumulates `lossScale`·dLoss/dθ of the step over `microBatches` (row indices, one list per
    /// micro-batch, each seeded with its dropout seed) into the zeroed LoRA gradients.
    func accumulate(model: LlamaModel, microBatches: [[Int]], dropoutSeeds: [UInt64], lossScale: Float) throws -> ObjectiveStep
    /// As above for data-parallel training: `microBatches` are this rank's share of the step, and the
    /// loss is normalised over the whole step, whose totals (SFT: target tokens) `group` sums over the
    /// ranks; the result's values are this rank's terms of the step's sums (the trainer adds them up).
    func accumulate(model: LlamaModel, microBatches: [[Int]], dropoutSeeds: [UInt64], lossScale: Float,
                    group: any Collective) throws -> ObjectiveStep
}

extension TrainingObjective {
    /// Objectives that do not say how their loss is normalised across ranks cannot train data-parallel.
    public func accumulate(model: LlamaModel, microBatches: [[Int]], dropoutSeeds: [UInt64], lossScale: Float,
                           group: any Collective) throws -> ObjectiveStep {
        guard group.worldSize == 1 else {
            throw TrainingError.invalid("\(Self.self) does not support data-parallel training (world size \(group.worldSize)) yet")
        }
        return try accumulate(model: model, microBatches: microBatches, dropoutSeeds: dropoutSeeds, lossScale: lossScale)
    }
}

/// An objective whose loss is a mean over the step's micro-batches (DPO, ORPO): one process divides by
/// its micro-batch count, data parallel by every rank's, so N ranks equal one process with N× the
/// accumulation.
public protocol MicroBatchMeanObjective: TrainingObjective {
    /// The step's terms with each micro-batch's loss divided by `totalMicroBatches`.
    func accumulate(model: LlamaModel, microBatches: [[Int]], dropoutSeeds: [UInt64], lossScale: Float,
                    totalMicroBatches: Double) throws -> ObjectiveStep
}

extension MicroBatchMeanObjective {
    public func accumulate(model: LlamaModel, microBatches: [[Int]], dropoutSeeds: [UInt64], lossScale: Float) throws -> ObjectiveStep {
        try accumulate(model: model, microBatches: microBatches, dropoutSeeds: dropoutSeeds, lossScale: lossScale,
                       totalMicroBatches: Double(microBatches.count))
    }

    public func accumulate(model: LlamaModel, microBatches: [[Int]], dropoutSeeds: [UInt64], lossScale: Float,
                           group: any Collective) throws -> ObjectiveStep {
        try accumulate(model: model, microBatches: microBatches, dropoutSeeds: dropoutSeeds, lossScale: lossScale,
                       totalMicroBatches: try group.sum(Double(microBatches.count)))
    }
}

extension LlamaModel {
    /// Preference objectives (DPO, ORPO) do not add a mixture's load-balancing loss yet, which TRL adds
    /// when the config sets `output_router_logits`: a clear error instead of a silently different loss.
    func requireNoRouterAuxLoss(_ objective: String) throws {
        guard let moe = config.moe, moe.auxLossEnabled else { return }
        throw TrainingError.invalid("\(objective) does not add the router's load-balancing loss yet, and config.json sets "
                                    + "output_router_logits true (TRL would add router_aux_loss_coef · aux); "
                                    + "set it false in config.json to train without it")
    }
}

/// One step's result, as the objective reports it.
public struct ObjectiveStep {
    public var loss: Double
    public var tokens: Int
    public var targetTokens: Int
    /// Objective-specific metrics under TRL's names (DPO's rewards/…), nil when there are none.
    public var metrics: [String: Double]?
    /// Data parallel: how long the LoRA gradients' sum over the ranks took (set by the trainer).
    public var gradientSumSeconds: Double? = nil
}

/// FNV-1a, the data fingerprint of checkpoints.
struct FNV1a {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func mix(_ x: Int64) {
        var v = UInt64(bitPattern: x)
        for _ in 0..<8 { h = (h ^ (v & 0xff)) &* 0x100_0000_01b3; v >>= 8 }
    }
    var string: String { String(h, radix: 16) }
}
