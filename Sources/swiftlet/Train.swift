import ArgumentParser
import Foundation
import Swiftlet

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train LoRA adapters on a model; without --model and --data, runs the built-in demo.")

    @Option(help: "Hugging Face model folder (config.json, safetensors).") var model: String?
    @Option(help: "Data file or folder: JSONL, JSON or CSV rows of text, Alpaca, conversations or pre-tokenized input_ids.") var data: String?
    @OptionGroup var options: TrainingOptions
    @Option(help: "Peak learning rate.") var lr: Double?
    @Option(help: "Epochs over the data, when --max-steps is not given (HF's steps-per-epoch rule).") var numTrainEpochs: Double?
    @Option(help: "Examples per micro-batch.") var batchSize: Int?
    @Option(help: "Examples are truncated to this many tokens.") var maxSeqLength: Int?
    @Option(help: "constant, constant_with_warmup, linear or cosine.") var scheduler: LRScheduler?
    @OptionGroup var dataOptions: DataOptions
    @Flag(help: "Pack examples into rows of exactly --max-seq-length tokens (attention stays inside each).") var packing = false
    @Option(help: "Hold out this fraction of the data for evaluation (seeded).") var evalSplit: Double = 0
    @Option(help: "Evaluation data file (instead of --eval-split).") var evalData: String?
    @OptionGroup(title: "Multi-GPU (data parallel)") var distributed: DistributedOptions

    func validate() throws {
        if (model == nil) != (data == nil) {
            throw ValidationError("give both --model and --data, or neither for the built-in demo")
        }
    }

    func run() throws {
        if distributed.launchesWorkers { return try distributed.launchWorkers(device: options.device) }
        let launch = try DistributedOptions.launchEnvironment()
        // Only rank 0 talks; the other ranks' lines would repeat it.
        let say: (String) -> Void = { if (launch?.rank ?? 0) == 0 { print($0) } }
        let (backend, group) = try DistributedOptions.joinJob(launch, device: options.device, precision: options.precision, note: say)
        let demo = model == nil
        var arguments = demo ? DemoTask.arguments : TrainingArguments()
        if let maxSeqLength { arguments.maxSeqLength = maxSeqLength }
        var modelPath = self.model, dataPath = data, dataOptions = self.dataOptions
        var lora = try options.loraConfig()
        if demo {
            // The demo goes through the same path as a real model: files first, then load them.
            let folder = URL(fileURLWithPath: options.output).appendingPathComponent("demo-data")
            if group?.isRankZero ?? true { try DemoTask.write(to: folder) }
            try group?.barrier()  // the other ranks read what rank 0 wrote
            say("No --model and --data: the built-in demo. A \(DemoTask.config.layers)-layer Llama with a byte-level "
                + "tokenizer learns to count (\"Count by 3 from 14.\"), trained on the assistant's answers only. "
                + "Its files are in \(folder.path) (model/, chat.jsonl, alpaca.jsonl).")
            modelPath = folder.appendingPathComponent("model").path
            dataPath = folder.appendingPathComponent("chat.jsonl").path
            dataOptions.trainOnResponsesOnly = true
            lora = DemoTask.lora
        }
        guard let modelPath, let dataPath else { throw ValidationError("give both --model and --data") }
        let model = try LlamaModel.load(directory: URL(fileURLWithPath: modelPath), on: backend, loadIn4bit: options.loadIn4bit)
        if model.isQuantized4bit { say("Base weights: 4-bit NF4 (QLoRA).") }
        let examples: [Example]
        var evalExamples: [Example] = []
        let all = try dataOptions.examples(dataPath, modelDirectory: modelPath, vocabSize: model.config.vocabSize,
                                           maxSeqLength: arguments.maxSeqLength, packing: packing, say: say)
        if let evalData {
            examples = all
            evalExamples = try dataOptions.examples(evalData, modelDirectory: modelPath, vocabSize: model.config.vocabSize,
                                                    maxSeqLength: arguments.maxSeqLength, packing: false, say: say)
        } else {
            (examples, evalExamples) = DatasetSplit.split(all, evalFraction: evalSplit, seed: options.seed)
        }
        lora = try options.attachAdapters(to: model, lora: lora)

        options.apply(to: &arguments)
        if let lr { arguments.learningRate = lr }
        if let batchSize { arguments.batchSize = batchSize }
        arguments.packing = packing
        if options.maxSteps == nil, let numTrainEpochs {
            let rows = packing ? Packing.pack(examples, seqLength: arguments.maxSeqLength).count : examples.count
            // An epoch in global batches (N ranks: N× the accumulation), as one process would count it.
            arguments.maxSteps = TrainingOptions.steps(epochs: numTrainEpochs, rows: rows, batchSize: arguments.batchSize,
                                                       gradAccum: arguments.gradientAccumulation * (group?.worldSize ?? 1))
        }
        arguments.warmupSteps = options.warmup(totalSteps: arguments.maxSteps, fallback: arguments.warmupSteps)
        if let scheduler { arguments.scheduler = scheduler }

        model.gradientCheckpointing = options.gradientCheckpointing
        let trainable = model.adapters.reduce(0) { $0 + $1.a.count + $1.b.count }
        say("model: \(model.config.modelType.rawValue), \(model.config.layers) layers, hidden \(model.config.hiddenSize), "
            + "\(model.config.parameterCount) parameters; LoRA r=\(lora.r) on \(model.adapters.count) modules, "
            + "\(trainable) trainable; \(examples.count) examples; backend \(backend.name)")
        let trainer = try Trainer(model: model, examples: examples, arguments: arguments, collective: group)
        let session = TrainingSession(options: options, trainer: trainer, model: model, lora: lora, baseModel: modelPath,
                                      command: "swiftlet train") { metrics, step, epoch in
            guard !evalExamples.isEmpty else { return nil }
            let evaluation = try Evaluation.run(model: model, examples: evalExamples, batchSize: arguments.batchSize)
            try metrics.logEval(step: step, epoch: epoch, evaluation)
            return String(format: "eval at step %d: loss %.4f  perplexity %.3f  over %d tokens", step,
                          evaluation.loss, evaluation.perplexity, evaluation.tokens)
        }
        let history = try session.run()
        say(String(format: "done: loss %.4f -> %.4f; adapter, metrics.jsonl and loss.svg written to %@",
                     history.first?.loss ?? 0, history.last?.loss ?? 0, options.output))
    }
}
