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
    /// `batchSize` counts pairs per micro-batch.
    public init(model: LlamaModel, tokenizer: Tokenizer, dataset path: String, evalDataset: String? = nil,
                arguments: TrainingArguments, beta: Double = 0.1, template: ChatTemplate? = nil) throws {
        var arguments = arguments
        if let limit = model.maxSeqLength { arguments.maxSeqLength = min(arguments.maxSeqLength, limit) }
        guard !arguments.packing else { throw TrainingError.invalid("ORPO does not pack: each pair's rows are whole sequences") }
        let maxLength = arguments.maxSeqLength
        let train = try PreferenceDataset.load(url: URL(fileURLWithPath: path), tokenizer: tokenizer, template: template,
                                               maxLength: maxLength, tokenization: .orpo)
        evalPairs = try evalDataset.map {
            try PreferenceDataset.load(url: URL(fileURLWithPath: $0), tokenizer: tokenizer, template: template,
                                       maxLength: maxLength, tokenization: .orpo).pairs
        } ?? []
        droppedLongPrompts = train.droppedLongPrompts
        objective = try ORPOObjective(pairs: train.pairs, loss: ORPOLoss(beta: beta))
        trainer = try Trainer(model: model, objective: objective, arguments: arguments)
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
