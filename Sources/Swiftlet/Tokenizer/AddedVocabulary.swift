/// One entry of `added_tokens` in tokenizer.json.
public struct AddedToken: Equatable, Sendable {
    public var id: Int32
    public var content: String
    public var special: Bool
    public var singleWord: Bool
    public var lstrip: Bool
    public var rstrip: Bool
    public var normalized: Bool
}

/// The added tokens, matched in the raw text before anything else, exactly as `tokenizers`'
/// `AddedVocabulary::extract_and_normalize` does: first the tokens with `normalized: false` in the raw text,
/// then the `normalized: true` ones (whose content is itself normalized) in the normalized pieces; leftmost
/// match, longest at that position; `single_word`, `lstrip` and `rstrip` as in `find_matches`.
struct AddedVocabulary {
    let tokens: [AddedToken]
    /// id → the form used when decoding (the normalized content for normalized tokens).
    let decodeForm: [Int32: [UInt32]]
    /// contents of the special tokens: decode skips any token whose string is one of them
    let specialContents: Set<[UInt32]>
    let rawTrie: TokenTrie?
    let normalizedTrie: TokenTrie?
    let byId: [Int32: AddedToken]

    init(tokens: [AddedToken], normalizer: TokenNormalizer?) {
        self.tokens = tokens
        var decodeForm: [Int32: [UInt32]] = [:]
        var raw: [([UInt32], Int32)] = []
        var norm: [([UInt32], Int32)] = []
        var byId: [Int32: AddedToken] = [:]
        for t in tokens {
            byId[t.id] = t
            let content = scalarValues(t.content)
            if t.normalized, let normalizer {
                let n = normalizer.normalize(content)
                decodeForm[t.id] = n
                norm.append((n, t.id))
            } else {
                decodeForm[t.id] = content
                if t.normalized { norm.append((content, t.id)) } else { raw.append((content, t.id)) }
            }
        }
        self.decodeForm = decodeForm
        self.byId = byId
        self.specialContents = Set(tokens.filter { $0.special && !$0.content.isEmpty }.map { scalarValues($0.content) })
        self.rawTrie = raw.isEmpty ? nil : TokenTrie(raw)
        self.normalizedTrie = norm.isEmpty ? nil : TokenTrie(norm)
    }

    enum Segment {
        case token(Int32)
        case text(Range<Int>)
    }

    /// `find_matches`: splits `s` into added tokens and the text between them (empty texts are dropped).
    func split(_ s: [UInt32], trie: TokenTrie) -> [Segment] {
        var out: [Segment] = []
        var startOffset = 0
        let n = s.count
        s.withUnsafeBufferPointer { buf in
            var i = 0
            while i < n {
                guard let (end, id) = trie.longestMatch(buf, at: i) else { i += 1; continue }
                var start = i
                var stop = end
                i = end
                let token = byId[id]!
                if token.singleWord {
                    let startSpace = start == 0 || !AddedVocabulary.isWordChar(buf[start - 1])
                    let stopSpace = stop == n || !AddedVocabulary.isWordChar(buf[stop])
                    if !startSpace || !stopSpace { continue }
                }
                if token.lstrip {
                    var newStart = start
                    while newStart > 0, AddedVocabulary.isSpace(buf[newStart - 1]) { newStart -= 1 }
                    start = max(newStart, startOffset)
                }
                if token.rstrip {
                    while stop < n, AddedVocabulary.isSpace(buf[stop]) { stop += 1 }
                }
                if startOffset < start { out.append(.text(startOffset..<start)) }
                out.append(.token(id))
                startOffset = stop
            }
        }
        if startOffset < n { out.append(.text(startOffset..<n)) }
        return out
    }

    /// Rust regex `\s` (White_Space).
    @inline(__always) static func isSpace(_ v: UInt32) -> Bool { CharClass.of(v) & CharClass.space != 0 }

    /// Rust regex `\w`: Alphabetic, Mark, Decimal_Number, Connector_Punctuation, Join_Control.
    static func isWordChar(_ v: UInt32) -> Bool {
        guard let s = Unicode.Scalar(v) else { return false }
        let p = s.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }
}

/// A trie of added-token contents over Unicode scalars.
final class TokenTrie {
    private var children: [[UInt32: Int32]] = [[:]]
    private var terminal: [Int32] = [-1]
    /// ASCII first characters that start some token (fast rejection).
    private var asciiFirst = [Bool](repeating: false, count: 128)
    private var hasNonASCIIFirst = false

    init(_ entries: [([UInt32], Int32)]) {
        for (content, id) in entries where !content.isEmpty {
            var node = 0
            for c in content {
                if let next = children[node][c] {
                    node = Int(next)
                } else {
                    children.append([:]); terminal.append(-1)
                    children[node][c] = Int32(children.count - 1)
                    node = children.count - 1
                }
            }
            if terminal[node] < 0 { terminal[node] = id }
            if content[0] < 128 { asciiFirst[Int(content[0])] = true } else { hasNonASCIIFirst = true }
        }
    }

    /// The longest token starting at `i`: (end, id).
    @inline(__always) func longestMatch(_ s: UnsafeBufferPointer<UInt32>, at i: Int) -> (Int, Int32)? {
        let c = s[i]
        if c < 128 { if !asciiFirst[Int(c)] { return nil } } else if !hasNonASCIIFirst { return nil }
        var node = 0
        var best: (Int, Int32)? = nil
        var j = i
        while j < s.count, let next = children[node][s[j]] {
            node = Int(next)
            j += 1
            if terminal[node] >= 0 { best = (j, terminal[node]) }
        }
        return best
    }
}
