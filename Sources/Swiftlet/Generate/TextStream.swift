/// The text of a reply as its tokens arrive, for printing while generating: the whole output is
/// decoded again each token and only what extends the text already given out is returned (a
/// partial UTF-8 character or a token that merges with the next may still change the tail), cut
/// before the first stop string.
public struct TextStream {
    public let tokenizer: Tokenizer
    public let stopStrings: [String]
    /// What `advance` has handed out so far.
    public private(set) var printed = ""

    public init(tokenizer: Tokenizer, stopStrings: [String]) {
        self.tokenizer = tokenizer
        self.stopStrings = stopStrings
    }

    /// The reply of `tokens`: decoded without special tokens, cut before the first stop string.
    public func text(of tokens: [Int32]) -> String {
        let text = tokenizer.decode(tokens, skipSpecialTokens: true)
        guard let cut = stopStrings.compactMap({ text.range(of: $0)?.lowerBound }).min() else { return text }
        return String(text[..<cut])
    }

    /// Whether the reply so far contains a stop string (generation should end).
    public func reachedStop(_ tokens: [Int32]) -> Bool {
        guard !stopStrings.isEmpty else { return false }
        let text = tokenizer.decode(tokens, skipSpecialTokens: true)
        return stopStrings.contains { text.contains($0) }
    }

    /// The text to print now that the reply is `tokens`; `final` gives out an incomplete
    /// character's replacement too.
    public mutating func advance(_ tokens: [Int32], final: Bool) -> String {
        let text = text(of: tokens)
        if !final, text.hasSuffix("\u{FFFD}") { return "" }
        guard text.hasPrefix(printed) else { return "" }
        let new = String(text.dropFirst(printed.count))
        printed = text
        return new
    }
}
