/// A multi-turn conversation with the model: the history rendered with the chat template each
/// turn, one KV cache kept across turns.
///
/// Each turn renders the whole conversation (with the generation prompt) and compares its tokens
/// with those the cache holds: the common prefix is reused and only the rest is prefilled. With
/// templates that render earlier turns the same way again (ChatML, Llama 3) that is all but the new
/// user message; where the rendering of the history changes (a template that drops old system
/// prompts, a reply that tokenizes differently once re-encoded) the cache is cut back to where the
/// tokens part and recomputed from there, so the model always sees exactly the rendered text.
public final class ChatSession {
    public let generator: Generator
    public let tokenizer: Tokenizer
    public let template: ChatTemplate
    /// A system message put first in every rendering (nil: none).
    public let system: String?
    /// The user and assistant messages so far.
    public private(set) var messages: [ChatMessage] = []
    /// The tokens whose keys and values the cache holds, in order.
    public private(set) var cachedTokens: [Int32] = []
    let cache: KVCache

    /// A finished turn.
    public struct Turn {
        /// The reply as it joins the history (special tokens dropped, cut before a stop string).
        public var reply: String
        /// The conversation's tokens this turn's prompt was made of, and how many came from the cache.
        public var promptTokens: [Int32]
        public var reusedTokens: Int
        public var result: Generator.Result
    }

    /// `capacity`: the most tokens the conversation may reach (prompt and replies together).
    /// Replies also end on the template's end-of-turn token (added to the generator's EOS ids).
    public init(generator: Generator, tokenizer: Tokenizer, template: ChatTemplate, system: String? = nil,
                capacity: Int) throws {
        self.generator = generator
        self.tokenizer = tokenizer
        self.template = template
        self.system = system
        cache = try KVCache(model: generator.model, rows: 1, capacity: capacity)
        // A template that refuses the probe conversation just leaves the EOS ids as they are.
        if let end = (try? Self.endOfTurnToken(template: template, tokenizer: tokenizer)) ?? nil {
            generator.eosTokenIds.insert(end)
        }
    }

    /// The special token the template closes an assistant message with (ChatML's <|im_end|>,
    /// Llama 3's <|eot_id|>, Llama 2's </s>), found by rendering one: a model trained on the
    /// template emits it when its reply is done, and generation_config.json need not list it.
    public static func endOfTurnToken(template: ChatTemplate, tokenizer: Tokenizer) throws -> Int32? {
        let marker = "swiftlet-reply-marker"
        let text = try template.render(messages: [.user("hi"), .assistant(marker)], bosToken: tokenizer.config.bosToken,
                                       eosToken: tokenizer.config.eosToken)
        guard let end = text.range(of: marker)?.upperBound else { return nil }
        let after = String(text[end...]).trimmingCharacters(in: .whitespaces)
        guard let first = tokenizer.encode(after, addSpecialTokens: false).first,
              tokenizer.decode([first], skipSpecialTokens: true).isEmpty else { return nil }
        return first
    }

    public var capacity: Int { cache.capacity }

    /// The conversation with `user` added, as the model will read it.
    public func prompt(adding user: String) throws -> [Int32] {
        try tokenizer.encodeChatPrompt((system.map { [.system($0)] } ?? []) + messages + [.user(user)], template: template)
    }

    /// Sends `user`, streams the reply's text through `onText`, and keeps both in the history.
    /// A reply that the cache's end cuts short is kept as far as it got.
    public func send(_ user: String, maxNewTokens: Int, options: SamplingOptions = SamplingOptions(),
                     stop: [String] = [], onText: @escaping (String) -> Void = { _ in }) throws -> Turn {
        let ids = try prompt(adding: user)
        guard ids.count < cache.capacity else { throw GenerationError.cacheFull(capacity: cache.capacity) }
        // At least one token runs, so the step gives the next token's logits.
        let reused = Swift.min(zip(cachedTokens, ids).prefix { $0 == $1 }.count, ids.count - 1)
        cache.truncate(to: reused)
        cachedTokens.removeLast(cachedTokens.count - reused)
        var stream = TextStream(tokenizer: tokenizer, stopStrings: stop)
        var output: [Int32] = []
        let result = try generator.generate(
            continuing: cache, context: cachedTokens, tokens: Array(ids[reused...]), maxNewTokens: maxNewTokens,
            options: options,
            onToken: { token in output.append(token); onText(stream.advance(output, final: false)) },
            shouldStop: { stream.reachedStop($0) })
        onText(stream.advance(output, final: true))
        cachedTokens = ids + output.dropLast()
        let reply = stream.text(of: output)
        messages += [.user(user), .assistant(reply)]
        return Turn(reply: reply, promptTokens: ids, reusedTokens: reused, result: result)
    }

    /// Forgets the conversation (the cache is overwritten from its start next turn).
    public func reset() {
        messages = []
        cache.truncate(to: 0)
        cachedTokens = []
    }
}
