import ArgumentParser
import Foundation
import Swiftlet

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train LoRA adapters on a model; without --model and --data, runs the built-in demo.")

    @Option(help: "Hugging Face model folder (config.json, safetensors).") var model: String?
    @Option(help: "JSONL of pre-tokenized rows {\"input_ids\", \"labels\"?, \"attention_mask\"?}.") var data: String?
    @Option(help: "Where the PEFT adapter is written.") var output = "output"
    @Option(help: "Continue from this PEFT adapter instead of fresh LoRA weights.") var adapter: String?
    @Option(help: "adamw or sgd.") var optim: TrainingArguments.OptimizerKind = .adamw
    @Option(help: "Peak learning rate.") var lr: Double?
    @Option(help: "Optimizer steps.") var maxSteps: Int?
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
    @Option(help: "constant, constant_with_warmup, linear or cosine.") var scheduler: LRScheduler?
    @Option(help: "Clip the global gradient norm to this; 0 disables clipping.") var maxGradNorm: Float = 1
    @Option(help: "Seed for LoRA initialisation, shuffling and dropout.") var seed: UInt64 = 42
    @Flag(help: "Keep file order: batches are consecutive rows.") var noShuffle = false
    @Option(help: "cpu, cuda or auto.") var device: Device = .auto
    @Option(help: "GPU storage: auto (bf16 where supported, else fp16), bf16 or fp16.") var precision: Precision = .auto

    func validate() throws {
        if (model == nil) != (data == nil) {
            throw ValidationError("give both --model and --data, or neither for the built-in demo")
        }
    }

    func run() throws {
        let backend = try device.makeBackend(precision: precision) { print($0) }
        let demo = model == nil
        let model: LlamaModel
        let examples: [Example]
        var arguments = demo ? DemoTask.arguments : TrainingArguments()
        var lora: LoRAConfig
        if let path = self.model, let data {
            model = try LlamaModel.load(directory: URL(fileURLWithPath: path), on: backend)
            examples = try TokenizedDataset.load(URL(fileURLWithPath: data), vocabSize: model.config.vocabSize)
            lora = LoRAConfig(r: loraR, alpha: loraAlpha, dropout: loraDropout,
                              targets: try LoRAConfig.targets(parsing: targetModules), useRSLoRA: useRslora)
        } else {
            print("No --model and --data: training the built-in demo (a \(DemoTask.config.layers)-layer Llama "
                + "learning to count with strides 1-3).")
            model = try LlamaModel.random(config: DemoTask.config, seed: 1, std: DemoTask.weightScale, on: backend)
            examples = DemoTask.examples()
            lora = DemoTask.lora
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
        if let maxSeqLength { arguments.maxSeqLength = maxSeqLength }
        if let warmupSteps { arguments.warmupSteps = warmupSteps }
        if let scheduler { arguments.scheduler = scheduler }

        let trainable = model.adapters.reduce(0) { $0 + $1.a.count + $1.b.count }
        print("model: \(model.config.modelType.rawValue), \(model.config.layers) layers, hidden \(model.config.hiddenSize), "
            + "\(model.config.parameterCount) parameters; LoRA r=\(lora.r) on \(model.adapters.count) modules, "
            + "\(trainable) trainable; \(examples.count) examples; backend \(backend.name)")
        let trainer = try Trainer(model: model, examples: examples, arguments: arguments)
        var first: Double?, last = 0.0
        try trainer.train { log in
            first = first ?? log.loss
            last = log.loss
            print(String(format: "step %d/%d  loss %.4f  lr %.2e  grad_norm %.3f  tok/s %.0f",
                         log.step, log.maxSteps, log.loss, log.learningRate, log.gradNorm,
                         Double(log.tokens) / max(log.seconds, 1e-9)))
        }
        let outputURL = URL(fileURLWithPath: output)
        try PEFTAdapter.save(model, config: lora, to: outputURL, baseModel: self.model)
        print(String(format: "done: loss %.4f -> %.4f; adapter written to %@", first ?? 0, last, outputURL.path))
    }
}
