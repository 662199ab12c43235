public enum GenerationError: Error, CustomStringConvertible {
    case cacheFull(capacity: Int)
    case emptyPrompt(row: Int)
    case invalidOption(String)

    public var description: String {
        switch self {
        case let .cacheFull(capacity): return "the KV cache of \(capacity) positions is full"
        case let .emptyPrompt(row): return "prompt \(row) has no tokens"
        case let .invalidOption(message): return message
        }
    }
}
