import Foundation

/// A value as a Jinja chat template sees it: Python's JSON-like types plus Jinja's `Undefined`,
/// namespaces and callables. Dictionaries keep insertion order, like Python's.
public enum JinjaValue: @unchecked Sendable {
    /// jinja2's default `Undefined`: falsy, renders as "", errors on attribute access and arithmetic.
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JinjaValue])
    case object(JinjaObject)
    case namespace(JinjaNamespace)
    case function(JinjaFunction)

    public static func dict(_ pairs: [(String, JinjaValue)]) -> JinjaValue { .object(JinjaObject(pairs)) }
}

/// An insertion-ordered `[String: JinjaValue]` (Python dict semantics for iteration and `tojson`).
public struct JinjaObject: @unchecked Sendable {
    public private(set) var keys: [String] = []
    public private(set) var storage: [String: JinjaValue] = [:]

    public init() {}
    public init(_ pairs: [(String, JinjaValue)]) { for (k, v) in pairs { self[k] = v } }

    public subscript(key: String) -> JinjaValue? {
        get { storage[key] }
        set {
            if let v = newValue {
                if storage.updateValue(v, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }
    public var count: Int { keys.count }
    public var pairs: [(String, JinjaValue)] { keys.map { ($0, storage[$0]!) } }
}

/// `namespace(...)`: the one mutable object templates may assign attributes on.
public final class JinjaNamespace: @unchecked Sendable {
    public var attributes: JinjaObject
    public init(_ attributes: JinjaObject = JinjaObject()) { self.attributes = attributes }
}

/// A callable: built-in globals (`raise_exception`, `range`, ...), bound methods, macros.
public final class JinjaFunction: @unchecked Sendable {
    public typealias Body = (_ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue
    public let name: String
    let body: Body
    public init(_ name: String, _ body: @escaping Body) { self.name = name; self.body = body }
    public func call(_ args: [JinjaValue], _ kwargs: [(String, JinjaValue)] = []) throws -> JinjaValue {
        try body(args, kwargs)
    }
}

extension JinjaValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByFloatLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(arrayLiteral elements: JinjaValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JinjaValue)...) { self = .object(JinjaObject(elements)) }
}

extension JinjaValue {
    public var isUndefined: Bool { if case .undefined = self { return true }; return false }
    public var isNone: Bool { if case .none = self { return true }; return false }

    /// Python truthiness.
    public var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .array(let a): return !a.isEmpty
        case .object(let o): return o.count > 0
        case .namespace, .function: return true
        }
    }

    /// Python's type name, for error messages.
    public var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .array: return "list"
        case .object: return "dict"
        case .namespace: return "Namespace"
        case .function: return "function"
        }
    }

    /// Python `str(value)` (Undefined renders as "").
    public var pythonStr: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return pythonRepr
        }
    }

    /// Python `repr(value)`.
    public var pythonRepr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return JinjaValue.pythonFloatRepr(d)
        case .string(let s): return JinjaValue.pythonStringRepr(s)
        case .array(let a): return "[" + a.map(\.pythonRepr).joined(separator: ", ") + "]"
        case .object(let o):
            return "{" + o.pairs.map { JinjaValue.pythonStringRepr($0.0) + ": " + $0.1.pythonRepr }.joined(separator: ", ") + "}"
        case .namespace(let n):
            return "<Namespace " + n.attributes.pairs.map { "\($0.0)=\($0.1.pythonRepr)" }.joined(separator: ", ") + ">"
        case .function(let f): return "<function \(f.name)>"
        }
    }

    static func pythonFloatRepr(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        if d == d.rounded(), abs(d) < 1e16 {
            let i = Int(d)
            return (i == 0 && d.sign == .minus ? "-0" : String(i)) + ".0"
        }
        // Python switches to exponent notation when the exponent is < -4 or >= 16.
        let e = abs(d) == 0 ? 0 : Int(floor(log10(abs(d))))
        var s = "\(d)"  // shortest round-trip digits
        if e < -4 || e >= 16 {
            if !s.contains("e") {
                s = String(format: "%.17g", d)
                // Fall back to the shortest representation that round-trips.
                for p in 1...17 {
                    let t = String(format: "%.\(p)e", d)
                    if Double(t) == d { s = t; break }
                }
                // %e writes 1.500000e+20 style with the digits we asked for; normalize the mantissa.
            }
            // Normalize "1.5e+20"/"1e-05" forms: Python writes at least two exponent digits and drops ".0".
            let parts = s.split(separator: "e", maxSplits: 1)
            if parts.count == 2 {
                var mant = String(parts[0])
                if mant.hasSuffix(".0") { mant.removeLast(2) }
                if mant.contains("."), !mant.contains("e") {
                    while mant.hasSuffix("0") { mant.removeLast() }
                    if mant.hasSuffix(".") { mant.removeLast() }
                }
                var exp = String(parts[1])
                var sign = "+"
                if exp.hasPrefix("-") { sign = "-"; exp.removeFirst() } else if exp.hasPrefix("+") { exp.removeFirst() }
                while exp.count > 2 && exp.hasPrefix("0") { exp.removeFirst() }
                if exp.count < 2 { exp = "0" + exp }
                s = mant + "e" + sign + exp
            }
            return s
        }
        if s.contains("e") {
            // Swift chose exponent notation where Python does not: print positionally.
            var p = 1
            while p < 30 {
                let t = String(format: "%.\(p)f", d)
                if Double(t) == d { return t }
                p += 1
            }
        }
        return s
    }

    static func pythonStringRepr(_ s: String) -> String {
        let quote: Character = (s.contains("'") && !s.contains("\"")) ? "\"" : "'"
        var out = String(quote)
        for ch in s.unicodeScalars {
            switch ch {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(ch) == quote { out += "\\" + String(ch) }
                else if ch.value < 0x20 || ch.value == 0x7f { out += String(format: "\\x%02x", ch.value) }
                else { out.unicodeScalars.append(ch) }
            }
        }
        out.append(quote)
        return out
    }
}

// MARK: - Equality and ordering (Python semantics)

extension JinjaValue {
    /// Python `==`.
    public func pyEquals(_ other: JinjaValue) -> Bool {
        switch (self, other) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let a), .string(let b)): return a == b
        case (.array(let a), .array(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.pyEquals($1) }
        case (.object(let a), .object(let b)):
            guard a.count == b.count else { return false }
            for (k, v) in a.pairs { guard let w = b[k], v.pyEquals(w) else { return false } }
            return true
        case (.namespace(let a), .namespace(let b)): return a === b
        case (.function(let a), .function(let b)): return a === b
        default:
            if let x = numeric, let y = other.numeric { return x == y }
            return false
        }
    }

    /// Numbers (bools count, as in Python) as Double for comparisons.
    var numeric: Double? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// Python `<`; nil when the types can't be ordered.
    func pyLess(_ other: JinjaValue) -> Bool? {
        switch (self, other) {
        case (.string(let a), .string(let b)): return a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
        case (.int(let a), .int(let b)): return a < b
        case (.array(let a), .array(let b)):
            for (x, y) in zip(a, b) where !x.pyEquals(y) { return x.pyLess(y) }
            return a.count < b.count
        default:
            if let x = numeric, let y = other.numeric { return x < y }
            return nil
        }
    }
}

// MARK: - JSON (Python json.dumps / json.loads with ordered objects)

extension JinjaValue {
    /// Python `json.dumps(value, ensure_ascii=..., indent=..., separators=..., sort_keys=...)`.
    public func jsonDumps(ensureASCII: Bool = false, indent: String? = nil,
                          separators: (String, String)? = nil, sortKeys: Bool = false) throws -> String {
        let (itemSep, keySep) = separators ?? (indent == nil ? (", ", ": ") : (",", ": "))
        var out = ""
        try JinjaValue.dump(self, &out, ensureASCII, indent, itemSep, keySep, sortKeys, level: 0)
        return out
    }

    private static func dump(_ v: JinjaValue, _ out: inout String, _ ascii: Bool, _ indent: String?,
                             _ itemSep: String, _ keySep: String, _ sortKeys: Bool, level: Int) throws {
        func newline(_ lvl: Int) {
            if let ind = indent { out += "\n" + String(repeating: ind, count: lvl) }
        }
        switch v {
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isNaN { out += "NaN" } else if d.isInfinite { out += d < 0 ? "-Infinity" : "Infinity" }
            else { out += pythonFloatRepr(d) }
        case .string(let s): out += jsonString(s, ascii: ascii)
        case .array(let a):
            if a.isEmpty { out += "[]"; return }
            out += "["
            for (i, x) in a.enumerated() {
                if i > 0 { out += itemSep }
                newline(level + 1)
                try dump(x, &out, ascii, indent, itemSep, keySep, sortKeys, level: level + 1)
            }
            newline(level)
            out += "]"
        case .object(let o):
            if o.count == 0 { out += "{}"; return }
            out += "{"
            let keys = sortKeys ? o.keys.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) } : o.keys
            for (i, k) in keys.enumerated() {
                if i > 0 { out += itemSep }
                newline(level + 1)
                out += jsonString(k, ascii: ascii) + keySep
                try dump(o[k]!, &out, ascii, indent, itemSep, keySep, sortKeys, level: level + 1)
            }
            newline(level)
            out += "}"
        case .undefined, .namespace, .function:
            throw ChatTemplateError(.runtime, "Object of type \(v.typeName) is not JSON serializable")
        }
    }

    static func jsonString(_ s: String, ascii: Bool) -> String {
        var out = "\""
        for ch in s.unicodeScalars {
            switch ch {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if ch.value < 0x20 || (ascii && ch.value > 0x7e) {
                    if ch.value > 0xFFFF {
                        let v = ch.value - 0x10000
                        out += String(format: "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF))
                    } else {
                        out += String(format: "\\u%04x", ch.value)
                    }
                } else {
                    out.unicodeScalars.append(ch)
                }
            }
        }
        return out + "\""
    }

    /// Parses JSON keeping object key order (Foundation's decoders don't), ints as `.int`.
    public static func parseJSON(_ text: String) throws -> JinjaValue {
        var p = JSONReader(Array(text.utf8))
        p.skipWS()
        let v = try p.value()
        p.skipWS()
        guard p.i == p.b.count else { throw p.fail("trailing characters") }
        return v
    }
}

private struct JSONReader {
    let b: [UInt8]
    var i = 0
    init(_ b: [UInt8]) { self.b = b }

    func fail(_ m: String) -> ChatTemplateError { ChatTemplateError(.runtime, "invalid JSON at byte \(i): \(m)") }
    mutating func skipWS() { while i < b.count, [0x20, 0x0A, 0x0D, 0x09].contains(b[i]) { i += 1 } }
    mutating func expect(_ s: String) throws {
        for c in s.utf8 { guard i < b.count, b[i] == c else { throw fail("expected \(s)") }; i += 1 }
    }

    mutating func value() throws -> JinjaValue {
        guard i < b.count else { throw fail("unexpected end") }
        switch b[i] {
        case UInt8(ascii: "{"):
            i += 1; var o = JinjaObject(); skipWS()
            if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
            while true {
                skipWS()
                guard case .string(let k) = try value() else { throw fail("object key") }
                skipWS(); try expect(":"); skipWS()
                o[k] = try value(); skipWS()
                guard i < b.count else { throw fail("unterminated object") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                try expect("}"); return .object(o)
            }
        case UInt8(ascii: "["):
            i += 1; var a: [JinjaValue] = []; skipWS()
            if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
            while true {
                skipWS(); a.append(try value()); skipWS()
                guard i < b.count else { throw fail("unterminated array") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                try expect("]"); return .array(a)
            }
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .none
        default:
            let start = i
            var isFloat = false
            while i < b.count, let c = Optional(b[i]),
                  (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+")
                    || c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") { isFloat = true }
                i += 1
            }
            let s = String(decoding: b[start..<i], as: UTF8.self)
            if !isFloat, let n = Int(s) { return .int(n) }
            if let d = Double(s) { return .double(d) }
            throw fail("bad value")
        }
    }

    mutating func string() throws -> String {
        i += 1
        var bytes: [UInt8] = []
        while true {
            guard i < b.count else { throw fail("unterminated string") }
            let c = b[i]; i += 1
            if c == UInt8(ascii: "\"") { break }
            if c != UInt8(ascii: "\\") { bytes.append(c); continue }
            guard i < b.count else { throw fail("bad escape") }
            let e = b[i]; i += 1
            switch e {
            case UInt8(ascii: "n"): bytes.append(0x0A)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "r"): bytes.append(0x0D)
            case UInt8(ascii: "b"): bytes.append(0x08)
            case UInt8(ascii: "f"): bytes.append(0x0C)
            case UInt8(ascii: "u"):
                var code = try hex4()
                if code >= 0xD800 && code < 0xDC00, i + 1 < b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") {
                    i += 2
                    let low = try hex4()
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                bytes.append(contentsOf: Array(String(Unicode.Scalar(code) ?? "\u{FFFD}").utf8))
            default: bytes.append(e)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    mutating func hex4() throws -> UInt32 {
        guard i + 4 <= b.count, let v = UInt32(String(decoding: b[i..<i + 4], as: UTF8.self), radix: 16) else {
            throw fail("bad \\u escape")
        }
        i += 4
        return v
    }
}
