public enum GenerationError: Error, CustomStringConvertible {
    case cacheFull(capacity: Int)
    case emptyPrompt(row: Int)
    case invalidOption(String)
    /// The tokenizer (named by its folder) has no `chat_template` in tokenizer_config.json.
    case noChatTemplate(tokenizer: String)

    public var description: String {
        switch self {
        case let .cacheFull(capacity): return "the KV cache of \(capacity) positions is full"
        case let .emptyPrompt(row): return "prompt \(row) has no tokens"
        case let .invalidOption(message): return message
        case let .noChatTemplate(tokenizer):
            return "the tokenizer of \(tokenizer) has no chat_template in tokenizer_config.json"
        }
    }
}
