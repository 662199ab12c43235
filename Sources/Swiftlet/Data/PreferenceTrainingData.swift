import Foundation

/// A preference training set and its optional evaluation set, read and tokenized once: the caller
/// counts the pairs (the steps of an epoch) and hands the same pairs to `DPOTrainer` or `ORPOTrainer`.
public struct PreferenceTrainingData: Sendable {
    public var train: [PreferencePair]
    public var eval: [PreferencePair]
    /// Training pairs dropped because the prompt alone fills `maxLength`.
    public var droppedLongPrompts: Int

    public init(train: [PreferencePair], eval: [PreferencePair] = [], droppedLongPrompts: Int = 0) {
        self.train = train; self.eval = eval; self.droppedLongPrompts = droppedLongPrompts
    }

    /// Both files tokenized alike (`PreferenceDataset.load`): `maxLength` is TRL's max_length, the
    /// trainer's `arguments.maxSeqLength`.
    public static func load(train: String, eval: String? = nil, tokenizer: Tokenizer, template: ChatTemplate? = nil,
                            maxLength: Int, truncation: TruncationMode = .keepStart,
                            tokenization: PreferenceDataset.Tokenization) throws -> PreferenceTrainingData {
        func read(_ path: String) throws -> PreferenceDataset.Result {
            try PreferenceDataset.load(url: URL(fileURLWithPath: path), tokenizer: tokenizer, template: template,
                                       maxLength: maxLength, truncation: truncation, tokenization: tokenization)
        }
        let training = try read(train)
        return PreferenceTrainingData(train: training.pairs, eval: try eval.map { try read($0).pairs } ?? [],
                                      droppedLongPrompts: training.droppedLongPrompts)
    }
}
