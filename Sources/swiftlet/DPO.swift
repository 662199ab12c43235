import ArgumentParser
import Foundation
import Swiftlet

/// `swiftlet dpo`: Direct Preference Optimization of LoRA adapters, as TRL's DPOTrainer with a PEFT
/// model (the reference is the model with its adapters off). Flags that `train` also has mean the same.
struct DPO: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dpo",
        abstract: "Train LoRA adapters with DPO on preference pairs ({\"prompt\", \"chosen\", \"rejected\"} rows, text or messages).")

    @OptionGroup var preference: PreferenceOptions
    @Option(help: "DPO's beta: how far the policy may move from the reference.") var beta: Double = 0.1
    @Option(help: "sigmoid, ipo or hinge.") var lossType: DPOLoss.Kind = .sigmoid
    @Option(help: "Label smoothing of the sigmoid loss (conservative DPO).") var labelSmoothing: Double = 0
    @Option(help: "keep_start or keep_end: which end of a too-long sequence stays.") var truncationMode: TruncationMode = .keepStart
    @Flag(help: "Score every pair with the reference once before training (TRL's precompute_ref_log_probs); the steps then skip the reference forward.")
    var precomputeRefLogps = false
    @OptionGroup var options: TrainingOptions
    @Option(help: "Peak learning rate (TRL's DPOConfig default).") var lr: Double = 5e-6
    @OptionGroup(title: "Multi-GPU (data parallel)") var distributed: DistributedOptions

    func validate() throws {
        if beta <= 0 { throw ValidationError("--beta must be positive") }
    }

    func run() throws {
        if distributed.launchesWorkers { return try distributed.launchWorkers(device: options.device) }
        let setup = try PreferenceSetup(preference, options: options, learningRate: lr, tokenization: .dpo, truncation: truncationMode)
        let (backend, model, lora, say) = (setup.backend, setup.model, setup.lora, setup.say)
        let dpo = try DPOTrainer(model: model, data: setup.data, arguments: setup.arguments, beta: beta, lossType: lossType,
                                 labelSmoothing: labelSmoothing, truncation: truncationMode, collective: setup.group)
        let trainer = dpo.trainer
        if precomputeRefLogps {
            try dpo.precomputeReferenceLogProbs()
            say("reference log-probs of \(dpo.objective.pairs.count) pairs computed once (adapters off)")
        }
        if dpo.droppedLongPrompts > 0 { say("dropped \(dpo.droppedLongPrompts) pairs whose prompt alone fills --max-length \(preference.maxLength)") }
        say("model: \(model.config.modelType.rawValue), \(model.config.layers) layers; LoRA r=\(lora.r) on \(model.adapters.count) modules; "
            + "\(dpo.objective.pairs.count) preference pairs; DPO \(lossType.rawValue), beta \(beta); backend \(backend.name)")

        let session = TrainingSession(options: options, trainer: trainer, model: model, lora: lora, baseModel: preference.model,
                                      command: "swiftlet dpo") { metrics, step, epoch in
            guard !dpo.evalPairs.isEmpty else { return nil }
            let e = try DPOObjective.evaluate(model: model, pairs: dpo.evalPairs, loss: dpo.objective.loss, batchSize: preference.batchSize,
                                              maxLength: dpo.objective.maxLength, truncation: dpo.objective.truncation)
            try metrics.logEval(step: step, epoch: epoch, e)
            return String(format: "eval at step %d: loss %.4f  reward accuracy %.3f  margin %.4f", step, e.loss,
                          e.metrics["rewards/accuracies"] ?? 0, e.metrics["rewards/margins"] ?? 0)
        }
        let history = try session.run()
        let last = history.last
        say(String(format: "done: loss %.4f -> %.4f, reward accuracy %.3f; adapter, metrics.jsonl and loss.svg written to %@",
                     history.first?.loss ?? 0, last?.loss ?? 0, last?.metrics?["rewards/accuracies"] ?? 0, options.output))
    }
}

extension DPOLoss.Kind: ExpressibleByArgument {}
extension TruncationMode: ExpressibleByArgument {}
