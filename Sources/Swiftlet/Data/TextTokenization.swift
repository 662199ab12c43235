import Foundation

/// Turns formatted rows into token ids and labels exactly as TRL 1.16's `SFTTrainer._prepare_dataset` does:
///
/// - text (language modeling): `add_eos` appends the EOS token text when the text does not already end with
///   it, then `_tokenize` calls the tokenizer with its special tokens (the post-processor's BOS…); every
///   token is trained (`labels == input_ids`).
/// - prompt-completion (Alpaca): EOS appended to the completion the same way; prompt and prompt+completion
///   are tokenized with special tokens; the completion starts at `common_prefix_length(prompt_ids,
///   prompt_completion_ids)`; with `completionOnly` (TRL's `completion_only_loss`) the prompt tokens get -100.
/// - conversations: `apply_chat_template(tokenize=True)`: the template is rendered with the tokenizer's
///   special tokens as variables and tokenized with `add_special_tokens=False`; no EOS is appended (the
///   template ends the turn). With `assistantOnly` (TRL's `assistant_only_loss`) the labels keep only the
///   tokens overlapping a `{% generation %}` block — transformers' `return_assistant_tokens_mask`, which
///   marks every token whose character span overlaps a block (so a block ending in `<|im_end|>` trains it).
///   TRL errors when no token is marked; so do we.
public struct TextTokenizer {
    public let tokenizer: Tokenizer
    public let template: ChatTemplate?

    public init(tokenizer: Tokenizer, template: ChatTemplate? = nil) {
        self.tokenizer = tokenizer
        self.template = template
    }

    var eosText: String? { tokenizer.config.eosToken }

    public func example(_ formatted: FormattedExample, trainOnResponsesOnly: Bool) throws -> Example {
        switch formatted {
        case .text(var text):
            if let eos = eosText, !text.hasSuffix(eos) { text += eos }
            let ids = tokenizer.encode(text, addSpecialTokens: true)
            return Example(inputIds: ids, labels: ids)
        case .promptCompletion(let prompt, var completion):
            if let eos = eosText, !completion.hasSuffix(eos) { completion += eos }
            let promptIds = tokenizer.encode(prompt, addSpecialTokens: true)
            let ids = tokenizer.encode(prompt + completion, addSpecialTokens: true)
            guard trainOnResponsesOnly else { return Example(inputIds: ids, labels: ids) }
            let promptLen = TextTokenizer.commonPrefixLength(promptIds, ids)
            var labels = ids
            for i in 0..<promptLen { labels[i] = Batch.ignoreIndex }
            return Example(inputIds: ids, labels: labels)
        case .conversation(let messages):
            guard let template else {
                throw DataError(file: "chat template", line: nil, field: nil,
                                problem: "is missing: the tokenizer has no chat_template; name one (e.g. chatml)")
            }
            let (text, spans) = try renderWithSpans(template, messages, needSpans: trainOnResponsesOnly)
            let ids = tokenizer.encode(text, addSpecialTokens: false)
            guard trainOnResponsesOnly else { return Example(inputIds: ids, labels: ids) }
            let mask = assistantMask(text: text, ids: ids, spans: spans)
            guard mask.contains(true) else {
                throw DataError(file: "chat template", line: nil, field: "messages",
                                problem: "gives no assistant tokens to train on (trainOnResponsesOnly needs an assistant turn)")
            }
            let labels = zip(ids, mask).map { $1 ? $0 : Batch.ignoreIndex }
            return Example(inputIds: ids, labels: labels)
        case .tokenized(let example):
            return example
        }
    }

    var templateVariables: [String: JinjaValue] {
        var extra: [String: JinjaValue] = [:]
        if let unk = tokenizer.config.unkToken { extra["unk_token"] = .string(unk) }
        if let pad = tokenizer.config.padToken { extra["pad_token"] = .string(pad) }
        return extra
    }

    /// The rendered conversation and the assistant spans (Unicode-scalar offsets). With `{% generation %}`
    /// markers the spans are the blocks (TRL/transformers). Without markers — where TRL would swap in a
    /// training template of its own or refuse — each assistant message's span runs from the end of the
    /// rendered prefix with a generation prompt to the end of the rendered prefix including the message.
    func renderWithSpans(_ template: ChatTemplate, _ messages: [ChatMessage], needSpans: Bool) throws -> (String, [Range<Int>]) {
        let bos = tokenizer.config.bosToken, eos = tokenizer.config.eosToken
        let (text, spans) = try template.renderTrackingGeneration(messages: messages, bosToken: bos, eosToken: eos, extra: templateVariables)
        guard needSpans, !template.hasGenerationMarkers else { return (text, spans) }
        let full = Array(text.unicodeScalars)
        var prefixSpans: [Range<Int>] = []
        for (i, m) in messages.enumerated() where m.role == "assistant" {
            let before = try template.render(messages: Array(messages[..<i]), addGenerationPrompt: true, bosToken: bos, eosToken: eos, extra: templateVariables)
            let through = try template.render(messages: Array(messages[...i]), bosToken: bos, eosToken: eos, extra: templateVariables)
            let b = Array(before.unicodeScalars), t = Array(through.unicodeScalars)
            guard b.count <= t.count, t.count <= full.count, full[..<b.count].elementsEqual(b), full[..<t.count].elementsEqual(t) else {
                throw DataError(file: "chat template", line: nil, field: "messages[\(i)]", problem:
                    "does not render as a prefix of the conversation, so its tokens cannot be found; use a template with {% generation %} markers")
            }
            prefixSpans.append(b.count..<t.count)
        }
        return (text, prefixSpans)
    }

    /// transformers' `return_assistant_tokens_mask`: token i is marked when its character span overlaps a
    /// span. Without token offsets, overlaps come from tokenizing text prefixes: the tokens ending at or
    /// before position p are the common prefix `c` of the full ids and the ids of text[..<p]; the tokens
    /// starting before p are `c`, plus one when the prefix ids go on past `c` (a token straddles p).
    func assistantMask(text: String, ids: [Int32], spans: [Range<Int>]) -> [Bool] {
        var mask = [Bool](repeating: false, count: ids.count)
        let scalars = Array(text.unicodeScalars)
        var cache: [Int: (common: Int, count: Int)] = [:]
        func cut(_ p: Int) -> (common: Int, count: Int) {
            if let c = cache[p] { return c }
            var s = String.UnicodeScalarView(); s.append(contentsOf: scalars[..<min(p, scalars.count)])
            let prefixIds = tokenizer.encode(String(s), addSpecialTokens: false)
            let r = (TextTokenizer.commonPrefixLength(prefixIds, ids), prefixIds.count)
            cache[p] = r
            return r
        }
        for span in spans {
            let first = cut(span.lowerBound).common  // tokens ending <= start
            let e = cut(span.upperBound)
            let last = e.common + (e.count > e.common ? 1 : 0)  // tokens starting < end
            if first < last { for i in first..<min(last, ids.count) { mask[i] = true } }
        }
        return mask
    }

    /// TRL's `common_prefix_length`.
    public static func commonPrefixLength<T: Equatable>(_ a: [T], _ b: [T]) -> Int {
        var n = 0
        while n < a.count && n < b.count && a[n] == b[n] { n += 1 }
        return n
    }
}
