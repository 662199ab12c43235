import Foundation
import Swiftlet

/// What `swiftlet dpo` and `swiftlet orpo` set up alike: the model with its adapters, the tokenizer,
/// the chat template, and the training arguments of the shared flags (max steps left at 1 when not
/// given: the caller sets them from the pair count once the data is read).
struct PreferenceSetup {
    let backend: any Backend
    let model: LlamaModel
    let tokenizer: Swiftlet.Tokenizer
    let template: ChatTemplate?
    let lora: LoRAConfig
    var arguments: TrainingArguments

    init(modelDirectory: String, tokenizerDirectory: String?, chatTemplate: String?, options: TrainingOptions,
         maxLength: Int, batchSize: Int, learningRate: Double, scheduler: LRScheduler) throws {
        backend = try options.device.makeBackend(precision: options.precision) { print($0) }
        model = try LlamaModel.load(directory: URL(fileURLWithPath: modelDirectory), on: backend, loadIn4bit: options.loadIn4bit)
        tokenizer = try Swiftlet.Tokenizer(directory: URL(fileURLWithPath: tokenizerDirectory ?? modelDirectory))
        template = try chatTemplate.map(ChatTemplate.fromArgument)
        lora = try options.attachAdapters(to: model, lora: try options.loraConfig())
        model.gradientCheckpointing = options.gradientCheckpointing
        arguments = TrainingArguments()
        arguments.maxSeqLength = maxLength
        arguments.batchSize = batchSize
        arguments.learningRate = learningRate
        arguments.scheduler = scheduler
        options.apply(to: &arguments)
        if options.maxSteps == nil { arguments.maxSteps = 1 }
    }
}
