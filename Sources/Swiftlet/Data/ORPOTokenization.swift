/// Preference rows tokenized as TRL 1.16's ORPOTrainer (`trl.experimental.orpo`) does, which is not
/// how its DPOTrainer does:
///
/// - conversational rows become text first (`maybe_apply_chat_template`): the prompt rendered with the
///   generation prompt, prompt+chosen and prompt+rejected without; the prompt text is the common
///   character prefix of the three, each completion the rest of its prompt+completion text.
/// - text is tokenized without special tokens; each side's prompt is cut from its own prompt+completion
///   ids (`build_tokenized_answer`: at the prompt's length, one token earlier when the last prompt token
///   merged with the completion), so chosen and rejected prompts may differ by one token (more is an error).
/// - BOS is prepended to a prompt that does not start with it, the EOS *id* appended to a completion that
///   does not end with it (DPO appends the EOS text to text rows only).
/// - only the completion is truncated, to max_length − prompt length (keep_start; the prompt never is).
///   TRL keeps pairs whose prompt alone fills max_length and then divides by zero completion tokens
///   (NaN loss); we drop them, as we do for DPO.
extension TextTokenizer {
    public func orpoPair(_ row: PreferenceDataset.Row, maxLength: Int?) throws -> PreferencePair {
        let prompt: String, chosen: String, rejected: String
        switch row {
        case .text(let p, let c, let r):
            (prompt, chosen, rejected) = (p, c, r)
        case .conversation(let p, let c, let r):
            guard let template else {
                throw DataError(file: "chat template", line: nil, field: nil,
                                problem: "is missing: the tokenizer has no chat_template; name one (e.g. chatml)")
            }
            let bos = tokenizer.config.bosToken, eos = tokenizer.config.eosToken
            func render(_ messages: [ChatMessage], generationPrompt: Bool) throws -> [Unicode.Scalar] {
                Array(try template.render(messages: messages, addGenerationPrompt: generationPrompt, bosToken: bos,
                                          eosToken: eos, extra: templateVariables).unicodeScalars)
            }
            let promptText = try render(p, generationPrompt: true)
            let promptChosen = try render(p + c, generationPrompt: false)
            let promptRejected = try render(p + r, generationPrompt: false)
            // Python's takewhile over characters: the common prefix, first with prompt+chosen, then prompt+rejected.
            let common = Self.commonPrefixLength(Self.commonPrefix(promptText, promptChosen), promptRejected)
            func string(_ s: ArraySlice<Unicode.Scalar>) -> String { String(String.UnicodeScalarView(s)) }
            prompt = string(promptText[..<common])
            chosen = string(promptChosen[common...])
            rejected = string(promptRejected[common...])
        }
        var (chosenPrompt, chosenIds) = try orpoAnswer(prompt: prompt, answer: chosen, field: "chosen")
        var (rejectedPrompt, rejectedIds) = try orpoAnswer(prompt: prompt, answer: rejected, field: "rejected")
        let differing = zip(chosenPrompt, rejectedPrompt).lazy.filter { $0 != $1 }.count
        if differing > 1 || abs(chosenPrompt.count - rejectedPrompt.count) > 1 {
            throw DataError(file: "tokenizer", line: nil, field: "prompt",
                            problem: "tokenizes differently before chosen and before rejected (more than the last token merged)")
        }
        if let bos = tokenizer.bosTokenId {
            if chosenPrompt.first != bos { chosenPrompt.insert(bos, at: 0) }
            if rejectedPrompt.first != bos { rejectedPrompt.insert(bos, at: 0) }
        }
        if let eos = tokenizer.eosTokenId {
            if chosenIds.last != eos { chosenIds.append(eos) }
            if rejectedIds.last != eos { rejectedIds.append(eos) }
        }
        if let maxLength {
            chosenIds = Array(chosenIds.prefix(Swift.max(0, maxLength - chosenPrompt.count)))
            rejectedIds = Array(rejectedIds.prefix(Swift.max(0, maxLength - rejectedPrompt.count)))
        }
        return PreferencePair(promptIds: chosenPrompt, chosenIds: chosenIds, rejectedIds: rejectedIds,
                              rejectedPromptIds: rejectedPrompt == chosenPrompt ? nil : rejectedPrompt)
    }

    /// TRL's `build_tokenized_answer`: (prompt ids, answer ids) cut from the ids of prompt+answer.
    private func orpoAnswer(prompt: String, answer: String, field: String) throws -> ([Int32], [Int32]) {
        let full = tokenizer.encode(prompt + answer, addSpecialTokens: false)
        let promptIds = tokenizer.encode(prompt, addSpecialTokens: false)
        guard promptIds.count <= full.count else {
            throw DataError(file: "tokenizer", line: nil, field: field,
                            problem: "prompt+\(field) tokenizes shorter than the prompt alone")
        }
        var start = promptIds.count
        if Array(full[..<start]) != promptIds { start -= 1 }
        return (Array(full[..<start]), Array(full[start...]))
    }

    static func commonPrefix<T: Equatable>(_ a: [T], _ b: [T]) -> [T] { Array(a[..<commonPrefixLength(a, b)]) }
}
