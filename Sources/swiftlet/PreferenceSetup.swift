import Foundation
import Swiftlet

/// What `swiftlet dpo` and `swiftlet orpo` set up alike: the model with its adapters, the tokenizer,
/// the chat template, the training arguments of the shared flags, and the trainer built from them.
struct PreferenceSetup {
    let backend: any Backend
    let model: LlamaModel
    let tokenizer: Swiftlet.Tokenizer
    let template: ChatTemplate?
    let lora: LoRAConfig
    var arguments: TrainingArguments

    init(_ preference: PreferenceOptions, options: TrainingOptions, learningRate: Double) throws {
        backend = try options.device.makeBackend(precision: options.precision) { print($0) }
        model = try LlamaModel.load(directory: URL(fileURLWithPath: preference.model), on: backend, loadIn4bit: options.loadIn4bit)
        tokenizer = try Swiftlet.Tokenizer(directory: URL(fileURLWithPath: preference.tokenizer ?? preference.model))
        template = try preference.chatTemplate.map(ChatTemplate.fromArgument)
        lora = try options.attachAdapters(to: model, lora: try options.loraConfig())
        model.gradientCheckpointing = options.gradientCheckpointing
        arguments = TrainingArguments()
        arguments.maxSeqLength = preference.maxLength
        arguments.batchSize = preference.batchSize
        arguments.learningRate = learningRate
        arguments.scheduler = preference.scheduler
        options.apply(to: &arguments)
    }

    /// The trainer `make` builds from the arguments. Without --max-steps it is built twice: once to
    /// read the pairs, then with the steps of --num-train-epochs over them and their warm-up.
    func trainer<T>(options: TrainingOptions, epochs: Double, pairCount: (T) -> Int, builtWith: (T) -> TrainingArguments,
                    make: (TrainingArguments) throws -> T) throws -> T {
        var arguments = self.arguments
        if options.maxSteps == nil { arguments.maxSteps = 1 }
        let first = try make(arguments)
        if options.maxSteps == nil {
            arguments.maxSteps = TrainingOptions.steps(epochs: epochs, rows: pairCount(first), batchSize: arguments.batchSize,
                                                       gradAccum: options.gradAccum)
        }
        arguments.warmupSteps = options.warmup(totalSteps: arguments.maxSteps, fallback: 0)
        return arguments == builtWith(first) ? first : try make(arguments)
    }
}
