import Foundation

/// A position in the template source (1-based line and column).
public struct JinjaPosition: Sendable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public var description: String { "\(line):\(column)" }
}

enum JinjaTokenKind: Equatable {
    case text(String)
    case varBegin, varEnd, blockBegin, blockEnd
    case name(String)
    case string(String)
    case int(Int)
    case float(Double)
    case op(String)
    case eof
}

struct JinjaToken {
    var kind: JinjaTokenKind
    var pos: JinjaPosition
}

/// Splits a template into text and tag tokens the way jinja2's lexer does with transformers' settings:
/// `trim_blocks=True` (drop the first newline after a block or comment tag), `lstrip_blocks=True`
/// (drop spaces and tabs before a block or comment tag that starts its line), `-` markers (strip all
/// whitespace on that side), `+` markers (disable lstrip), newlines normalized to "\n" and a single
/// trailing newline removed (`keep_trailing_newline=False`).
struct JinjaLexer {
    var trimBlocks = true
    var lstripBlocks = true

    private var src: [Unicode.Scalar] = []
    private var i = 0
    private var line = 1
    private var col = 1
    private var tokens: [JinjaToken] = []

    init(trimBlocks: Bool = true, lstripBlocks: Bool = true) {
        self.trimBlocks = trimBlocks
        self.lstripBlocks = lstripBlocks
    }

    static func normalize(_ source: String) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(source.unicodeScalars.count)
        var it = Array(source.unicodeScalars)
        var k = 0
        while k < it.count {
            let c = it[k]
            if c == "\r" {
                out.append("\n")
                if k + 1 < it.count, it[k + 1] == "\n" { k += 1 }
            } else {
                out.append(c)
            }
            k += 1
        }
        if out.last == "\n" { out.removeLast() }
        it.removeAll()
        return out
    }

    mutating func tokenize(_ source: String) throws -> [JinjaToken] {
        src = JinjaLexer.normalize(source)
        i = 0; line = 1; col = 1; tokens = []
        var lineStarting = true  // the previous match ended with a newline (or we're at the start)
        while i < src.count {
            // Find the next tag opener.
            var j = i
            var opener: Unicode.Scalar? = nil
            while j + 1 < src.count {
                if src[j] == "{", src[j + 1] == "{" || src[j + 1] == "%" || src[j + 1] == "#" {
                    opener = src[j + 1]; break
                }
                j += 1
            }
            guard let open = opener else {
                emitText(Array(src[i...]), at: pos)
                advance(to: src.count)
                break
            }
            var text = Array(src[i..<j])
            let textPos = pos
            let marker: Unicode.Scalar? = j + 2 < src.count ? src[j + 2] : nil
            if marker == "-" {
                while let last = text.last, isSpace(last) { text.removeLast() }
            } else if marker != "+", lstripBlocks, open != "{" {
                // lstrip_blocks: strip spaces/tabs between the line start and the tag.
                let lastNL = text.lastIndex(of: "\n")
                let lPos = lastNL.map { $0 + 1 } ?? 0
                if lPos > 0 || lineStarting {
                    if text[lPos...].allSatisfy({ isSpace($0) }) { text.removeSubrange(lPos...) }
                }
            }
            emitText(text, at: textPos)
            advance(to: j)
            let tagPos = pos
            advance(to: j + 2 + ((marker == "-" || marker == "+") ? 1 : 0))
            switch open {
            case "#":
                // Comment: find "#}".
                var k = i
                while k + 1 < src.count, !(src[k] == "#" && src[k + 1] == "}") { k += 1 }
                guard k + 1 < src.count else {
                    throw ChatTemplateError(.syntax, "unterminated comment", tagPos)
                }
                let stripAfter = k > i && src[k - 1] == "-"
                advance(to: k + 2)
                lineStarting = afterTag(stripAfter: stripAfter, trim: trimBlocks)
            case "{":
                tokens.append(JinjaToken(kind: .varBegin, pos: tagPos))
                let stripAfter = try lexExpression(closer: "}", tagPos: tagPos)
                lineStarting = afterTag(stripAfter: stripAfter, trim: false)
            default:
                // Raw blocks hold template text verbatim: handle them here.
                if let rawEnd = try rawBlock(tagPos: tagPos) {
                    lineStarting = rawEnd
                    continue
                }
                tokens.append(JinjaToken(kind: .blockBegin, pos: tagPos))
                let stripAfter = try lexExpression(closer: "%", tagPos: tagPos)
                lineStarting = afterTag(stripAfter: stripAfter, trim: trimBlocks)
            }
        }
        tokens.append(JinjaToken(kind: .eof, pos: pos))
        return tokens
    }

    private var pos: JinjaPosition { JinjaPosition(line: line, column: col) }

    private mutating func advance(to k: Int) {
        while i < k {
            if src[i] == "\n" { line += 1; col = 1 } else { col += 1 }
            i += 1
        }
    }

    private func isSpace(_ c: Unicode.Scalar) -> Bool {
        c == " " || c == "\t" || c == "\n" || c == "\r" || c == "\u{0B}" || c == "\u{0C}"
    }

    private mutating func emitText(_ text: [Unicode.Scalar], at p: JinjaPosition) {
        guard !text.isEmpty else { return }
        var s = String.UnicodeScalarView()
        s.append(contentsOf: text)
        tokens.append(JinjaToken(kind: .text(String(s)), pos: p))
    }

    /// After a closing delimiter: `-` strips all following whitespace, trim_blocks one newline.
    /// Returns whether the consumed match ended with a newline (jinja2's `line_starting`).
    private mutating func afterTag(stripAfter: Bool, trim: Bool) -> Bool {
        if stripAfter {
            var k = i
            while k < src.count, isSpace(src[k]) { k += 1 }
            let ended = k > i && src[k - 1] == "\n"
            advance(to: k)
            return ended
        }
        if trim, i < src.count, src[i] == "\n" {
            advance(to: i + 1)
            return true
        }
        return false
    }

    /// `{% raw %}...{% endraw %}`: emits the body as text. Returns nil when the tag isn't `raw`.
    private mutating func rawBlock(tagPos: JinjaPosition) throws -> Bool? {
        var k = i
        while k < src.count, src[k] == " " || src[k] == "\t" { k += 1 }
        guard k + 3 <= src.count, String(String.UnicodeScalarView(src[k..<k + 3])) == "raw" else { return nil }
        k += 3
        while k < src.count, src[k] == " " || src[k] == "\t" { k += 1 }
        var stripOpen = false
        if k < src.count, src[k] == "-" { stripOpen = true; k += 1 }
        guard k + 1 < src.count, src[k] == "%", src[k + 1] == "}" else { return nil }
        k += 2
        _ = stripOpen
        // Find {% endraw %}
        var m = k
        while m + 1 < src.count {
            if src[m] == "{", src[m + 1] == "%" {
                var n = m + 2
                var dash = false
                if n < src.count, src[n] == "-" { dash = true; n += 1 }
                while n < src.count, src[n] == " " || src[n] == "\t" { n += 1 }
                if n + 6 <= src.count, String(String.UnicodeScalarView(src[n..<n + 6])) == "endraw" {
                    n += 6
                    while n < src.count, src[n] == " " || src[n] == "\t" { n += 1 }
                    var dashAfter = false
                    if n < src.count, src[n] == "-" { dashAfter = true; n += 1 }
                    if n + 1 < src.count, src[n] == "%", src[n + 1] == "}" {
                        var body = Array(src[k..<m])
                        if dash { while let l = body.last, isSpace(l) { body.removeLast() } }
                        if stripOpen { while let f = body.first, isSpace(f) { body.removeFirst() } }
                        emitText(body, at: tagPos)
                        advance(to: n + 2)
                        return afterTag(stripAfter: dashAfter, trim: trimBlocks)
                    }
                }
            }
            m += 1
        }
        throw ChatTemplateError(.syntax, "missing {% endraw %}", tagPos)
    }

    /// Lexes expression tokens until the closing `}}` / `%}` (outside brackets). Returns whether it was `-}}`/`-%}`.
    private mutating func lexExpression(closer: Unicode.Scalar, tagPos: JinjaPosition) throws -> Bool {
        var depth = 0
        while true {
            while i < src.count, isSpace(src[i]) { advance(to: i + 1) }
            guard i < src.count else {
                throw ChatTemplateError(.syntax, "unterminated tag (missing '\(closer)}')", tagPos)
            }
            let c = src[i]
            let p = pos
            let next: Unicode.Scalar? = i + 1 < src.count ? src[i + 1] : nil
            let next2: Unicode.Scalar? = i + 2 < src.count ? src[i + 2] : nil
            if depth == 0 {
                if c == closer, next == "}" {
                    advance(to: i + 2)
                    tokens.append(JinjaToken(kind: closer == "}" ? .varEnd : .blockEnd, pos: p))
                    return false
                }
                if c == "-", next == closer, next2 == "}" {
                    advance(to: i + 3)
                    tokens.append(JinjaToken(kind: closer == "}" ? .varEnd : .blockEnd, pos: p))
                    return true
                }
                if c == "+", next == closer, next2 == "}" {  // `+%}` disables trim_blocks for this tag
                    advance(to: i + 3)
                    tokens.append(JinjaToken(kind: closer == "}" ? .varEnd : .blockEnd, pos: p))
                    return false
                }
            }
            if c == "\"" || c == "'" {
                tokens.append(JinjaToken(kind: .string(try lexString(quote: c, start: p)), pos: p))
                continue
            }
            if c.properties.isAlphabetic || c == "_" {
                var k = i
                while k < src.count, src[k].properties.isAlphabetic || src[k] == "_" || ("0"..."9").contains(src[k]) { k += 1 }
                let name = String(String.UnicodeScalarView(src[i..<k]))
                advance(to: k)
                tokens.append(JinjaToken(kind: .name(name), pos: p))
                continue
            }
            if ("0"..."9").contains(c) {
                var k = i
                var isFloat = false
                while k < src.count, ("0"..."9").contains(src[k]) || src[k] == "_" { k += 1 }
                if k + 1 < src.count, src[k] == ".", ("0"..."9").contains(src[k + 1]) {
                    isFloat = true
                    k += 1
                    while k < src.count, ("0"..."9").contains(src[k]) || src[k] == "_" { k += 1 }
                }
                if k < src.count, src[k] == "e" || src[k] == "E" {
                    var m = k + 1
                    if m < src.count, src[m] == "+" || src[m] == "-" { m += 1 }
                    if m < src.count, ("0"..."9").contains(src[m]) {
                        isFloat = true
                        k = m
                        while k < src.count, ("0"..."9").contains(src[k]) { k += 1 }
                    }
                }
                let text = String(String.UnicodeScalarView(src[i..<k])).replacingOccurrences(of: "_", with: "")
                advance(to: k)
                if isFloat {
                    tokens.append(JinjaToken(kind: .float(Double(text) ?? 0), pos: p))
                } else {
                    guard let v = Int(text) else { throw ChatTemplateError(.syntax, "integer literal too large", p) }
                    tokens.append(JinjaToken(kind: .int(v), pos: p))
                }
                continue
            }
            let two = next.map { String(c) + String($0) } ?? ""
            if ["//", "**", "==", "!=", "<=", ">="].contains(two) {
                advance(to: i + 2)
                tokens.append(JinjaToken(kind: .op(two), pos: p))
                continue
            }
            let one = String(c)
            if "+-*/%~<>=()[]{},.:|".contains(one) {
                if "([{".contains(one) { depth += 1 }
                if ")]}".contains(one) { depth = max(0, depth - 1) }
                advance(to: i + 1)
                tokens.append(JinjaToken(kind: .op(one), pos: p))
                continue
            }
            throw ChatTemplateError(.syntax, "unexpected character '\(one)'", p)
        }
    }

    /// Python string literal escapes (jinja2 decodes them the same way).
    private mutating func lexString(quote: Unicode.Scalar, start: JinjaPosition) throws -> String {
        advance(to: i + 1)
        var out = String.UnicodeScalarView()
        while true {
            guard i < src.count else { throw ChatTemplateError(.syntax, "unterminated string literal", start) }
            let c = src[i]
            if c == quote { advance(to: i + 1); break }
            if c == "\\", i + 1 < src.count {
                let e = src[i + 1]
                advance(to: i + 2)
                switch e {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "\\": out.append("\\")
                case "'": out.append("'")
                case "\"": out.append("\"")
                case "0": out.append("\0")
                case "a": out.append("\u{07}")
                case "b": out.append("\u{08}")
                case "f": out.append("\u{0C}")
                case "v": out.append("\u{0B}")
                case "\n": break  // line continuation
                case "x", "u", "U":
                    let n = e == "x" ? 2 : (e == "u" ? 4 : 8)
                    guard i + n <= src.count,
                          let v = UInt32(String(String.UnicodeScalarView(src[i..<i + n])), radix: 16),
                          let s = Unicode.Scalar(v)
                    else { throw ChatTemplateError(.syntax, "bad \\\(e) escape in string literal", start) }
                    out.append(s)
                    advance(to: i + n)
                default:
                    out.append("\\"); out.append(e)  // Python keeps unknown escapes verbatim
                }
                continue
            }
            out.append(c)
            advance(to: i + 1)
        }
        return String(out)
    }
}
