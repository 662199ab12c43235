import Foundation

public struct DatasetOptions: Sendable {
    /// Column read by the `text` format (TRL's `dataset_text_field`).
    public var textField: String = "text"
    /// Alpaca: loss on the response only (TRL `completion_only_loss`); conversations: on assistant turns
    /// only (TRL `assistant_only_loss`). Off: every token is trained.
    public var trainOnResponsesOnly: Bool = false
    /// Keep the first `maxSeqLength` tokens (TRL `truncation_mode="keep_start"`); nil: no truncation.
    public var maxSeqLength: Int? = nil
    /// The examples will be packed: like TRL, truncation is then left to packing and fully masked examples kept.
    public var packing: Bool = false
    /// Count unusable rows instead of stopping at the first.
    public var skipBadRows: Bool = false

    public init(textField: String = "text", trainOnResponsesOnly: Bool = false, maxSeqLength: Int? = nil,
                packing: Bool = false, skipBadRows: Bool = false) {
        self.textField = textField; self.trainOnResponsesOnly = trainOnResponsesOnly
        self.maxSeqLength = maxSeqLength; self.packing = packing; self.skipBadRows = skipBadRows
    }
}

public struct TextDatasetResult: Sendable {
    public var examples: [Example]
    public var format: DatasetFormat
    /// Rows skipped as unusable (only with `skipBadRows`) and the first few reasons.
    public var skipped: Int
    public var skipMessages: [String]
    /// Examples dropped because truncation left no trained token (TRL drops them too).
    public var droppedFullyMasked: Int
}

/// Text data sets: read (`DatasetReader`), format (`DatasetFormat`), tokenize with labels (`TextTokenizer`),
/// truncate — TRL 1.16 SFTTrainer's dataset preparation.
public enum TextDataset {
    public static let maxSkipMessages = 5

    /// - Parameters:
    ///   - format: nil detects it from the first row's keys.
    ///   - template: for conversations; nil uses the tokenizer's `chat_template`.
    public static func load(url: URL, format: DatasetFormat? = nil, tokenizer: Tokenizer, template: ChatTemplate? = nil,
                            options: DatasetOptions = DatasetOptions()) throws -> TextDatasetResult {
        let rows = try DatasetReader.read(url)
        guard let first = rows.first else {
            throw DataError(file: url.path, line: nil, field: nil, problem: "holds no rows")
        }
        let format = try format ?? DatasetFormat.detect(first, textField: options.textField)
        var chatTemplate = template
        if chatTemplate == nil, format == .conversations, let source = tokenizer.config.chatTemplate {
            chatTemplate = try ChatTemplate(source: source)
        }
        let textTokenizer = TextTokenizer(tokenizer: tokenizer, template: chatTemplate)
        var examples: [Example] = [], skipped = 0, messages: [String] = [], dropped = 0
        for row in rows {
            do {
                var e = try textTokenizer.example(format.format(row, textField: options.textField),
                                                  trainOnResponsesOnly: options.trainOnResponsesOnly)
                if let m = e.attentionMask, !m.contains(0) { e.attentionMask = nil }
                if let bad = e.inputIds.first(where: { Int($0) >= tokenizer.vocabSize }) {
                    throw row.error("input_ids", "holds \(bad), outside the tokenizer's vocabulary (\(tokenizer.vocabSize))")
                }
                if let max = options.maxSeqLength, !options.packing {
                    e = e.truncated(to: max)
                    if !(e.labels ?? e.inputIds).contains(where: { $0 != Batch.ignoreIndex }) { dropped += 1; continue }
                }
                examples.append(e)
            } catch var error as DataError {
                if error.line == nil && error.file == "chat template" {
                    error = row.error(error.field, "— chat template: \(error.problem)")
                }
                guard options.skipBadRows else { throw error }
                skipped += 1
                if messages.count < maxSkipMessages { messages.append(error.description) }
            } catch {
                let e = row.error(nil, "cannot be rendered: \(error)")
                guard options.skipBadRows else { throw e }
                skipped += 1
                if messages.count < maxSkipMessages { messages.append(e.description) }
            }
        }
        guard !examples.isEmpty else {
            throw DataError(file: url.path, line: nil, field: nil, problem: "holds no usable examples (\(skipped) rows skipped)")
        }
        return TextDatasetResult(examples: examples, format: format, skipped: skipped, skipMessages: messages, droppedFullyMasked: dropped)
    }

    /// Training and evaluation examples: from `evalURL` when given, else a seeded `evalFraction` split.
    public static func loadSplits(url: URL, evalURL: URL? = nil, evalFraction: Double = 0, seed: UInt64 = 42,
                                  format: DatasetFormat? = nil, tokenizer: Tokenizer, template: ChatTemplate? = nil,
                                  options: DatasetOptions = DatasetOptions()) throws -> (train: TextDatasetResult, eval: [Example]) {
        var train = try load(url: url, format: format, tokenizer: tokenizer, template: template, options: options)
        if let evalURL {
            let eval = try load(url: evalURL, format: format ?? train.format, tokenizer: tokenizer, template: template, options: options)
            return (train, eval.examples)
        }
        let (t, e) = DatasetSplit.split(train.examples, evalFraction: evalFraction, seed: seed)
        train.examples = t
        return (train, e)
    }
}
