import Foundation

/// A minimal, exact JSON reader for tokenizer files.
///
/// Objects keep their members in file order as (key, value) pairs: a Swift `[String: Any]` would merge keys
/// that are canonically equivalent (`"é"` and `"e\u{301}"` are equal Swift Strings), and tokenizer vocabularies
/// can hold both. Strings keep their exact Unicode scalars.
indirect enum TokenizerJSON {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([TokenizerJSON])
    case object([(String, TokenizerJSON)])

    subscript(key: String) -> TokenizerJSON? {
        guard case let .object(members) = self else { return nil }
        for (k, v) in members where k.unicodeScalars.elementsEqual(key.unicodeScalars) { return v }
        return nil
    }

    var isNull: Bool { if case .null = self { return true } else { return false } }
    var stringValue: String? { if case let .string(s) = self { return s } else { return nil } }
    var boolValue: Bool? { if case let .bool(b) = self { return b } else { return nil } }
    var intValue: Int? {
        if case let .number(d) = self, d == d.rounded(), abs(d) < 9e15 { return Int(d) }
        return nil
    }
    var arrayValue: [TokenizerJSON]? { if case let .array(a) = self { return a } else { return nil } }
    var objectValue: [(String, TokenizerJSON)]? { if case let .object(o) = self { return o } else { return nil } }

    static func parse(_ data: Data, file: String) throws -> TokenizerJSON {
        var parser = Parser(bytes: [UInt8](data), file: file)
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        if parser.pos != parser.bytes.count { throw parser.error("trailing characters") }
        return value
    }

    private struct Parser {
        let bytes: [UInt8]
        let file: String
        var pos = 0

        init(bytes: [UInt8], file: String) {
            self.bytes = bytes
            self.file = file
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { pos = 3 }
        }

        func error(_ reason: String) -> TokenizerError { .invalidJSON(file: file, offset: pos, reason: reason) }

        mutating func skipWhitespace() {
            while pos < bytes.count, bytes[pos] == 0x20 || bytes[pos] == 0x0A || bytes[pos] == 0x0D || bytes[pos] == 0x09 {
                pos += 1
            }
        }

        mutating func expect(_ literal: String, _ value: TokenizerJSON) throws -> TokenizerJSON {
            let lit = Array(literal.utf8)
            guard pos + lit.count <= bytes.count, Array(bytes[pos..<pos + lit.count]) == lit else {
                throw error("unexpected character")
            }
            pos += lit.count
            return value
        }

        mutating func parseValue(depth: Int) throws -> TokenizerJSON {
            guard depth < 512 else { throw error("nesting too deep") }
            guard pos < bytes.count else { throw error("unexpected end") }
            switch bytes[pos] {
            case UInt8(ascii: "{"):
                pos += 1
                var members: [(String, TokenizerJSON)] = []
                skipWhitespace()
                if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
                while true {
                    skipWhitespace()
                    guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw error("expected a key") }
                    let key = try parseString()
                    skipWhitespace()
                    guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw error("expected ':'") }
                    pos += 1
                    skipWhitespace()
                    members.append((key, try parseValue(depth: depth + 1)))
                    skipWhitespace()
                    guard pos < bytes.count else { throw error("unexpected end") }
                    if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                    if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
                    throw error("expected ',' or '}'")
                }
            case UInt8(ascii: "["):
                pos += 1
                var items: [TokenizerJSON] = []
                skipWhitespace()
                if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
                while true {
                    skipWhitespace()
                    items.append(try parseValue(depth: depth + 1))
                    skipWhitespace()
                    guard pos < bytes.count else { throw error("unexpected end") }
                    if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                    if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
                    throw error("expected ',' or ']'")
                }
            case UInt8(ascii: "\""):
                return .string(try parseString())
            case UInt8(ascii: "t"): return try expect("true", .bool(true))
            case UInt8(ascii: "f"): return try expect("false", .bool(false))
            case UInt8(ascii: "n"): return try expect("null", .null)
            default:
                let start = pos
                while pos < bytes.count, let c = Optional(bytes[pos]),
                      (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+")
                        || c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                    pos += 1
                }
                guard pos > start, let d = Double(String(decoding: bytes[start..<pos], as: UTF8.self)) else {
                    pos = start
                    throw error("unexpected character")
                }
                return .number(d)
            }
        }

        mutating func hex4() throws -> UInt32 {
            guard pos + 4 <= bytes.count else { throw error("bad \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[pos]
                let d: UInt32
                switch c {
                case 0x30...0x39: d = UInt32(c - 0x30)
                case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                default: throw error("bad \\u escape")
                }
                v = v << 4 | d
                pos += 1
            }
            return v
        }

        mutating func parseString() throws -> String {
            pos += 1  // opening quote
            var out: [UInt8] = []
            var runStart = pos
            while true {
                guard pos < bytes.count else { throw error("unterminated string") }
                let c = bytes[pos]
                if c == UInt8(ascii: "\"") {
                    out.append(contentsOf: bytes[runStart..<pos])
                    pos += 1
                    return String(decoding: out, as: UTF8.self)
                }
                if c != UInt8(ascii: "\\") { pos += 1; continue }
                out.append(contentsOf: bytes[runStart..<pos])
                pos += 1
                guard pos < bytes.count else { throw error("unterminated string") }
                let e = bytes[pos]
                pos += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var v = try hex4()
                    if v >= 0xD800 && v < 0xDC00, pos + 6 <= bytes.count, bytes[pos] == UInt8(ascii: "\\"),
                       bytes[pos + 1] == UInt8(ascii: "u") {
                        let save = pos
                        pos += 2
                        let lo = try hex4()
                        if lo >= 0xDC00 && lo < 0xE000 {
                            v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00)
                        } else {
                            pos = save
                        }
                    }
                    let scalar = Unicode.Scalar(v) ?? "\u{FFFD}"
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                default: throw error("bad escape")
                }
                runStart = pos
            }
        }
    }
}

extension TokenizerJSON {
    /// "<s>" or {"content": "<s>", ...} (the two forms of special tokens in tokenizer_config.json).
    var tokenContent: String? {
        if let s = stringValue { return s }
        return self["content"]?.stringValue
    }
}

/// Unicode scalars of a string, as the pipeline works on them (exact, no normalization).
@inline(__always) func scalarValues(_ s: String) -> [UInt32] { s.unicodeScalars.map { $0.value } }

/// A string from scalar values (invalid values become U+FFFD).
func stringFromScalars<S: Sequence>(_ values: S) -> String where S.Element == UInt32 {
    var view = String.UnicodeScalarView()
    for v in values { view.append(Unicode.Scalar(v) ?? "\u{FFFD}") }
    return String(view)
}

/// UTF-8 bytes of scalar values.
func utf8Bytes<S: Sequence>(_ values: S, into out: inout [UInt8]) where S.Element == UInt32 {
    for v in values {
        if v < 0x80 {
            out.append(UInt8(v))
        } else if v < 0x800 {
            out.append(UInt8(0xC0 | (v >> 6))); out.append(UInt8(0x80 | (v & 0x3F)))
        } else if v < 0x10000 {
            out.append(UInt8(0xE0 | (v >> 12))); out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (v & 0x3F)))
        } else {
            out.append(UInt8(0xF0 | (v >> 18))); out.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
            out.append(UInt8(0x80 | ((v >> 6) & 0x3F))); out.append(UInt8(0x80 | (v & 0x3F)))
        }
    }
}

/// Scalars of UTF-8 bytes, invalid sequences replaced by U+FFFD like Rust's `String::from_utf8_lossy`
/// (one replacement per maximal invalid subpart); `nil` in strict mode when the bytes are not valid UTF-8.
func scalarsFromUTF8(_ bytes: [UInt8], lossy: Bool) -> [UInt32]? {
    var out: [UInt32] = []
    out.reserveCapacity(bytes.count)
    var i = 0
    let n = bytes.count
    while i < n {
        let b0 = bytes[i]
        if b0 < 0x80 { out.append(UInt32(b0)); i += 1; continue }
        var need = 0
        var v: UInt32 = 0
        var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
        switch b0 {
        case 0xC2...0xDF: need = 1; v = UInt32(b0 & 0x1F)
        case 0xE0: need = 2; v = 0; lo = 0xA0
        case 0xE1...0xEC, 0xEE, 0xEF: need = 2; v = UInt32(b0 & 0x0F)
        case 0xED: need = 2; v = 0x0D; hi = 0x9F
        case 0xF0: need = 3; v = 0; lo = 0x90
        case 0xF1...0xF3: need = 3; v = UInt32(b0 & 0x07)
        case 0xF4: need = 3; v = 4; hi = 0x8F
        default:
            if !lossy { return nil }
            out.append(0xFFFD); i += 1; continue
        }
        var j = i + 1
        var ok = true
        for k in 0..<need {
            guard j < n else { ok = false; break }
            let b = bytes[j]
            let l: UInt8 = k == 0 ? lo : 0x80, h: UInt8 = k == 0 ? hi : 0xBF
            guard b >= l && b <= h else { ok = false; break }
            v = v << 6 | UInt32(b & 0x3F)
            j += 1
        }
        if ok {
            out.append(v); i = j
        } else {
            if !lossy { return nil }
            out.append(0xFFFD); i = j  // the maximal subpart [i, j) is replaced by one U+FFFD
        }
    }
    return out
}
