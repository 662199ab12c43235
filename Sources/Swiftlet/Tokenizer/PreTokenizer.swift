/// A piece of text flowing through the pipeline, with whether it starts at offset 0 of the original text
/// (the Metaspace `prepend_scheme: "first"` rule needs it).
struct TextPiece {
    var scalars: [UInt32]
    var atStart: Bool
}

enum PrependScheme: Equatable { case always, first, never }

enum SplitBehavior { case removed, isolated, mergedWithPrevious, mergedWithNext }

/// `tokenizer.json` pre-tokenizers that Swiftlet supports.
indirect enum PreTokenizer {
    case sequence([PreTokenizer])
    case metaspace(replacement: UInt32, prependScheme: PrependScheme, split: Bool)
    /// ByteLevel: optional prefix space, optional GPT-2 regex split, then every UTF-8 byte becomes its char.
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case splitRegex(SplitPattern, SplitBehavior)
    case splitString([UInt32], SplitBehavior)

    static func parse(_ json: TokenizerJSON, file: String, field: String) throws -> PreTokenizer? {
        if json.isNull { return nil }
        guard let type = json["type"]?.stringValue else {
            throw TokenizerError.invalidField(file: file, field: "\(field).type", reason: "missing")
        }
        switch type {
        case "Sequence":
            guard let items = json["pretokenizers"]?.arrayValue else {
                throw TokenizerError.invalidField(file: file, field: "\(field).pretokenizers", reason: "expected a list")
            }
            return .sequence(try items.enumerated().compactMap {
                try parse($0.element, file: file, field: "\(field).pretokenizers[\($0.offset)]")
            })
        case "Metaspace":
            let rep = json["replacement"]?.stringValue ?? json["str_rep"]?.stringValue ?? "\u{2581}"
            let r = scalarValues(rep)
            guard r.count == 1 else {
                throw TokenizerError.invalidField(file: file, field: "\(field).replacement", reason: "expected one character")
            }
            return .metaspace(replacement: r[0], prependScheme: try parsePrependScheme(json, file: file, field: field),
                              split: json["split"]?.boolValue ?? true)
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: json["add_prefix_space"]?.boolValue ?? true,
                              useRegex: json["use_regex"]?.boolValue ?? true)
        case "Split":
            let behaviorName = json["behavior"]?.stringValue ?? ""
            let behavior: SplitBehavior
            switch behaviorName {
            case "Removed": behavior = .removed
            case "Isolated": behavior = .isolated
            case "MergedWithPrevious": behavior = .mergedWithPrevious
            case "MergedWithNext": behavior = .mergedWithNext
            default:
                throw TokenizerError.unsupported(file: file, field: "\(field).behavior", value: "\"\(behaviorName)\"")
            }
            if json["invert"]?.boolValue == true {
                throw TokenizerError.unsupported(file: file, field: "\(field).invert", value: "true")
            }
            if let regex = json["pattern"]?["Regex"]?.stringValue {
                guard let p = SplitPattern(source: regex) else {
                    throw TokenizerError.unsupported(file: file, field: "\(field).pattern.Regex", value: "\"\(regex)\"")
                }
                return .splitRegex(p, behavior)
            }
            if let literal = json["pattern"]?["String"]?.stringValue {
                return .splitString(scalarValues(literal), behavior)
            }
            throw TokenizerError.invalidField(file: file, field: "\(field).pattern", reason: "expected {\"Regex\"} or {\"String\"}")
        default:
            throw TokenizerError.unsupported(file: file, field: "\(field).type", value: "\"\(type)\"")
        }
    }

    static func parsePrependScheme(_ json: TokenizerJSON, file: String, field: String) throws -> PrependScheme {
        if let s = json["prepend_scheme"]?.stringValue {
            switch s {
            case "always": return .always
            case "first": return .first
            case "never": return .never
            default: throw TokenizerError.unsupported(file: file, field: "\(field).prepend_scheme", value: "\"\(s)\"")
            }
        }
        // older files: add_prefix_space
        return (json["add_prefix_space"]?.boolValue ?? true) ? .always : .never
    }

    /// Applies this pre-tokenizer to every piece; empty pieces are dropped (as `tokenizers` does).
    func apply(_ pieces: [TextPiece]) -> [TextPiece] {
        var out: [TextPiece] = []
        out.reserveCapacity(pieces.count)
        for p in pieces { apply(p, into: &out) }
        return out
    }

    func apply(_ piece: TextPiece, into out: inout [TextPiece]) {
        switch self {
        case let .sequence(items):
            var cur = [piece]
            for item in items { cur = item.apply(cur) }
            out.append(contentsOf: cur)
        case let .metaspace(replacement, scheme, split):
            var s = piece.scalars
            for i in s.indices where s[i] == 0x20 { s[i] = replacement }
            if !s.isEmpty && s[0] != replacement && (scheme == .always || (scheme == .first && piece.atStart)) {
                s.insert(replacement, at: 0)
            }
            if split {
                PreTokenizer.split(TextPiece(scalars: s, atStart: piece.atStart), on: [replacement],
                                   behavior: .mergedWithNext, into: &out)
            } else if !s.isEmpty {
                out.append(TextPiece(scalars: s, atStart: piece.atStart))
            }
        case let .byteLevel(addPrefixSpace, useRegex):
            var s = piece.scalars
            if addPrefixSpace && !s.isEmpty && s[0] != 0x20 { s.insert(0x20, at: 0) }
            if useRegex {
                var parts: [TextPiece] = []
                PreTokenizer.split(TextPiece(scalars: s, atStart: piece.atStart), pattern: .gpt2, behavior: .isolated, into: &parts)
                for p in parts { out.append(PreTokenizer.byteLevelMapped(p)) }
            } else if !s.isEmpty {
                out.append(PreTokenizer.byteLevelMapped(TextPiece(scalars: s, atStart: piece.atStart)))
            }
        case let .splitRegex(pattern, behavior):
            PreTokenizer.split(piece, pattern: pattern, behavior: behavior, into: &out)
        case let .splitString(literal, behavior):
            PreTokenizer.split(piece, on: literal, behavior: behavior, into: &out)
        }
    }

    static func byteLevelMapped(_ p: TextPiece) -> TextPiece {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(p.scalars.count * 2)
        utf8Bytes(p.scalars, into: &bytes)
        let table = ByteLevelMap.byteToChar
        return TextPiece(scalars: bytes.map { table[Int($0)] }, atStart: p.atStart)
    }

    /// Split a piece given the list of matches (start, end), with the `tokenizers` delimiter behaviors.
    static func emitSplits(_ piece: TextPiece, _ matches: [(Int, Int)], _ behavior: SplitBehavior, into out: inout [TextPiece]) {
        let s = piece.scalars
        func push(_ a: Int, _ b: Int) {
            if b > a { out.append(TextPiece(scalars: Array(s[a..<b]), atStart: piece.atStart && a == 0)) }
        }
        switch behavior {
        case .isolated, .removed:
            var prev = 0
            for (a, b) in matches {
                push(prev, a)
                if behavior == .isolated { push(a, b) }
                prev = b
            }
            push(prev, s.count)
        case .mergedWithPrevious:
            var prev = 0
            for (_, b) in matches { push(prev, b); prev = b }
            push(prev, s.count)
        case .mergedWithNext:
            var prev = 0
            for (a, _) in matches { push(prev, a); prev = a }
            push(prev, s.count)
        }
    }

    static func split(_ piece: TextPiece, pattern: SplitPattern, behavior: SplitBehavior, into out: inout [TextPiece]) {
        if piece.scalars.isEmpty { return }
        if behavior == .isolated {
            // fast path: the supported patterns' matches cover the whole text
            piece.scalars.withUnsafeBufferPointer { buf in
                pattern.forEachMatch(buf) { a, b in
                    out.append(TextPiece(scalars: Array(buf[a..<b]), atStart: piece.atStart && a == 0))
                }
            }
            return
        }
        var matches: [(Int, Int)] = []
        piece.scalars.withUnsafeBufferPointer { buf in pattern.forEachMatch(buf) { matches.append(($0, $1)) } }
        emitSplits(piece, matches, behavior, into: &out)
    }

    static func split(_ piece: TextPiece, on literal: [UInt32], behavior: SplitBehavior, into out: inout [TextPiece]) {
        let s = piece.scalars
        if s.isEmpty { return }
        var matches: [(Int, Int)] = []
        if !literal.isEmpty {
            var i = 0
            while i + literal.count <= s.count {
                if s[i] == literal[0] && (literal.count == 1 || s[i..<i + literal.count].elementsEqual(literal)) {
                    matches.append((i, i + literal.count)); i += literal.count
                } else { i += 1 }
            }
        }
        emitSplits(piece, matches, behavior, into: &out)
    }
}
