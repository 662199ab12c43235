import ArgumentParser
import Foundation
import Swiftlet

/// `swiftlet orpo`: Odds Ratio Preference Optimization of LoRA adapters, as TRL's ORPOTrainer
/// (`trl.experimental.orpo`) with a PEFT model: no reference model. Flags that `dpo` also has mean the same.
struct ORPO: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "orpo",
        abstract: "Train LoRA adapters with ORPO on preference pairs ({\"prompt\", \"chosen\", \"rejected\"} rows, text or messages).")

    @Option(help: "Hugging Face model folder (config.json, safetensors, tokenizer.json).") var model: String
    @Option(help: "Preference data: JSONL, JSON or CSV rows of prompt/chosen/rejected (strings, or message lists; without prompt, the common prefix is the prompt).")
    var data: String
    @Option(help: "Evaluation preference data.") var evalData: String?
    @Option(help: "ORPO's beta (the paper's lambda): the weight of the odds-ratio term beside the chosen NLL.") var beta: Double = 0.1
    @Option(help: "Prompt+completion is cut to this many tokens by truncating the completion (TRL's max_length); pairs whose prompt alone fills it are dropped.")
    var maxLength = 1024
    @Option(help: "Folder with tokenizer.json (default: the model folder).") var tokenizer: String?
    @Option(help: "Chat template: a built-in name (\(ChatTemplate.builtInNames.joined(separator: ", "))) or a .jinja file; default: the tokenizer's own.")
    var chatTemplate: String?
    @OptionGroup var options: TrainingOptions
    @Option(help: "Peak learning rate (TRL's ORPOConfig default).") var lr: Double = 1e-6
    @Option(help: "Epochs over the pairs, when --max-steps is not given.") var numTrainEpochs: Double = 1
    @Option(help: "Preference pairs per micro-batch (each is two sequences).") var batchSize = 8
    @Option(help: "constant, constant_with_warmup, linear or cosine.") var scheduler: LRScheduler = .linear

    func validate() throws {
        if beta <= 0 { throw ValidationError("--beta must be positive") }
        if maxLength <= 0 || batchSize <= 0 { throw ValidationError("--max-length and --batch-size must be positive") }
    }

    func run() throws {
        let setup = try PreferenceSetup(modelDirectory: self.model, tokenizerDirectory: tokenizer, chatTemplate: chatTemplate,
                                        options: options, maxLength: maxLength, batchSize: batchSize, learningRate: lr,
                                        scheduler: scheduler)
        let (backend, model, tok, template, lora) = (setup.backend, setup.model, setup.tokenizer, setup.template, setup.lora)
        var arguments = setup.arguments   // max steps set from the pair count below
        func makeTrainer() throws -> ORPOTrainer {
            try ORPOTrainer(model: model, tokenizer: tok, dataset: data, evalDataset: evalData, arguments: arguments,
                            beta: beta, template: template)
        }
        var orpo = try makeTrainer()
        if options.maxSteps == nil {
            arguments.maxSteps = TrainingOptions.steps(epochs: numTrainEpochs, rows: orpo.objective.pairs.count,
                                                       batchSize: batchSize, gradAccum: options.gradAccum)
        }
        arguments.warmupSteps = options.warmup(totalSteps: arguments.maxSteps, fallback: 0)
        if arguments != orpo.trainer.arguments { orpo = try makeTrainer() }
        let trainer = orpo.trainer
        if orpo.droppedLongPrompts > 0 { print("dropped \(orpo.droppedLongPrompts) pairs whose prompt alone fills --max-length \(maxLength)") }
        print("model: \(model.config.modelType.rawValue), \(model.config.layers) layers; LoRA r=\(lora.r) on \(model.adapters.count) modules; "
            + "\(orpo.objective.pairs.count) preference pairs; ORPO, beta \(beta); backend \(backend.name)")

        let session = TrainingSession(options: options, trainer: trainer, model: model, lora: lora, baseModel: self.model,
                                      command: "swiftlet orpo") { metrics, step, epoch in
            guard !orpo.evalPairs.isEmpty else { return nil }
            let e = try ORPOObjective.evaluate(model: model, pairs: orpo.evalPairs, loss: orpo.objective.loss, batchSize: batchSize)
            try metrics.logEval(step: step, epoch: epoch, e)
            return String(format: "eval at step %d: loss %.4f  nll %.4f  reward accuracy %.3f  log-odds %.4f", step, e.loss,
                          e.metrics["nll_loss"] ?? 0, e.metrics["rewards/accuracies"] ?? 0, e.metrics["log_odds_chosen"] ?? 0)
        }
        let history = try session.run()
        let last = history.last
        print(String(format: "done: loss %.4f -> %.4f, reward accuracy %.3f; adapter, metrics.jsonl and loss.svg written to %@",
                     history.first?.loss ?? 0, last?.loss ?? 0, last?.metrics?["rewards/accuracies"] ?? 0, options.output))
    }
}
