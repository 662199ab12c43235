import ArgumentParser
import Foundation
import Swiftlet

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train LoRA adapters on a model; without --model and --data, runs the built-in demo.")

    @Option(help: "Hugging Face model folder (config.json, safetensors).") var model: String?
    @Option(help: "Data file or folder: JSONL, JSON or CSV rows of text, Alpaca, conversations or pre-tokenized input_ids.") var data: String?
    @Option(help: "Where the PEFT adapter is written.") var output = "output"
    @Option(help: "Continue from this PEFT adapter instead of fresh LoRA weights.") var adapter: String?
    @Option(help: "adamw, adamw_8bit (bitsandbytes' AdamW8bit; adamw_bnb_8bit is accepted too) or sgd.") var optim: TrainingArguments.OptimizerKind = .adamw
    @Option(help: "Peak learning rate.") var lr: Double?
    @Option(help: "Optimizer steps.") var maxSteps: Int?
    @Option(help: "Epochs over the data, when --max-steps is not given (HF's steps-per-epoch rule).") var numTrainEpochs: Double?
    @Option(help: "Examples per micro-batch.") var batchSize: Int?
    @Option(help: "Micro-batches per optimizer step.") var gradAccum = 1
    @Option(help: "Examples are truncated to this many tokens.") var maxSeqLength: Int?
    @Option(help: "LoRA rank.") var loraR = 16
    @Option(help: "LoRA alpha (scaling = alpha / r).") var loraAlpha: Float = 16
    @Option(help: "Dropout on the LoRA input.") var loraDropout: Float = 0
    @Flag(help: "Scale by alpha/√r (rsLoRA).") var useRslora = false
    @Option(help: "Comma-separated modules, or 'all'.") var targetModules = "all"
    @Option(help: "Decoupled weight decay.") var weightDecay: Float = 0
    @Option(help: "Learning-rate warm-up steps.") var warmupSteps: Int?
    @Option(help: "Warm-up as a fraction of the steps (ceil, as HF), when --warmup-steps is not given.") var warmupRatio: Double?
    @Option(help: "constant, constant_with_warmup, linear or cosine.") var scheduler: LRScheduler?
    @Option(help: "Clip the global gradient norm to this; 0 disables clipping.") var maxGradNorm: Float = 1
    @Option(help: "Seed for LoRA initialisation, shuffling and dropout.") var seed: UInt64 = 42
    @Flag(help: "Keep file order: batches are consecutive rows.") var noShuffle = false
    @OptionGroup var dataOptions: DataOptions
    @Flag(help: "Pack examples into rows of exactly --max-seq-length tokens (attention stays inside each).") var packing = false
    @Option(help: "Hold out this fraction of the data for evaluation (seeded).") var evalSplit: Double = 0
    @Option(help: "Evaluation data file (instead of --eval-split).") var evalData: String?
    @Option(help: "Log metrics (and the plain progress lines) every N steps.") var loggingSteps = 1
    @Option(help: "Evaluate on the eval data every N steps (0: only at the end).") var evalSteps = 0
    @Option(help: "Gradient checkpointing: off, on (keep each layer's input, recompute the layer in the backward) or offload (as on, with the inputs in host memory).")
    var gradientCheckpointing: GradientCheckpointing = .off
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
        if (model == nil) != (data == nil) {
            throw ValidationError("give both --model and --data, or neither for the built-in demo")
        }
    }

    func run() throws {
        let backend = try device.makeBackend(precision: precision) { print($0) }
        let demo = model == nil
        var arguments = demo ? DemoTask.arguments : TrainingArguments()
        if let maxSeqLength { arguments.maxSeqLength = maxSeqLength }
        var modelPath = self.model, dataPath = data, dataOptions = self.dataOptions
        var lora = LoRAConfig(r: loraR, alpha: loraAlpha, dropout: loraDropout,
                              targets: try LoRAConfig.targets(parsing: targetModules), useRSLoRA: useRslora)
        if demo {
            // The demo goes through the same path as a real model: files first, then load them.
            let folder = URL(fileURLWithPath: output).appendingPathComponent("demo-data")
            try DemoTask.write(to: folder)
            print("No --model and --data: the built-in demo. A \(DemoTask.config.layers)-layer Llama with a byte-level "
                + "tokenizer learns to count (\"Count by 3 from 14.\"), trained on the assistant's answers only. "
                + "Its files are in \(folder.path) (model/, chat.jsonl, alpaca.jsonl).")
            modelPath = folder.appendingPathComponent("model").path
            dataPath = folder.appendingPathComponent("chat.jsonl").path
            dataOptions.trainOnResponsesOnly = true
            lora = DemoTask.lora
        }
        guard let modelPath, let dataPath else { throw ValidationError("give both --model and --data") }
        let model = try LlamaModel.load(directory: URL(fileURLWithPath: modelPath), on: backend, loadIn4bit: loadIn4bit)
        if model.isQuantized4bit { print("Base weights: 4-bit NF4 (QLoRA).") }
        let examples: [Example]
        var evalExamples: [Example] = []
        let all = try dataOptions.examples(dataPath, modelDirectory: modelPath, vocabSize: model.config.vocabSize,
                                           maxSeqLength: arguments.maxSeqLength, packing: packing)
        if let evalData {
            examples = all
            evalExamples = try dataOptions.examples(evalData, modelDirectory: modelPath, vocabSize: model.config.vocabSize,
                                                    maxSeqLength: arguments.maxSeqLength, packing: false)
        } else {
            (examples, evalExamples) = DatasetSplit.split(all, evalFraction: evalSplit, seed: seed)
        }
        if let adapter {
            lora = try PEFTAdapter.load(directory: URL(fileURLWithPath: adapter), into: model)
        } else {
            try model.addLoRA(lora, seed: seed)
        }

        arguments.optimizer = optim
        arguments.gradientAccumulation = gradAccum
        arguments.weightDecay = weightDecay
        arguments.maxGradNorm = maxGradNorm
        arguments.seed = seed
        arguments.shuffle = !noShuffle
        if let lr { arguments.learningRate = lr }
        if let maxSteps { arguments.maxSteps = maxSteps }
        if let batchSize { arguments.batchSize = batchSize }
        arguments.packing = packing
        if maxSteps == nil, let numTrainEpochs {
            // HF: ceil(rows / batch) batches per epoch, // grad-accum updates, at least one.
            let rows = packing ? Packing.pack(examples, seqLength: arguments.maxSeqLength).count : examples.count
            let perEpoch = max((rows + arguments.batchSize - 1) / arguments.batchSize / arguments.gradientAccumulation, 1)
            arguments.maxSteps = Int((numTrainEpochs * Double(perEpoch)).rounded(.up))
        }
        if let warmupSteps {
            arguments.warmupSteps = warmupSteps
        } else if let warmupRatio {
            arguments.warmupSteps = LRSchedule.warmupSteps(ratio: warmupRatio, totalSteps: arguments.maxSteps)
        }
        if let scheduler { arguments.scheduler = scheduler }
        arguments.saveSteps = saveSteps
        arguments.saveTotalLimit = saveTotalLimit

        model.gradientCheckpointing = gradientCheckpointing
        let trainable = model.adapters.reduce(0) { $0 + $1.a.count + $1.b.count }
        print("model: \(model.config.modelType.rawValue), \(model.config.layers) layers, hidden \(model.config.hiddenSize), "
            + "\(model.config.parameterCount) parameters; LoRA r=\(lora.r) on \(model.adapters.count) modules, "
            + "\(trainable) trainable; \(examples.count) examples; backend \(backend.name)")
        let trainer = try Trainer(model: model, examples: examples, arguments: arguments)
        let outputURL = URL(fileURLWithPath: output)
        trainer.checkpointDirectory = outputURL
        trainer.loraConfig = lora
        trainer.baseModel = modelPath
        trainer.onCheckpoint = { print("checkpoint saved: \($0.path)") }
        var checkpoint = resumeFrom.map { URL(fileURLWithPath: $0) }
        if resume {
            guard let latest = TrainingCheckpoint.latest(in: outputURL) else {
                throw CheckpointError.noCheckpoint(directory: outputURL.path)
            }
            checkpoint = latest
        }
        if let checkpoint {
            try trainer.resume(from: checkpoint)
            print("resumed from \(checkpoint.path) at step \(trainer.globalStep)/\(arguments.maxSteps)")
        }
        var first: Double? = trainer.logHistory.first?.loss, last = trainer.logHistory.last?.loss ?? 0
        let metricsURL = outputURL.appendingPathComponent("metrics.jsonl")
        if checkpoint == nil { try? FileManager.default.removeItem(at: metricsURL) }  // a fresh run starts a fresh log
        let metrics = try MetricsLog(url: metricsURL)
        let progress = ProgressDisplay(total: arguments.maxSteps, every: loggingSteps)
        trainer.onCheckpoint = { progress.message("checkpoint saved: \($0.path)") }
        let started = Date()
        func evaluate(step: Int, epoch: Double) throws {
            guard !evalExamples.isEmpty else { return }
            let evaluation = try Evaluation.run(model: model, examples: evalExamples, batchSize: arguments.batchSize)
            try metrics.logEval(step: step, epoch: epoch, evaluation)
            progress.message(String(format: "eval at step %d: loss %.4f  perplexity %.3f  over %d tokens", step,
                                    evaluation.loss, evaluation.perplexity, evaluation.tokens))
        }
        TrainingInterrupt.install()
        defer { TrainingInterrupt.uninstall() }
        var seenTokens = trainer.logHistory.reduce(0) { $0 + $1.tokens }
        var window: [Double] = []
        let finished = try trainer.train(stopWhen: { TrainingInterrupt.requested }) { log in
            first = first ?? log.loss
            last = log.loss
            seenTokens += log.tokens
            window.append(log.loss)
            let memory = backend is CUDABackend ? backend.memory.peak : nil
            progress.update(log, memoryBytes: memory)
            if log.step % loggingSteps == 0 || log.step == log.maxSteps {
                // As the HF Trainer logs: the mean loss over the steps since the last log.
                var logged = log
                logged.loss = window.reduce(0, +) / Double(window.count)
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
        try PEFTAdapter.save(model, config: lora, to: outputURL, baseModel: modelPath)
        try evaluate(step: trainer.globalStep, epoch: trainer.logHistory.last?.epoch ?? 0)
        let history = trainer.logHistory
        try metrics.logSummary(runtime: Date().timeIntervalSince(started), steps: history.count,
                               tokens: history.reduce(0) { $0 + $1.tokens }, step: trainer.globalStep)
        let curve = LossCurve.series(from: try MetricsLog.read(url: metricsURL))
        try LossCurve.write(to: outputURL.appendingPathComponent("loss.svg"), train: curve.train, eval: curve.eval,
                            title: "swiftlet train: \(URL(fileURLWithPath: modelPath).lastPathComponent)")
        print(String(format: "done: loss %.4f -> %.4f; adapter, metrics.jsonl and loss.svg written to %@", first ?? 0, last, outputURL.path))
    }
}
