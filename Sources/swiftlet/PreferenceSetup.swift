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
        if options.maxSteps == nil { arguments.maxSteps = 1 }
    }
}
