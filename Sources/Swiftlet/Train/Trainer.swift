import Foundation

/// LoRA training: the data order (seeded shuffle per epoch), `gradientAccumulation` micro-batches per
/// step, clipping, the schedule, fp16 loss scaling, one optimizer update per step, and checkpoints.
/// What each step minimises is the objective's: supervised next-token loss (`SFTObjective`, normalised
/// over every target token of the accumulated batch, as the HF Trainer does) or DPO (`DPOObjective`).
public final class Trainer {
    public let model: LlamaModel
    public let arguments: TrainingArguments
    public let optimizer: LoRAOptimizer
    public let schedule: LRSchedule
    /// The loss and its training rows.
    public let objective: any TrainingObjective
    /// The data position: this epoch's row order, the next row in it, and the epoch number.
    var order: [Int] = []
    var cursor = 0
    var epoch = 0
    /// fp16 backends train with dynamic loss scaling; bf16 and f32 need none.
    public internal(set) var lossScaler: LossScaler?
    /// Every step's log so far (restored on resume), as HF's `log_history`.
    public internal(set) var logHistory: [StepLog] = []
    /// Where periodic checkpoints (`arguments.saveSteps`) go; nil saves none.
    public var checkpointDirectory: URL?
    /// The LoRA settings written to each checkpoint's adapter_config.json; nil derives them from
    /// the adapters (rank, dropout, modules; alpha from the scaling).
    public var loraConfig: LoRAConfig?
    /// `base_model_name_or_path` in each checkpoint's adapter_config.json.
    public var baseModel: String?
    /// Called with the folder of each checkpoint saved during `train`.
    public var onCheckpoint: (URL) -> Void = { _ in }
    /// Data-parallel training's process group (Distributed/): each optimizer step's micro-batches are
    /// split across its ranks and the gradients summed; nil trains in this process alone.
    public let collective: (any Collective)?
    /// Whether rank 0's adapters have been copied to every rank (once, before the first step).
    var adaptersBroadcast = false
    /// Whether `arguments.checkpointMemoryBudget` has been applied (after this run's first step).
    private var checkpointsPlanned = false

    /// The global step: optimizer updates applied so far.
    public var globalStep: Int { optimizer.steps }
    /// Calls to `step()` so far: the global step plus fp16 steps skipped on overflow. `train` runs
    /// until this reaches `maxSteps`, as before checkpoints existed.
    public internal(set) var stepsTaken = 0

    /// What one optimizer step did.
    public struct StepLog: Sendable, Codable, Equatable {
        public var step: Int
        public var maxSteps: Int
        /// Mean loss over the step's target tokens.
        public var loss: Double
        public var learningRate: Float
        public var gradNorm: Double
        public var tokens: Int
        public var targetTokens: Int
        public var seconds: Double
        public var epoch: Double
        /// The objective's own metrics (DPO: TRL's rewards/… and logps/…); nil for SFT.
        public var metrics: [String: Double]? = nil
        /// Data parallel: seconds of the step's gradient all-reduce (nil in one process).
        public var gradientSumSeconds: Double? = nil
    }

    /// Supervised training on `examples` (`SFTObjective`).
    public convenience init(model: LlamaModel, examples: [Example], arguments: TrainingArguments,
                            collective: (any Collective)? = nil) throws {
        try self.init(model: model, objective: SFTObjective(examples: examples, arguments: arguments), arguments: arguments,
                      collective: collective)
    }

    /// `collective`: train data-parallel with the other ranks of its group (`arguments.gradientAccumulation`
    /// micro-batches per rank and step, as HF's per-device accumulation).
    public init(model: LlamaModel, objective: any TrainingObjective, arguments: TrainingArguments,
                collective: (any Collective)? = nil) throws {
        guard !model.adapters.isEmpty else { throw TrainingError.noAdapters }
        guard objective.rowCount > 0 else { throw TrainingError.noData }
        guard arguments.batchSize > 0, arguments.gradientAccumulation > 0, arguments.maxSteps > 0 else {
            throw TrainingError.invalid("batch size, gradient accumulation and max steps must be positive")
        }
        self.model = model
        self.arguments = arguments
        self.objective = objective
        self.collective = collective
        optimizer = try LoRAOptimizer(adapters: model.adapters, arguments: arguments)
        schedule = LRSchedule(kind: arguments.scheduler, baseLR: arguments.learningRate,
                              warmupSteps: arguments.warmupSteps, totalSteps: arguments.maxSteps)
        lossScaler = model.backend.computeType == .f16 ? LossScaler() : nil
        newEpoch()
    }

    /// Runs optimizer steps until `maxSteps` (continuing from a resumed step), calling `onStep`
    /// after each and saving a checkpoint every `saveSteps` into `checkpointDirectory`. Before each
    /// step it asks `stopWhen`; returns false when that stopped it early, true when it reached maxSteps.
    @discardableResult
    public func train(stopWhen: () -> Bool = { false }, onStep: (StepLog) throws -> Void = { _ in }) throws -> Bool {
        try broadcastAdaptersOnce()
        while stepsTaken < arguments.maxSteps {
            if try shouldStop(stopWhen) { return false }
            let before = optimizer.steps
            try onStep(try step())
            // A skipped fp16 step (overflow) applies no update and saves nothing; only rank 0 writes.
            if arguments.saveSteps > 0, let checkpointDirectory, optimizer.steps != before, writesOutputs,
               optimizer.steps % arguments.saveSteps == 0 {
                onCheckpoint(try saveCheckpoint(to: checkpointDirectory))
            }
        }
        return true
    }

    /// One optimizer step over `gradientAccumulation` micro-batches (per rank: the step's global batch
    /// is `gradientAccumulation × worldSize` micro-batches, each rank computing its share).
    public func step() throws -> StepLog {
        let start = Date()
        stepsTaken += 1
        let microBatches = (0..<arguments.gradientAccumulation * worldSize).map { _ in nextRows() }
        optimizer.zeroGradients()
        let stepIndex = optimizer.steps
        let seeds = microBatches.indices.map { arguments.seed &+ UInt64(stepIndex) &* 7919 &+ UInt64($0) }
        let result = try accumulate(microBatches: microBatches, dropoutSeeds: seeds, lossScale: lossScaler?.scale ?? 1)
        let lr = schedule.lr(atStep: stepIndex)
        let norm = optimizer.step(lr: lr, scaler: &lossScaler)
        let log = StepLog(step: optimizer.steps, maxSteps: arguments.maxSteps,
                       loss: result.loss, learningRate: lr, gradNorm: norm,
                       tokens: result.tokens, targetTokens: result.targetTokens,
                       seconds: Date().timeIntervalSince(start),
                       epoch: Double(epoch) + Double(cursor) / Double(objective.rowCount), metrics: result.metrics,
                       gradientSumSeconds: result.gradientSumSeconds)
        logHistory.append(log)
        if !checkpointsPlanned, let budget = arguments.checkpointMemoryBudget {
            // the first step of this run was fully checkpointed: its peak is the planner's floor
            checkpointsPlanned = true
            CheckpointPlanner.plan(model, budgetBytes: budget, checkpointedPeakBytes: model.backend.memory.peak)
        }
        return log
    }

    /// The next `batchSize` row indices of the data order.
    private func nextRows() -> [Int] {
        var chosen: [Int] = []
        while chosen.count < arguments.batchSize {
            if cursor == order.count { epoch += 1; newEpoch() }
            chosen.append(order[cursor])
            cursor += 1
        }
        return chosen
    }

    private func newEpoch() {
        order = Array(0..<objective.rowCount)
        cursor = 0
        if arguments.shuffle {
            var generator = SplitMix64(seed: arguments.seed &+ UInt64(epoch) &* 0x9E37_79B9)
            order.shuffle(using: &generator)
        }
    }
}

/// Mean loss over every target token of a data set (token-weighted), and its perplexity.
public struct Evaluation: Sendable, Equatable {
    public var loss: Double
    public var tokens: Int
    public var perplexity: Double { Foundation.exp(loss) }

    public static func run(model: LlamaModel, examples: [Example], batchSize: Int = 8) throws -> Evaluation {
        var sum = 0.0, tokens = 0
        for start in stride(from: 0, to: examples.count, by: batchSize) {
            let batch = Batch(examples: Array(examples[start..<Swift.min(start + batchSize, examples.count)]))
            sum += try model.step(batch, gradScale: nil)
            tokens += batch.targetCount
        }
        guard tokens > 0 else { throw TrainingError.invalid("the evaluation data has no target tokens") }
        return Evaluation(loss: sum / Double(tokens), tokens: tokens)
    }
}

public enum TrainingError: Error, CustomStringConvertible {
    case noAdapters, noData
    case invalid(String)
    public var description: String {
        switch self {
        case .noAdapters: return "the model has no LoRA adapters to train"
        case .noData: return "the data set is empty"
        case let .invalid(why): return why
        }
    }
}
