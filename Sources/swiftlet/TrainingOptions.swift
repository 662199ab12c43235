import ArgumentParser
import Foundation
import Swiftlet

/// The flags `train` and `dpo` share, with the same names and meanings (LoRA, optimizer, schedule,
/// logging, checkpoints, device). Flags whose defaults differ between the two (learning rate,
/// batch size, schedule, epochs) stay with each command.
struct TrainingOptions: ParsableArguments {
    @Option(help: "Where the PEFT adapter is written.") var output = "output"
    @Option(help: "Continue from this PEFT adapter instead of fresh LoRA weights.") var adapter: String?
    @Option(help: "adamw, adamw_8bit (bitsandbytes' AdamW8bit; adamw_bnb_8bit is accepted too) or sgd.")
    var optim: TrainingArguments.OptimizerKind = .adamw
    @Option(help: "Optimizer steps.") var maxSteps: Int?
    @Option(help: "Micro-batches per optimizer step.") var gradAccum = 1
    @Option(help: "LoRA rank.") var loraR = 16
    @Option(help: "LoRA alpha (scaling = alpha / r).") var loraAlpha: Float = 16
    @Option(help: "Dropout on the LoRA input.") var loraDropout: Float = 0
    @Flag(help: "Scale by alpha/√r (rsLoRA).") var useRslora = false
    @Option(help: "Comma-separated modules, or 'all'.") var targetModules = "all"
    @Option(help: "Decoupled weight decay.") var weightDecay: Float = 0
    @Option(help: "Learning-rate warm-up steps.") var warmupSteps: Int?
    @Option(help: "Warm-up as a fraction of the steps (ceil, as HF), when --warmup-steps is not given.") var warmupRatio: Double?
    @Option(help: "Clip the global gradient norm to this; 0 disables clipping.") var maxGradNorm: Float = 1
    @Option(help: "Seed for LoRA initialisation, shuffling and dropout.") var seed: UInt64 = 42
    @Flag(help: "Keep file order: batches are consecutive rows.") var noShuffle = false
    @Option(help: "Log metrics (and the plain progress lines) every N steps.") var loggingSteps = 1
    @Option(help: "Evaluate on the eval data every N steps (0: only at the end).") var evalSteps = 0
    @Option(help: "Gradient checkpointing: off, on (keep each layer's input, recompute the layer in the backward) or offload (as on, with the inputs in host memory).")
    var gradientCheckpointing: GradientCheckpointing = .off
    @Option(name: .customLong("checkpoint-budget-gib"), help: "With checkpointing: device memory the step may use (GiB); after the first step the last layers skip the recompute as far as it allows.")
    var checkpointBudgetGiB: Double?
    @Flag(name: .customLong("load-in-4bit"), help: "QLoRA: quantize q k v o gate up down to 4-bit NF4 (double quantization) while loading. A pre-quantized bitsandbytes checkpoint loads in 4-bit without it.")
    var loadIn4bit = false
    @Option(help: "cpu, cuda or auto.") var device: Device = .auto
    @Option(help: "GPU storage: auto (bf16 where supported, else fp16), bf16 or fp16.") var precision: Precision = .auto
    @Option(help: "Save a checkpoint (<output>/checkpoint-N) every this many steps; 0 never.") var saveSteps = 0
    @Option(help: "Keep only the newest this many checkpoints; 0 keeps all.") var saveTotalLimit = 0
    @Flag(help: "Resume from the latest checkpoint-N in --output.") var resume = false
    @Option(help: "Resume from this checkpoint folder.") var resumeFrom: String?

    func validate() throws {
        if resume && resumeFrom != nil { throw ValidationError("give --resume or --resume-from, not both") }
        if saveSteps < 0 || saveTotalLimit < 0 { throw ValidationError("--save-steps and --save-total-limit must be 0 or more") }
        if gradAccum <= 0 { throw ValidationError("--grad-accum must be positive") }
    }

    /// The LoRA settings of the flags.
    func loraConfig() throws -> LoRAConfig {
        LoRAConfig(r: loraR, alpha: loraAlpha, dropout: loraDropout,
                   targets: try LoRAConfig.targets(parsing: targetModules), useRSLoRA: useRslora)
    }

    /// Fresh adapters from `lora` (seeded), or the ones of --adapter; returns the config in use.
    func attachAdapters(to model: LlamaModel, lora: LoRAConfig) throws -> LoRAConfig {
        if let adapter { return try PEFTAdapter.load(directory: URL(fileURLWithPath: adapter), into: model) }
        try model.addLoRA(lora, seed: seed)
        return lora
    }

    /// The shared knobs written into `arguments` (the command sets the rest).
    func apply(to arguments: inout TrainingArguments) {
        arguments.optimizer = optim
        arguments.gradientAccumulation = gradAccum
        arguments.weightDecay = weightDecay
        arguments.maxGradNorm = maxGradNorm
        arguments.seed = seed
        arguments.shuffle = !noShuffle
        arguments.saveSteps = saveSteps
        arguments.saveTotalLimit = saveTotalLimit
        arguments.checkpointMemoryBudget = checkpointBudgetGiB.map { Int($0 * Double(1 << 30)) }
        if let maxSteps { arguments.maxSteps = maxSteps }
    }

    /// HF's steps for `epochs` over `rows` batch rows: ceil(rows / batch) batches per epoch,
    /// // grad-accum updates, at least one.
    static func steps(epochs: Double, rows: Int, batchSize: Int, gradAccum: Int) -> Int {
        let perEpoch = max((rows + batchSize - 1) / batchSize / gradAccum, 1)
        return Int((epochs * Double(perEpoch)).rounded(.up))
    }

    /// --warmup-steps, or --warmup-ratio of `totalSteps`, else `fallback`.
    func warmup(totalSteps: Int, fallback: Int) -> Int {
        warmupSteps ?? warmupRatio.map { LRSchedule.warmupSteps(ratio: $0, totalSteps: totalSteps) } ?? fallback
    }
}
