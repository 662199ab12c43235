/// One tokenized preference pair, as TRL's DPOTrainer tokenizes it: the prompt's ids and each
/// completion's ids after it (the completion starts where prompt and prompt+completion diverge).
public struct PreferencePair: Equatable, Sendable {
    public var promptIds: [Int32]
    public var chosenIds: [Int32]
    public var rejectedIds: [Int32]

    public init(promptIds: [Int32], chosenIds: [Int32], rejectedIds: [Int32]) {
        self.promptIds = promptIds; self.chosenIds = chosenIds; self.rejectedIds = rejectedIds
    }
}

/// Which end of prompt+completion TRL keeps when it is longer than max_length.
public enum TruncationMode: String, Sendable {
    case keepStart = "keep_start"
    case keepEnd = "keep_end"
}

/// Pairs collated as TRL's DataCollatorForPreference does: every chosen sequence, then every
/// rejected one (so a pair's two completions share one forward), each prompt+completion truncated
/// to max_length, right-padded; only completion tokens are targets.
public struct PreferenceBatch: Equatable, Sendable {
    public var batch: Batch
    /// Completion tokens of each row after truncation (TRL's completion_mask summed; IPO divides by it).
    public var completionCounts: [Int]
    public var pairCount: Int { batch.rows / 2 }

    public init(pairs: [PreferencePair], maxLength: Int? = nil, truncation: TruncationMode = .keepStart) {
        var examples: [Example] = [], counts: [Int] = []
        for side in 0..<2 {
            for pair in pairs {
                let completion = side == 0 ? pair.chosenIds : pair.rejectedIds
                var ids = pair.promptIds + completion
                var isCompletion = [Bool](repeating: false, count: pair.promptIds.count)
                    + [Bool](repeating: true, count: completion.count)
                if let maxLength, ids.count > maxLength {
                    switch truncation {
                    case .keepStart: ids = Array(ids.prefix(maxLength)); isCompletion = Array(isCompletion.prefix(maxLength))
                    case .keepEnd: ids = Array(ids.suffix(maxLength)); isCompletion = Array(isCompletion.suffix(maxLength))
                    }
                }
                let labels = zip(ids, isCompletion).map { $1 ? $0 : Batch.ignoreIndex }
                examples.append(Example(inputIds: ids, labels: labels))
                counts.append(isCompletion.lazy.filter { $0 }.count)
            }
        }
        batch = Batch(examples: examples)
        completionCounts = counts
    }
}
