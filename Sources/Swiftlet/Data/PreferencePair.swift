/// One tokenized preference pair, as TRL's DPOTrainer tokenizes it: the prompt's ids and each
/// completion's ids after it (the completion starts where prompt and prompt+completion diverge).
public struct PreferencePair: Equatable, Sendable {
    public var promptIds: [Int32]
    public var chosenIds: [Int32]
    public var rejectedIds: [Int32]
    /// The rejected sequence's own prompt, where it differs from `promptIds` (nil: the same). TRL's ORPO
    /// cuts each side's prompt from its own prompt+completion ids, so a token merged across the
    /// boundary can leave the two prompts one token apart.
    public var rejectedPromptIds: [Int32]?

    public init(promptIds: [Int32], chosenIds: [Int32], rejectedIds: [Int32], rejectedPromptIds: [Int32]? = nil) {
        self.promptIds = promptIds; self.chosenIds = chosenIds; self.rejectedIds = rejectedIds
        self.rejectedPromptIds = rejectedPromptIds
    }
}

/// Which end of prompt+completion TRL keeps when it is longer than max_length.
public enum TruncationMode: String, Sendable {
    case keepStart = "keep_start"
    case keepEnd = "keep_end"
}

/// Pairs collated as TRL's DataCollatorForPreference does: every chosen sequence, then every
/// rejected one (so a pair's two completions share one forward), each prompt+completion truncated
/// to max_length, right-padded; only completion tokens are targets — and, with `chosenPromptIsTarget`
/// (ORPO, whose NLL term trains the whole chosen sequence), the chosen rows' prompt tokens too.
public struct PreferenceBatch: Equatable, Sendable {
    public var batch: Batch
    /// Completion tokens of each row after truncation (TRL's completion_mask summed; IPO divides by it).
    public var completionCounts: [Int]
    /// Prompt tokens of each row after truncation.
    public var promptCounts: [Int]
    public var pairCount: Int { batch.rows / 2 }

    public init(pairs: [PreferencePair], maxLength: Int? = nil, truncation: TruncationMode = .keepStart,
                chosenPromptIsTarget: Bool = false) {
        var examples: [Example] = [], counts: [Int] = [], promptCounts: [Int] = []
        for side in 0..<2 {
            for pair in pairs {
                let completion = side == 0 ? pair.chosenIds : pair.rejectedIds
                let prompt = side == 0 ? pair.promptIds : pair.rejectedPromptIds ?? pair.promptIds
                var ids = prompt + completion
                var isCompletion = [Bool](repeating: false, count: prompt.count)
                    + [Bool](repeating: true, count: completion.count)
                if let maxLength, ids.count > maxLength {
                    switch truncation {
                    case .keepStart: ids = Array(ids.prefix(maxLength)); isCompletion = Array(isCompletion.prefix(maxLength))
                    case .keepEnd: ids = Array(ids.suffix(maxLength)); isCompletion = Array(isCompletion.suffix(maxLength))
                    }
                }
                let isTarget = side == 0 && chosenPromptIsTarget
                let labels = zip(ids, isCompletion).map { $1 || isTarget ? $0 : Batch.ignoreIndex }
                examples.append(Example(inputIds: ids, labels: labels))
                counts.append(isCompletion.lazy.filter { $0 }.count)
                promptCounts.append(ids.count - counts.last!)
            }
        }
        batch = Batch(examples: examples)
        completionCounts = counts
        self.promptCounts = promptCounts
    }
}
