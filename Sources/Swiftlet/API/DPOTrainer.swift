import Foundation

/// TRL's DPOTrainer, in Swift: a preference data file (`{"prompt", "chosen", "rejected"}` rows, text
/// or conversational; see `PreferenceDataset`) tokenized with the model's tokenizer and chat template,
/// then `Trainer` with a `DPOObjective`. The reference model is the same model with its LoRA adapters
/// switched off, as TRL does for a PEFT model without a `ref_model`.
///
///     let trainer = try DPOTrainer(model: model, tokenizer: tokenizer, dataset: "pairs.jsonl",
///                                  arguments: arguments, beta: 0.1, lossType: .sigmoid)
///     try trainer.train()
public final class DPOTrainer {
    public let trainer: Trainer
    public let objective: DPOObjective
    public let evalPairs: [PreferencePair]
    /// Pairs dropped because the prompt alone fills max_length (TRL drops them too).
    public let droppedLongPrompts: Int

    /// `arguments.maxSeqLength` is TRL's `max_length` (prompt+completion, truncated by `truncation`);
    /// `batchSize` counts pairs per micro-batch; `collective`: train data-parallel with its group.
    public convenience init(model: LlamaModel, tokenizer: Tokenizer, dataset path: String, evalDataset: String? = nil,
                            arguments: TrainingArguments, beta: Double = 0.1, lossType: DPOLoss.Kind = .sigmoid,
                            labelSmoothing: Double = 0, truncation: TruncationMode = .keepStart, template: ChatTemplate? = nil,
                            collective: (any Collective)? = nil) throws {
        var arguments = arguments
        if let limit = model.maxSeqLength { arguments.maxSeqLength = min(arguments.maxSeqLength, limit) }
        let data = try PreferenceTrainingData.load(train: path, eval: evalDataset, tokenizer: tokenizer, template: template,
                                                   maxLength: arguments.maxSeqLength, truncation: truncation, tokenization: .dpo)
        try self.init(model: model, data: data, arguments: arguments, beta: beta, lossType: lossType,
                      labelSmoothing: labelSmoothing, truncation: truncation, collective: collective)
    }

    /// Pairs already read (`PreferenceTrainingData.load` with `tokenization: .dpo`, `maxLength:
    /// arguments.maxSeqLength` and the same `truncation`), so a caller that counts them first reads the file once.
    public init(model: LlamaModel, data: PreferenceTrainingData, arguments: TrainingArguments, beta: Double = 0.1,
                lossType: DPOLoss.Kind = .sigmoid, labelSmoothing: Double = 0, truncation: TruncationMode = .keepStart,
                collective: (any Collective)? = nil) throws {
        guard !arguments.packing else { throw TrainingError.invalid("DPO does not pack: each pair's rows are whole sequences") }
        try model.requireNoRouterAuxLoss("DPO")
        evalPairs = data.eval
        droppedLongPrompts = data.droppedLongPrompts
        objective = DPOObjective(pairs: data.train, loss: DPOLoss(kind: lossType, beta: beta, labelSmoothing: labelSmoothing),
                                 maxLength: arguments.maxSeqLength, truncation: truncation)
        trainer = try Trainer(model: model, objective: objective, arguments: arguments, collective: collective)
    }

    /// Scores every training pair with the reference once, before training (TRL's
    /// `precompute_ref_log_probs`): the steps then skip their reference forward. Data parallel, each
    /// rank scores its share of the batches and every rank ends with all the values.
    public func precomputeReferenceLogProbs() throws {
        try objective.precomputeReference(model: trainer.model, batchSize: trainer.arguments.batchSize, group: trainer.collective)
    }

    /// Trains to `maxSteps`; returns the evaluation on the eval data set, if one was given.
    @discardableResult
    public func train(onStep: (Trainer.StepLog) throws -> Void = { _ in }) throws -> PreferenceEvaluation? {
        try trainer.train(onStep: onStep)
        guard !evalPairs.isEmpty else { return nil }
        return try DPOObjective.evaluate(model: trainer.model, pairs: evalPairs, loss: objective.loss,
                                         batchSize: trainer.arguments.batchSize, maxLength: objective.maxLength,
                                         truncation: objective.truncation)
    }
}
