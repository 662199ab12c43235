import Foundation

/// Errors while loading a tokenizer. Every case names the file and the field, so an unsupported
/// `tokenizer.json` fails loudly instead of tokenizing differently from the Python `tokenizers` library.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// A file could not be read.
    case unreadable(file: String, reason: String)
    /// The file is not valid JSON (byte offset of the problem).
    case invalidJSON(file: String, offset: Int, reason: String)
    /// A required field is missing or has the wrong JSON type.
    case invalidField(file: String, field: String, reason: String)
    /// A component type (model, normalizer, pre-tokenizer, decoder, post-processor, option) this
    /// implementation does not support.
    case unsupported(file: String, field: String, value: String)

    public var description: String {
        switch self {
        case let .unreadable(file, reason):
            return "\(file): cannot read: \(reason)"
        case let .invalidJSON(file, offset, reason):
            return "\(file): invalid JSON at byte \(offset): \(reason)"
        case let .invalidField(file, field, reason):
            return "\(file): field `\(field)`: \(reason)"
        case let .unsupported(file, field, value):
            return "\(file): field `\(field)`: unsupported value \(value) (Swiftlet's tokenizer supports BPE models with "
                + "the Llama/Mistral SentencePiece-style and Llama-3/Qwen2/GPT-2 byte-level pipelines)"
        }
    }
}
