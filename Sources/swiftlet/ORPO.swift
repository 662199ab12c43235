import ArgumentParser
import Foundation
import Swiftlet

/// `swiftlet orpo`: Odds Ratio Preference Optimization of LoRA adapters, as TRL's ORPOTrainer
/// (`trl.experimental.orpo`) with a PEFT model: no reference model. Flags that `dpo` also has mean the same.
struct ORPO: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "orpo",
        abstract: "Train LoRA adapters with ORPO on preference pairs ({\"prompt\", \"chosen\", \"rejected\"} rows, text or messages).")

    @OptionGroup var preference: PreferenceOptions
    @Option(help: "ORPO's beta (the paper's lambda): the weight of the odds-ratio term beside the chosen NLL.") var beta: Double = 0.1
    @OptionGroup var options: TrainingOptions
    @Option(help: "Peak learning rate (TRL's ORPOConfig default).") var lr: Double = 1e-6
    @OptionGroup(title: "Multi-GPU (data parallel)") var distributed: DistributedOptions

    func validate() throws {
        if beta <= 0 { throw ValidationError("--beta must be positive") }
    }

    func run() throws {
        if distributed.launchesWorkers { return try distributed.launchWorkers(device: options.device) }
        let setup = try PreferenceSetup(preference, options: options, learningRate: lr, tokenization: .orpo)
        let (backend, model, lora, say) = (setup.backend, setup.model, setup.lora, setup.say)
        let orpo = try ORPOTrainer(model: model, data: setup.data, arguments: setup.arguments, beta: beta, collective: setup.group)
        let trainer = orpo.trainer
        if orpo.droppedLongPrompts > 0 { say("dropped \(orpo.droppedLongPrompts) pairs whose prompt alone fills --max-length \(preference.maxLength)") }
        say("model: \(model.config.modelType.rawValue), \(model.config.layers) layers; LoRA r=\(lora.r) on \(model.adapters.count) modules; "
            + "\(orpo.objective.pairs.count) preference pairs; ORPO, beta \(beta); backend \(backend.name)")

        let session = TrainingSession(options: options, trainer: trainer, model: model, lora: lora, baseModel: preference.model,
                                      command: "swiftlet orpo") { metrics, step, epoch in
            guard !orpo.evalPairs.isEmpty else { return nil }
            let e = try ORPOObjective.evaluate(model: model, pairs: orpo.evalPairs, loss: orpo.objective.loss, batchSize: preference.batchSize)
            try metrics.logEval(step: step, epoch: epoch, e)
            return String(format: "eval at step %d: loss %.4f  nll %.4f  reward accuracy %.3f  log-odds %.4f", step, e.loss,
                          e.metrics["nll_loss"] ?? 0, e.metrics["rewards/accuracies"] ?? 0, e.metrics["log_odds_chosen"] ?? 0)
        }
        let history = try session.run()
        let last = history.last
        say(String(format: "done: loss %.4f -> %.4f, reward accuracy %.3f; adapter, metrics.jsonl and loss.svg written to %@",
                     history.first?.loss ?? 0, last?.loss ?? 0, last?.metrics?["rewards/accuracies"] ?? 0, options.output))
    }
}
