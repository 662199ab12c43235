import Foundation

/// TRL's ORPOTrainer (`trl.experimental.orpo`), in Swift: a preference data file (`{"prompt",
/// "chosen", "rejected"}` rows, text or conversational) tokenized as TRL's ORPO tokenizes it (see
/// ORPOTokenization.swift), then `Trainer` with an `ORPOObjective`. No reference model.
///
///     let trainer = try ORPOTrainer(model: model, tokenizer: tokenizer, dataset: "pairs.jsonl",
///                                   arguments: arguments, beta: 0.1)
///     try trainer.train()
public final class ORPOTrainer {
    public let trainer: Trainer
    public let objective: ORPOObjective
    public let evalPairs: [PreferencePair]
    /// Pairs dropped because the prompt alone fills max_length (TRL keeps them, with a NaN loss).
    public let droppedLongPrompts: Int

    /// `arguments.maxSeqLength` is TRL's `max_length` (prompt+completion; the completion is truncated);
    /// `batchSize` counts pairs per micro-batch; `collective`: train data-parallel with its group.
    public convenience init(model: LlamaModel, tokenizer: Tokenizer, dataset path: String, evalDataset: String? = nil,
                            arguments: TrainingArguments, beta: Double = 0.1, template: ChatTemplate? = nil,
                            collective: (any Collective)? = nil) throws {
        var arguments = arguments
        if let limit = model.maxSeqLength { arguments.maxSeqLength = min(arguments.maxSeqLength, limit) }
        let data = try PreferenceTrainingData.load(train: path, eval: evalDataset, tokenizer: tokenizer, template: template,
                                                   maxLength: arguments.maxSeqLength, tokenization: .orpo)
        try self.init(model: model, data: data, arguments: arguments, beta: beta, collective: collective)
    }

    /// Pairs already read (`PreferenceTrainingData.load` with `tokenization: .orpo` and `maxLength:
    /// arguments.maxSeqLength`), so a caller that counts them first reads the file once.
    public init(model: LlamaModel, data: PreferenceTrainingData, arguments: TrainingArguments, beta: Double = 0.1,
                collective: (any Collective)? = nil) throws {
        guard !arguments.packing else { throw TrainingError.invalid("ORPO does not pack: each pair's rows are whole sequences") }
        try model.requireNoRouterAuxLoss("ORPO")
        evalPairs = data.eval
        droppedLongPrompts = data.droppedLongPrompts
        objective = try ORPOObjective(pairs: data.train, loss: ORPOLoss(beta: beta))
        trainer = try Trainer(model: model, objective: objective, arguments: arguments, collective: collective)
    }

    /// Trains to `maxSteps`; returns the evaluation on the eval data set, if one was given.
    @discardableResult
    public func train(onStep: (Trainer.StepLog) throws -> Void = { _ in }) throws -> PreferenceEvaluation? {
        try trainer.train(onStep: onStep)
        guard !evalPairs.isEmpty else { return nil }
        return try ORPOObjective.evaluate(model: trainer.model, pairs: evalPairs, loss: objective.loss,
                                          batchSize: trainer.arguments.batchSize)
    }
}
