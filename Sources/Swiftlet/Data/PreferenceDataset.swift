import Foundation

/// Preference data (`{"prompt", "chosen", "rejected"}` rows) tokenized exactly as TRL 1.16's
/// `DPOTrainer._prepare_dataset` does:
///
/// - no `prompt` field: `extract_prompt` takes the common prefix of chosen and rejected (messages, or
///   characters backed off one when the character before the split is a space) as the prompt.
/// - text: `add_eos` appends the EOS token text to each completion that does not already end with it;
///   prompt, prompt+chosen and prompt+rejected are tokenized with special tokens (BOS as the tokenizer adds it).
/// - conversational: the prompt is rendered with the chat template and `add_generation_prompt`,
///   prompt+chosen and prompt+rejected without it, each tokenized without special tokens (no EOS appended:
///   the template ends the turn).
/// - the prompt is the common prefix of the prompt ids and both prompt+completion ids
///   (`common_prefix_length`); each completion is the rest of its prompt+completion ids.
/// - with a `maxLength` and keep_start truncation, pairs whose prompt alone fills it are dropped (no
///   completion token would survive the collator's truncation).
///
/// With `tokenization: .orpo` the rows are tokenized as TRL's ORPOTrainer does instead (see
/// ORPOTokenization.swift): the same rows and checks, other ids.
public enum PreferenceDataset {
    /// Whose tokenize function makes the ids: TRL's DPOTrainer's or its ORPOTrainer's.
    public enum Tokenization: String, Sendable {
        case dpo, orpo
    }

    public struct Result: Sendable {
        public var pairs: [PreferencePair]
        /// Pairs dropped because the prompt alone fills `maxLength`.
        public var droppedLongPrompts = 0
        /// Whether the rows were conversational (messages) rather than text.
        public var conversational = false
    }

    /// One row before tokenization: text, or messages.
    public enum Row: Sendable {
        case text(prompt: String, chosen: String, rejected: String)
        case conversation(prompt: [ChatMessage], chosen: [ChatMessage], rejected: [ChatMessage])
    }

    public static func load(url: URL, tokenizer: Tokenizer, template: ChatTemplate? = nil, maxLength: Int? = nil,
                            truncation: TruncationMode = .keepStart, tokenization: Tokenization = .dpo) throws -> Result {
        let rows = try DatasetReader.read(url)
        guard !rows.isEmpty else { throw DataError(file: url.path, line: nil, field: nil, problem: "holds no rows") }
        var chatTemplate = template
        if chatTemplate == nil, let source = tokenizer.config.chatTemplate { chatTemplate = try ChatTemplate(source: source) }
        let text = TextTokenizer(tokenizer: tokenizer, template: chatTemplate)
        var result = Result(pairs: [])
        // TRL decides text-or-conversational from the first row and treats every row so.
        result.conversational = isConversational(try format(rows[0]))
        for row in rows {
            let formatted = try format(row)
            if isConversational(formatted) != result.conversational {
                throw row.error(nil, "is \(result.conversational ? "text" : "conversational") but the first row of "
                    + "\(url.lastPathComponent) is \(result.conversational ? "conversational" : "text"): a data set is one or the other")
            }
            let pair: PreferencePair
            do {
                switch tokenization {
                case .dpo: pair = try text.preferencePair(formatted)
                case .orpo: pair = try text.orpoPair(formatted, maxLength: maxLength)
                }
            } catch var error as DataError {
                if error.line == nil && (error.file == "chat template" || error.file == "tokenizer") {
                    error = row.error(error.field, "— \(error.file): \(error.problem)")
                }
                throw error
            }
            if let bad = (pair.promptIds + pair.chosenIds + pair.rejectedIds + (pair.rejectedPromptIds ?? []))
                .first(where: { Int($0) >= tokenizer.vocabSize }) {
                throw row.error(nil, "tokenizes to \(bad), outside the tokenizer's vocabulary (\(tokenizer.vocabSize))")
            }
            // ORPO has truncated the completions already: an empty one means the prompt filled max_length.
            let promptFills = tokenization == .orpo ? pair.chosenIds.isEmpty || pair.rejectedIds.isEmpty
                : maxLength.map { truncation == .keepStart && pair.promptIds.count >= $0 } ?? false
            if promptFills {
                result.droppedLongPrompts += 1
                continue
            }
            result.pairs.append(pair)
        }
        return result
    }

    static func isConversational(_ row: Row) -> Bool {
        if case .conversation = row { return true }
        return false
    }

    /// Checks a row's fields: `chosen` and `rejected` both strings or both message lists, `prompt` of the
    /// same kind or absent (then extracted from their common prefix).
    public static func format(_ row: DatasetRow) throws -> Row {
        func value(_ key: String) throws -> DataValue {
            guard let v = row[key], v != .null else { throw row.error(key, "is missing") }
            return v
        }
        let chosen = try value("chosen"), rejected = try value("rejected")
        let prompt = row["prompt"].flatMap { $0 == .null ? nil : $0 }
        switch chosen {
        case .string(let c):
            guard case .string(let r) = rejected else { throw row.error("rejected", "must be a string like 'chosen', not \(rejected.typeName)") }
            guard let prompt else {
                let (p, c2, r2) = extractPrompt(Array(c.unicodeScalars), Array(r.unicodeScalars)) { $0 == " " }
                return .text(prompt: String(String.UnicodeScalarView(p)), chosen: String(String.UnicodeScalarView(c2)),
                             rejected: String(String.UnicodeScalarView(r2)))
            }
            guard case .string(let p) = prompt else { throw row.error("prompt", "must be a string like 'chosen', not \(prompt.typeName)") }
            return .text(prompt: p, chosen: c, rejected: r)
        case .array:
            let c = try DatasetFormat.messages(chosen, of: row, field: "chosen")
            guard case .array = rejected else { throw row.error("rejected", "must be a list of messages like 'chosen', not \(rejected.typeName)") }
            let r = try DatasetFormat.messages(rejected, of: row, field: "rejected")
            guard let prompt else {
                let (p, c2, r2) = extractPrompt(c, r) { _ in false }
                return .conversation(prompt: p, chosen: c2, rejected: r2)
            }
            guard case .array = prompt else { throw row.error("prompt", "must be a list of messages like 'chosen', not \(prompt.typeName)") }
            return .conversation(prompt: try DatasetFormat.messages(prompt, of: row, field: "prompt"), chosen: c, rejected: r)
        default:
            throw row.error("chosen", "must be a string or a list of messages, not \(chosen.typeName)")
        }
    }

    /// TRL's `extract_prompt`, including its quirks: the split is at the first difference, one earlier
    /// when the element before it is a space; with no difference in the shorter length, at its last element.
    static func extractPrompt<T: PromptElement>(_ chosen: [T], _ rejected: [T], isSpace: (T) -> Bool) -> ([T], [T], [T]) {
        var idx = 0
        let n = Swift.min(chosen.count, rejected.count)
        for i in 0..<n {
            idx = i
            if !chosen[i].same(as: rejected[i]) {
                // Python's chosen[idx - 1] at idx 0 is the last element.
                if isSpace(chosen[i == 0 ? chosen.count - 1 : i - 1]) { idx -= 1 }
                break
            }
        }
        // A negative index counts from the end, as Python's slices do.
        func from(_ a: [T]) -> Int { idx < 0 ? Swift.max(a.count + idx, 0) : Swift.min(idx, a.count) }
        return (Array(chosen[..<from(chosen)]), Array(chosen[from(chosen)...]), Array(rejected[from(rejected)...]))
    }
}

/// What `extract_prompt` compares: characters, or messages (role and content, as Python's dict `==`).
protocol PromptElement { func same(as other: Self) -> Bool }
extension Unicode.Scalar: PromptElement { func same(as other: Unicode.Scalar) -> Bool { self == other } }
extension ChatMessage: PromptElement {
    func same(as other: ChatMessage) -> Bool { role == other.role && content == other.content }
}

extension TextTokenizer {
    /// One preference row's ids, as TRL's DPO `tokenize_fn` (see `PreferenceDataset`).
    public func preferencePair(_ row: PreferenceDataset.Row) throws -> PreferencePair {
        let promptIds: [Int32], chosenIds: [Int32], rejectedIds: [Int32]
        switch row {
        case .text(let prompt, var chosen, var rejected):
            if let eos = eosText {
                if !chosen.hasSuffix(eos) { chosen += eos }
                if !rejected.hasSuffix(eos) { rejected += eos }
            }
            promptIds = tokenizer.encode(prompt, addSpecialTokens: true)
            chosenIds = tokenizer.encode(prompt + chosen, addSpecialTokens: true)
            rejectedIds = tokenizer.encode(prompt + rejected, addSpecialTokens: true)
        case .conversation(let prompt, let chosen, let rejected):
            guard let template else {
                throw DataError(file: "chat template", line: nil, field: nil,
                                problem: "is missing: the tokenizer has no chat_template; name one (e.g. chatml)")
            }
            let bos = tokenizer.config.bosToken, eos = tokenizer.config.eosToken
            func ids(_ messages: [ChatMessage], generationPrompt: Bool) throws -> [Int32] {
                let text = try template.render(messages: messages, addGenerationPrompt: generationPrompt, bosToken: bos,
                                               eosToken: eos, extra: templateVariables)
                return tokenizer.encode(text, addSpecialTokens: false)
            }
            promptIds = try ids(prompt, generationPrompt: true)
            chosenIds = try ids(prompt + chosen, generationPrompt: false)
            rejectedIds = try ids(prompt + rejected, generationPrompt: false)
        }
        let promptLength = Swift.min(TextTokenizer.commonPrefixLength(promptIds, chosenIds),
                                     TextTokenizer.commonPrefixLength(promptIds, rejectedIds))
        return PreferencePair(promptIds: Array(promptIds[..<promptLength]), chosenIds: Array(chosenIds[promptLength...]),
                              rejectedIds: Array(rejectedIds[promptLength...]))
    }
}
