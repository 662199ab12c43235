import Foundation

/// TRL's SFTTrainer, in Swift: a data file (text, Alpaca, conversations or pre-tokenized; see
/// `TextDataset`) tokenized with the model's tokenizer and chat template, then `Trainer`.
public final class SFTTrainer {
    public let trainer: Trainer
    public let evalExamples: [Example]

    public init(model: LlamaModel, tokenizer: Tokenizer, dataset path: String, evalDataset: String? = nil,
                arguments: TrainingArguments, options: DatasetOptions = DatasetOptions(),
                format: DatasetFormat? = nil, template: ChatTemplate? = nil) throws {
        var arguments = arguments
        if let limit = model.maxSeqLength { arguments.maxSeqLength = min(arguments.maxSeqLength, limit) }
        var options = options
        options.maxSeqLength = options.maxSeqLength ?? arguments.maxSeqLength
        options.packing = arguments.packing
        let train = try TextDataset.load(url: URL(fileURLWithPath: path), format: format, tokenizer: tokenizer,
                                         template: template, options: options)
        evalExamples = try evalDataset.map {
            try TextDataset.load(url: URL(fileURLWithPath: $0), format: format ?? train.format, tokenizer: tokenizer,
                                 template: template, options: options).examples
        } ?? []
        trainer = try Trainer(model: model, examples: train.examples, arguments: arguments)
    }

    /// Trains to `maxSteps`; returns the evaluation on the eval data set, if one was given.
    @discardableResult
    public func train(onStep: (Trainer.StepLog) throws -> Void = { _ in }) throws -> Evaluation? {
        try trainer.train(onStep: onStep)
        guard !evalExamples.isEmpty else { return nil }
        return try Evaluation.run(model: trainer.model, examples: evalExamples, batchSize: trainer.arguments.batchSize)
    }
}
