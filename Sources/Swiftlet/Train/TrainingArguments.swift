/// The knobs of a training run, with Hugging Face TrainingArguments' meanings.
public struct TrainingArguments: Sendable, Equatable {
    public enum OptimizerKind: String, CaseIterable, Sendable {
        case adamw, sgd
        /// bitsandbytes' AdamW8bit (Train/AdamW8bit.swift).
        case adamw8bit = "adamw_8bit"

        /// A name as given on the command line or in a config: the raw value, or HF's
        /// `adamw_bnb_8bit` for `adamw8bit` (the same optimizer).
        public init?(name: String) {
            if name == "adamw_bnb_8bit" { self = .adamw8bit } else { self.init(rawValue: name) }
        }
    }

    public var batchSize = 8
    public var gradientAccumulation = 1
    /// Optimizer steps to run.
    public var maxSteps = 100
    public var learningRate: Double = 2e-4
    public var scheduler: LRScheduler = .linear
    public var warmupSteps = 0
    public var weightDecay: Float = 0
    /// Global gradient-norm clip; 0 disables it (as in HF).
    public var maxGradNorm: Float = 1
    public var optimizer: OptimizerKind = .adamw
    public var adamBeta1: Float = 0.9
    public var adamBeta2: Float = 0.999
    public var adamEpsilon: Float = 1e-8
    public var seed: UInt64 = 42
    /// Shuffle examples each epoch (seeded); otherwise batches are consecutive rows in file order.
    public var shuffle = true
    /// Longer examples are truncated to this many tokens.
    public var maxSeqLength = 2048
    /// Pack examples into rows of exactly `maxSeqLength` tokens (TRL's best-fit-decreasing), keeping
    /// each example's attention and positions to itself; `batchSize` then counts packed rows.
    public var packing = false
    /// Save a checkpoint (`output/checkpoint-N/`) every this many optimizer steps; 0 never.
    public var saveSteps = 0
    /// Keep at most this many checkpoints (the newest by step); 0 keeps all.
    public var saveTotalLimit = 0
    /// With gradient checkpointing: device bytes the step may use. After the first (fully
    /// checkpointed) step, the last layers keep their activations as far as this allows
    /// (`CheckpointPlanner`); nil checkpoints every layer.
    public var checkpointMemoryBudget: Int?

    public init() {}
}
