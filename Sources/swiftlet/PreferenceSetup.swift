import Foundation
import Swiftlet

/// What `swiftlet dpo` and `swiftlet orpo` set up alike: the data-parallel job (if launched into
/// one), the model with its adapters, the tokenizer, the chat template, the pairs (read once), and
/// the training arguments of the shared flags with the steps of --num-train-epochs over the pairs.
struct PreferenceSetup {
    /// The process group of a data-parallel launch; nil trains alone.
    let group: (any Collective)?
    /// Prints on rank 0 only (the other ranks' lines would repeat it).
    let say: (String) -> Void
    let backend: any Backend
    let model: LlamaModel
    let tokenizer: Swiftlet.Tokenizer
    let template: ChatTemplate?
    let lora: LoRAConfig
    let data: PreferenceTrainingData
    let arguments: TrainingArguments

    init(_ preference: PreferenceOptions, options: TrainingOptions, learningRate: Double,
         tokenization: PreferenceDataset.Tokenization, truncation: TruncationMode = .keepStart) throws {
        let launch = try DistributedOptions.launchEnvironment()
        let say: (String) -> Void = { if (launch?.rank ?? 0) == 0 { print($0) } }
        self.say = say
        (backend, group) = try DistributedOptions.joinJob(launch, device: options.device, precision: options.precision, note: say)
        model = try LlamaModel.load(directory: URL(fileURLWithPath: preference.model), on: backend, loadIn4bit: options.loadIn4bit)
        tokenizer = try Swiftlet.Tokenizer(directory: URL(fileURLWithPath: preference.tokenizer ?? preference.model))
        template = try preference.chatTemplate.map(ChatTemplate.fromArgument)
        lora = try options.attachAdapters(to: model, lora: try options.loraConfig())
        model.gradientCheckpointing = options.gradientCheckpointing
        data = try PreferenceTrainingData.load(train: preference.data, eval: preference.evalData, tokenizer: tokenizer,
                                               template: template, maxLength: preference.maxLength, truncation: truncation,
                                               tokenization: tokenization)
        var arguments = TrainingArguments()
        arguments.maxSeqLength = preference.maxLength
        arguments.batchSize = preference.batchSize
        arguments.learningRate = learningRate
        arguments.scheduler = preference.scheduler
        options.apply(to: &arguments)
        if options.maxSteps == nil {
            // An epoch in global batches (N ranks: N× the accumulation), as one process would count it.
            arguments.maxSteps = TrainingOptions.steps(epochs: preference.numTrainEpochs, rows: data.train.count,
                                                       batchSize: arguments.batchSize,
                                                       gradAccum: arguments.gradientAccumulation * (group?.worldSize ?? 1))
        }
        arguments.warmupSteps = options.warmup(totalSteps: arguments.maxSteps, fallback: 0)
        self.arguments = arguments
    }
}
