/// The regexes of byte-level pre-tokenizers, matched by hand (exactly, and much faster than a regex engine).
///
/// Supported: the GPT-2 pattern (ByteLevel `use_regex: true`), and the Llama-3 and Qwen2 `Split` patterns,
/// recognised by their exact text. Any other pattern is refused when loading (`TokenizerError.unsupported`):
/// a regex engine other than Oniguruma could split differently.
enum SplitPattern {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxDigits}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case llama3(maxDigits: Int)

    static let gpt2Source = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Source =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Source =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    init?(source: String) {
        let s = source.unicodeScalars
        if s.elementsEqual(SplitPattern.gpt2Source.unicodeScalars) { self = .gpt2 }
        else if s.elementsEqual(SplitPattern.llama3Source.unicodeScalars) { self = .llama3(maxDigits: 3) }
        else if s.elementsEqual(SplitPattern.qwen2Source.unicodeScalars) { self = .llama3(maxDigits: 1) }
        else { return nil }
    }

    /// Calls `emit(start, end)` for every match, left to right (matches of these patterns cover the text).
    func forEachMatch(_ s: UnsafeBufferPointer<UInt32>, _ emit: (Int, Int) -> Void) {
        let n = s.count
        var i = 0
        while i < n {
            let end: Int
            switch self {
            case .gpt2: end = SplitPattern.matchGPT2(s, i, n)
            case let .llama3(maxDigits): end = SplitPattern.matchLlama3(s, i, n, maxDigits)
            }
            emit(i, end)
            i = end
        }
    }

    @inline(__always) private static func cls(_ v: UInt32) -> UInt8 {
        v < 0x80 ? asciiClass[Int(v)] : CharClass.of(v)
    }
    private static let asciiClass: [UInt8] = (0..<128).map { CharClass.of(UInt32($0)) }

    /// `[^\s\p{L}\p{N}]`
    @inline(__always) private static func isOther(_ c: UInt8) -> Bool { c == 0 }

    /// Whitespace alternatives shared by both patterns, at a whitespace char: `\s+(?!\S)|\s+`
    /// (and, when `newlines`, `\s*[\r\n]+` first).
    @inline(__always) private static func matchSpace(_ s: UnsafeBufferPointer<UInt32>, _ i: Int, _ n: Int, newlines: Bool) -> Int {
        var j = i
        var lastNewline = -1
        while j < n, cls(s[j]) & CharClass.space != 0 {
            if s[j] == 0x0A || s[j] == 0x0D { lastNewline = j }
            j += 1
        }
        if newlines && lastNewline >= 0 { return lastNewline + 1 }
        if j == n { return n }
        if j - 1 > i { return j - 1 }
        return j
    }

    private static func matchGPT2(_ s: UnsafeBufferPointer<UInt32>, _ i: Int, _ n: Int) -> Int {
        let c = s[i]
        if c == 0x27, i + 1 < n {  // 's|'t|'re|'ve|'m|'ll|'d
            let a = s[i + 1]
            if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return i + 2 }
            if i + 2 < n {
                let b = s[i + 2]
                if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) { return i + 3 }
            }
        }
        var start = i
        var k = cls(c)
        if c == 0x20, i + 1 < n {
            let k1 = cls(s[i + 1])
            if k1 & (CharClass.letter | CharClass.number) != 0 || isOther(k1) { start = i + 1; k = k1 }
        }
        if k & CharClass.letter != 0 {
            var j = start + 1
            while j < n, cls(s[j]) & CharClass.letter != 0 { j += 1 }
            return j
        }
        if k & CharClass.number != 0 {
            var j = start + 1
            while j < n, cls(s[j]) & CharClass.number != 0 { j += 1 }
            return j
        }
        if isOther(k) {
            var j = start + 1
            while j < n, isOther(cls(s[j])) { j += 1 }
            return j
        }
        return matchSpace(s, i, n, newlines: false)
    }

    /// ASCII letters and U+017F (long s, which Oniguruma case-folds to "s").
    @inline(__always) private static func folds(_ v: UInt32, to lower: UInt32) -> Bool {
        v == lower || v == lower - 32 || (lower == 0x73 && v == 0x17F)
    }

    private static func matchLlama3(_ s: UnsafeBufferPointer<UInt32>, _ i: Int, _ n: Int, _ maxDigits: Int) -> Int {
        let c = s[i]
        if c == 0x27, i + 1 < n {  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            let a = s[i + 1]
            if folds(a, to: 0x73) || folds(a, to: 0x74) { return i + 2 }
            if i + 2 < n {
                let b = s[i + 2]
                if (folds(a, to: 0x72) && folds(b, to: 0x65)) || (folds(a, to: 0x76) && folds(b, to: 0x65)) { return i + 3 }
            }
            if folds(a, to: 0x6D) { return i + 2 }
            if i + 2 < n, folds(a, to: 0x6C), folds(s[i + 2], to: 0x6C) { return i + 3 }
            if folds(a, to: 0x64) { return i + 2 }
        }
        let k = cls(c)
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if k & CharClass.letter != 0 {
            var j = i + 1
            while j < n, cls(s[j]) & CharClass.letter != 0 { j += 1 }
            return j
        }
        if k & CharClass.number == 0, c != 0x0A, c != 0x0D, i + 1 < n, cls(s[i + 1]) & CharClass.letter != 0 {
            var j = i + 2
            while j < n, cls(s[j]) & CharClass.letter != 0 { j += 1 }
            return j
        }
        // \p{N}{1,maxDigits}
        if k & CharClass.number != 0 {
            var j = i + 1
            while j < n, j - i < maxDigits, cls(s[j]) & CharClass.number != 0 { j += 1 }
            return j
        }
        //  ?[^\s\p{L}\p{N}]+[\r\n]*
        var start = -1
        if isOther(k) { start = i } else if c == 0x20, i + 1 < n, isOther(cls(s[i + 1])) { start = i + 1 }
        if start >= 0 {
            var j = start + 1
            while j < n, isOther(cls(s[j])) { j += 1 }
            while j < n, s[j] == 0x0A || s[j] == 0x0D { j += 1 }
            return j
        }
        return matchSpace(s, i, n, newlines: true)
    }
}
