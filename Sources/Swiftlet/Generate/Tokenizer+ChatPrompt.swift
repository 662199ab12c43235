extension Tokenizer {
    /// The token ids of `messages` rendered with `template` and its generation prompt (the
    /// assistant's turn opened), as transformers' `apply_chat_template(..., add_generation_prompt=True,
    /// tokenize=True)`: the template writes the special tokens, so none are added.
    public func encodeChatPrompt(_ messages: [ChatMessage], template: ChatTemplate) throws -> [Int32] {
        let text = try template.render(messages: messages, addGenerationPrompt: true, bosToken: config.bosToken,
                                       eosToken: config.eosToken)
        return encode(text, addSpecialTokens: false)
    }

    /// The tokenizer's own chat template (tokenizer_config.json's `chat_template`); `folder` names it in the error.
    public func chatTemplate(folder: String) throws -> ChatTemplate {
        guard let source = config.chatTemplate else { throw GenerationError.noChatTemplate(tokenizer: folder) }
        return try ChatTemplate(source: source)
    }
}
