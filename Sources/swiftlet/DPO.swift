import ArgumentParser
import Foundation
import Swiftlet

/// `swiftlet dpo`: Direct Preference Optimization of LoRA adapters, as TRL's DPOTrainer with a PEFT
/// model (the reference is the model with its adapters off). Flags that `train` also has mean the same.
struct DPO: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dpo",
        abstract: "Train LoRA adapters with DPO on preference pairs ({\"prompt\", \"chosen\", \"rejected\"} rows, text or messages).")

    @Option(help: "Hugging Face model folder (config.json, safetensors, tokenizer.json).") var model: String
    @Option(help: "Preference data: JSONL, JSON or CSV rows of prompt/chosen/rejected (strings, or message lists; without prompt, the common prefix is the prompt).")
    var data: String
    @Option(help: "Evaluation preference data.") var evalData: String?
    @Option(help: "DPO's beta: how far the policy may move from the reference.") var beta: Double = 0.1
    @Option(help: "sigmoid, ipo or hinge.") var lossType: DPOLoss.Kind = .sigmoid
    @Option(help: "Label smoothing of the sigmoid loss (conservative DPO).") var labelSmoothing: Double = 0
    @Option(help: "Prompt+completion is truncated to this many tokens (TRL's max_length); pairs whose prompt alone fills it are dropped.")
    var maxLength = 1024
    @Option(help: "keep_start or keep_end: which end of a too-long sequence stays.") var truncationMode: TruncationMode = .keepStart
    @Option(help: "Folder with tokenizer.json (default: the model folder).") var tokenizer: String?
    @Option(help: "Chat template: a built-in name (\(ChatTemplate.builtInNames.joined(separator: ", "))) or a .jinja file; default: the tokenizer's own.")
    var chatTemplate: String?
    @Option(help: "Where the PEFT adapter is written.") var output = "output"
    @Option(help: "Start from this PEFT adapter (e.g. an SFT run's) instead of fresh LoRA weights; the reference stays the base model.")
    var adapter: String?
    @Option(help: "adamw, adamw_8bit or sgd.") var optim: TrainingArguments.OptimizerKind = .adamw
    @Option(help: "Peak learning rate.") var lr: Double = 5e-6
    @Option(help: "Optimizer steps.") var maxSteps: Int?
    @Option(help: "Epochs over the pairs, when --max-steps is not given.") var numTrainEpochs: Double = 1
    @Option(help: "Preference pairs per micro-batch (each is two sequences).") var batchSize = 8
    @Option(help: "Micro-batches per optimizer step.") var gradAccum = 1
    @Option(help: "LoRA rank.") var loraR = 16
    @Option(help: "LoRA alpha (scaling = alpha / r).") var loraAlpha: Float = 16
    @Option(help: "Dropout on the LoRA input.") var loraDropout: Float = 0
    @Flag(help: "Scale by alpha/√r (rsLoRA).") var useRslora = false
    @Option(help: "Comma-separated modules, or 'all'.") var targetModules = "all"
    @Option(help: "Decoupled weight decay.") var weightDecay: Float = 0
    @Option(help: "Learning-rate warm-up steps.") var warmupSteps: Int?
    @Option(help: "Warm-up as a fraction of the steps, when --warmup-steps is not given.") var warmupRatio: Double?
    @Option(help: "constant, constant_with_warmup, linear or cosine.") var scheduler: LRScheduler = .linear
    @Option(help: "Clip the global gradient norm to this; 0 disables clipping.") var maxGradNorm: Float = 1
    @Option(help: "Seed for LoRA initialisation, shuffling and dropout.") var seed: UInt64 = 42
    @Flag(help: "Keep file order: batches are consecutive pairs.") var noShuffle = false
    @Option(help: "Log metrics every N steps.") var loggingSteps = 1
    @Option(help: "Evaluate on --eval-data every N steps (0: only at the end).") var evalSteps = 0
    @Option(help: "Gradient checkpointing: off, on or offload.") var gradientCheckpointing: GradientCheckpointing = .off
    @Flag(name: .customLong("load-in-4bit"), help: "QLoRA: quantize the base weights to 4-bit NF4 while loading.") var loadIn4bit = false
    @Option(help: "cpu, cuda or auto.") var device: Device = .auto
    @Option(help: "GPU storage: auto, bf16 or fp16.") var precision: Precision = .auto
    @Option(help: "Save a checkpoint (<output>/checkpoint-N) every this many steps; 0 never.") var saveSteps = 0
    @Option(help: "Keep only the newest this many checkpoints; 0 keeps all.") var saveTotalLimit = 0
    @Flag(help: "Resume from the latest checkpoint-N in --output.") var resume = false
    @Option(help: "Resume from this checkpoint folder.") var resumeFrom: String?

    func validate() throws {
        if resume && resumeFrom != nil { throw ValidationError("give --resume or --resume-from, not both") }
        if beta <= 0 { throw ValidationError("--beta must be positive") }
        if maxLength <= 0 || batchSize <= 0 || gradAccum <= 0 { throw ValidationError("--max-length, --batch-size and --grad-accum must be positive") }
    }

    func run() throws {
        let backend = try device.makeBackend(precision: precision) { print($0) }
        let model = try LlamaModel.load(directory: URL(fileURLWithPath: self.model), on: backend, loadIn4bit: loadIn4bit)
        let tok = try Swiftlet.Tokenizer(directory: URL(fileURLWithPath: tokenizer ?? self.model))
        let template: ChatTemplate? = try chatTemplate.map { name in
            if name.hasSuffix(".jinja") || FileManager.default.fileExists(atPath: name) {
                return try ChatTemplate(source: String(contentsOf: URL(fileURLWithPath: name), encoding: .utf8))
            }
            return try ChatTemplate.named(name)
        }
        var lora = LoRAConfig(r: loraR, alpha: loraAlpha, dropout: loraDropout,
                              targets: try LoRAConfig.targets(parsing: targetModules), useRSLoRA: useRslora)
        if let adapter {
            lora = try PEFTAdapter.load(directory: URL(fileURLWithPath: adapter), into: model)
        } else {
            try model.addLoRA(lora, seed: seed)
        }
        model.gradientCheckpointing = gradientCheckpointing

        var arguments = TrainingArguments()
        arguments.maxSeqLength = maxLength
        arguments.optimizer = optim
        arguments.batchSize = batchSize
        arguments.gradientAccumulation = gradAccum
        arguments.learningRate = lr
        arguments.weightDecay = weightDecay
        arguments.maxGradNorm = maxGradNorm
        arguments.seed = seed
        arguments.shuffle = !noShuffle
        arguments.scheduler = scheduler
        arguments.saveSteps = saveSteps
        arguments.saveTotalLimit = saveTotalLimit
        arguments.maxSteps = maxSteps ?? 1  // set from the pair count below when not given
        var dpo = try DPOTrainer(model: model, tokenizer: tok, dataset: data, evalDataset: evalData, arguments: arguments,
                                 beta: beta, lossType: lossType, labelSmoothing: labelSmoothing, truncation: truncationMode,
                                 template: template)
        if maxSteps == nil {
            // HF: ceil(pairs / batch) batches per epoch, // grad-accum updates, at least one.
            let perEpoch = max((dpo.objective.pairs.count + batchSize - 1) / batchSize / gradAccum, 1)
            arguments.maxSteps = Int((numTrainEpochs * Double(perEpoch)).rounded(.up))
        }
        arguments.warmupSteps = warmupSteps ?? warmupRatio.map { LRSchedule.warmupSteps(ratio: $0, totalSteps: arguments.maxSteps) } ?? 0
        if arguments != dpo.trainer.arguments {
            dpo = try DPOTrainer(model: model, tokenizer: tok, dataset: data, evalDataset: evalData, arguments: arguments,
                                 beta: beta, lossType: lossType, labelSmoothing: labelSmoothing, truncation: truncationMode,
                                 template: template)
        }
        let trainer = dpo.trainer
        if dpo.droppedLongPrompts > 0 { print("dropped \(dpo.droppedLongPrompts) pairs whose prompt alone fills --max-length \(maxLength)") }
        print("model: \(model.config.modelType.rawValue), \(model.config.layers) layers; LoRA r=\(lora.r) on \(model.adapters.count) modules; "
            + "\(dpo.objective.pairs.count) preference pairs; DPO \(lossType.rawValue), beta \(beta); backend \(backend.name)")

        let outputURL = URL(fileURLWithPath: output)
        trainer.checkpointDirectory = outputURL
        trainer.loraConfig = lora
        trainer.baseModel = self.model
        var checkpoint = resumeFrom.map { URL(fileURLWithPath: $0) }
        if resume {
            guard let latest = TrainingCheckpoint.latest(in: outputURL) else { throw CheckpointError.noCheckpoint(directory: outputURL.path) }
            checkpoint = latest
        }
        if let checkpoint {
            try trainer.resume(from: checkpoint)
            print("resumed from \(checkpoint.path) at step \(trainer.globalStep)/\(arguments.maxSteps)")
        }
        let metricsURL = outputURL.appendingPathComponent("metrics.jsonl")
        if checkpoint == nil { try? FileManager.default.removeItem(at: metricsURL) }
        let metrics = try MetricsLog(url: metricsURL)
        let progress = ProgressDisplay(total: arguments.maxSteps, every: loggingSteps)
        trainer.onCheckpoint = { progress.message("checkpoint saved: \($0.path)") }
        func evaluate(step: Int, epoch: Double) throws {
            guard !dpo.evalPairs.isEmpty else { return }
            let e = try DPOObjective.evaluate(model: model, pairs: dpo.evalPairs, loss: dpo.objective.loss, batchSize: batchSize,
                                              maxLength: dpo.objective.maxLength, truncation: dpo.objective.truncation)
            try metrics.logEval(step: step, epoch: epoch, e)
            progress.message(String(format: "eval at step %d: loss %.4f  reward accuracy %.3f  margin %.4f", step, e.loss,
                                    e.metrics["rewards/accuracies"] ?? 0, e.metrics["rewards/margins"] ?? 0))
        }
        let started = Date()
        TrainingInterrupt.install()
        defer { TrainingInterrupt.uninstall() }
        var seenTokens = trainer.logHistory.reduce(0) { $0 + $1.tokens }
        var window: [Trainer.StepLog] = []
        let finished = try trainer.train(stopWhen: { TrainingInterrupt.requested }) { log in
            seenTokens += log.tokens
            window.append(log)
            let memory = backend is CUDABackend ? backend.memory.peak : nil
            progress.update(log, memoryBytes: memory)
            if log.step % loggingSteps == 0 || log.step == log.maxSteps {
                // As the HF Trainer and TRL log: means over the steps since the last log.
                var logged = log
                logged.loss = window.map(\.loss).reduce(0, +) / Double(window.count)
                logged.metrics = log.metrics.map { last in
                    Dictionary(uniqueKeysWithValues: last.keys.map { k in (k, window.map { $0.metrics?[k] ?? 0 }.reduce(0, +) / Double(window.count)) })
                }
                window.removeAll()
                try metrics.log(logged, numTokens: seenTokens, memoryBytes: memory)
            }
            if evalSteps > 0, log.step % evalSteps == 0, log.step < log.maxSteps { try evaluate(step: log.step, epoch: log.epoch) }
        }
        progress.finish()
        if !finished {
            let saved = try trainer.saveCheckpoint(to: outputURL)
            print("interrupted: checkpoint saved to \(saved.path); continue with --resume")
            throw ExitCode(130)
        }
        try PEFTAdapter.save(model, config: lora, to: outputURL, baseModel: self.model)
        try evaluate(step: trainer.globalStep, epoch: trainer.logHistory.last?.epoch ?? 0)
        let history = trainer.logHistory
        try metrics.logSummary(runtime: Date().timeIntervalSince(started), steps: history.count,
                               tokens: history.reduce(0) { $0 + $1.tokens }, step: trainer.globalStep)
        let curve = LossCurve.series(from: try MetricsLog.read(url: metricsURL))
        try LossCurve.write(to: outputURL.appendingPathComponent("loss.svg"), train: curve.train, eval: curve.eval,
                            title: "swiftlet dpo: \(URL(fileURLWithPath: self.model).lastPathComponent)")
        let last = history.last
        print(String(format: "done: loss %.4f -> %.4f, reward accuracy %.3f; adapter, metrics.jsonl and loss.svg written to %@",
                     history.first?.loss ?? 0, last?.loss ?? 0, last?.metrics?["rewards/accuracies"] ?? 0, outputURL.path))
    }
}

extension DPOLoss.Kind: ExpressibleByArgument {}
extension TruncationMode: ExpressibleByArgument {}
