/// Token rows ready for a training or evaluation step: `rows × columns` tokens, flattened.
///
/// Targets are already shifted (`targets[n]` is the label of the token after n in the same
/// sequence, or -100), so the loss is a plain per-token cross-entropy. Several examples may be
/// packed in a row: sequence ids keep attention inside each, and positions restart per example.
public struct Batch: Equatable, Sendable {
    public var rows: Int
    public var columns: Int
    public var tokens: [Int32]
    public var targets: [Int32]
    public var positions: [Int32]
    /// Example each token belongs to; -1 marks padding, which nothing attends to.
    public var sequenceIds: [Int32]

    public static let ignoreIndex: Int32 = -100

    public var tokenCount: Int { rows * columns }
    /// Tokens that count in the loss.
    public var targetCount: Int { targets.lazy.filter { $0 != Batch.ignoreIndex }.count }
    /// Each row's flat token range (the spans of per-row log-prob sums).
    public var rowSpans: [Range<Int>] { (0..<rows).map { $0 * columns..<($0 + 1) * columns } }

    public init(rows: Int, columns: Int, tokens: [Int32], targets: [Int32], positions: [Int32], sequenceIds: [Int32]) {
        precondition([tokens.count, targets.count, positions.count, sequenceIds.count].allSatisfy { $0 == rows * columns })
        self.rows = rows; self.columns = columns; self.tokens = tokens; self.targets = targets
        self.positions = positions; self.sequenceIds = sequenceIds
    }

    /// One example per row, right-padded to the longest, as transformers sees a padded batch:
    /// positions are column indices, labels (input_ids where absent) shifted by one.
    /// Tokens with attention mask 0 are padding: they neither attend nor count in the loss.
    public init(examples: [Example]) {
        let columns = examples.map(\.inputIds.count).max() ?? 0
        var tokens: [Int32] = [], targets: [Int32] = [], positions: [Int32] = [], ids: [Int32] = []
        for example in examples {
            let n = example.inputIds.count
            let labels = example.labels ?? example.inputIds
            let mask = example.attentionMask ?? [Int32](repeating: 1, count: n)
            for t in 0..<columns {
                let real = t < n && mask[t] != 0
                tokens.append(t < n ? example.inputIds[t] : 0)
                positions.append(Int32(t))
                ids.append(real ? 0 : -1)
                let nextReal = t + 1 < n && mask[t + 1] != 0
                targets.append(real && nextReal ? labels[t + 1] : Batch.ignoreIndex)
            }
        }
        self.init(rows: examples.count, columns: columns, tokens: tokens, targets: targets,
                  positions: positions, sequenceIds: ids)
    }

    /// Several examples packed into one row (positions restart, attention stays inside each).
    public init(packing examples: [Example], columns: Int? = nil) {
        var tokens: [Int32] = [], targets: [Int32] = [], positions: [Int32] = [], ids: [Int32] = []
        for (s, example) in examples.enumerated() {
            let labels = example.labels ?? example.inputIds
            for t in example.inputIds.indices {
                tokens.append(example.inputIds[t])
                positions.append(Int32(t))
                ids.append(Int32(s))
                targets.append(t + 1 < labels.count ? labels[t + 1] : Batch.ignoreIndex)
            }
        }
        let width = columns ?? tokens.count
        precondition(width >= tokens.count, "packed examples exceed \(width) columns")
        while tokens.count < width {
            tokens.append(0); positions.append(Int32(positions.count)); ids.append(-1); targets.append(Batch.ignoreIndex)
        }
        self.init(rows: 1, columns: width, tokens: tokens, targets: targets, positions: positions, sequenceIds: ids)
    }
}

/// One tokenized training example.
public struct Example: Equatable, Sendable {
    public var inputIds: [Int32]
    /// Per-token labels (-100: not trained on); nil means the input ids themselves.
    public var labels: [Int32]?
    public var attentionMask: [Int32]?

    public init(inputIds: [Int32], labels: [Int32]? = nil, attentionMask: [Int32]? = nil) {
        self.inputIds = inputIds; self.labels = labels; self.attentionMask = attentionMask
    }

    /// The first `length` tokens (with their labels and mask), as TRL truncates: keep the start.
    public func truncated(to length: Int) -> Example {
        guard inputIds.count > length else { return self }
        return Example(inputIds: Array(inputIds.prefix(length)), labels: labels.map { Array($0.prefix(length)) },
                       attentionMask: attentionMask.map { Array($0.prefix(length)) })
    }
}
