import Foundation

/// jinja2's built-in filters and tests that chat templates use (plus transformers' `tojson`).
extension JinjaInterpreter {
    static let filterNames: Set<String> = [
        "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float",
        "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
        "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum",
        "title", "tojson", "trim", "unique", "upper", "wordcount", "center", "batch",
    ]
    static let testNames: Set<String> = [
        "defined", "undefined", "none", "boolean", "false", "true", "integer", "float", "number", "string",
        "mapping", "iterable", "sequence", "callable", "sameas", "eq", "equalto", "==", "ne", "!=", "lt",
        "lessthan", "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=", "in", "odd", "even", "divisibleby",
        "lower", "upper", "filter", "test", "escaped",
    ]

    private func argument(_ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], _ i: Int, _ name: String) -> JinjaValue? {
        if let kw = kwargs.first(where: { $0.0 == name }) { return kw.1 }
        return i < args.count ? args[i] : nil
    }

    /// jinja2's attribute lookup for `map(attribute=...)`, `selectattr`, `sort(attribute=...)`: dotted paths, ints.
    func attributePath(_ v: JinjaValue, _ path: JinjaValue, _ pos: JinjaPosition) throws -> JinjaValue {
        var cur = v
        let parts: [String]
        if case .string(let s) = path { parts = s.split(separator: ".", omittingEmptySubsequences: false).map(String.init) }
        else { parts = [path.pythonStr] }
        for p in parts {
            if case .undefined = cur { return cur }
            let key: JinjaValue = Int(p).map { .int($0) } ?? .string(p)
            switch (cur, key) {
            case (.object(let o), .string(let k)): cur = o[k] ?? .undefined("'dict object' has no attribute '\(k)'")
            case (.array(let a), .int(let i)): cur = (i >= 0 && i < a.count) ? a[i] : .undefined("no element \(i)")
            case (.namespace(let ns), .string(let k)): cur = ns.attributes[k] ?? .undefined("no attribute '\(k)'")
            default: cur = .undefined("'\(cur.typeName) object' has no attribute '\(p)'")
            }
        }
        return cur
    }

    func applyFilter(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)],
                     _ pos: JinjaPosition) throws -> JinjaValue {
        func arg(_ i: Int, _ key: String) -> JinjaValue? { argument(args, kwargs, i, key) }
        func fail(_ m: String) -> ChatTemplateError { ChatTemplateError(.runtime, m, pos) }
        func seq(_ x: JinjaValue) throws -> [JinjaValue] { try iterate(x, pos) }
        func sortKey(_ x: JinjaValue, caseSensitive: Bool) -> JinjaValue {
            if !caseSensitive, case .string(let s) = x { return .string(s.lowercased()) }
            return x
        }
        func less(_ a: JinjaValue, _ b: JinjaValue) throws -> Bool {
            guard let r = a.pyLess(b) else {
                throw fail("'<' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
            }
            return r
        }

        switch name {
        case "tojson":
            // transformers: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
            let ensure = arg(0, "ensure_ascii")?.truthy ?? false
            var indent: String? = nil
            switch arg(1, "indent") {
            case .int(let n)?: indent = String(repeating: " ", count: max(0, n))
            case .string(let s)?: indent = s
            case .none?, nil: indent = nil
            case let x?: throw fail("tojson: bad indent \(x.pythonRepr)")
            }
            var seps: (String, String)? = nil
            if let s = arg(2, "separators"), !s.isNone {
                guard case .array(let pair) = s, pair.count == 2, case .string(let a) = pair[0], case .string(let b) = pair[1]
                else { throw fail("tojson: separators must be a pair of strings") }
                seps = (a, b)
            }
            let sortKeys = arg(3, "sort_keys")?.truthy ?? false
            do {
                return .string(try v.jsonDumps(ensureASCII: ensure, indent: indent, separators: seps, sortKeys: sortKeys))
            } catch var e as ChatTemplateError { e.position = pos; throw e }
        case "trim":
            let chars = arg(0, "chars")
            return .string(PyStr.strip(v.pythonStr, chars.flatMap { $0.isNone ? nil : $0.pythonStr }, left: true, right: true))
        case "length", "count":
            switch v {
            case .string(let s): return .int(s.unicodeScalars.count)
            case .array(let a): return .int(a.count)
            case .object(let o): return .int(o.count)
            case .undefined: return .int(0)
            default: throw fail("object of type '\(v.typeName)' has no len()")
            }
        case "upper": return .string(v.pythonStr.uppercased())
        case "lower": return .string(v.pythonStr.lowercased())
        case "capitalize": return .string(PyStr.capitalize(v.pythonStr))
        case "title":
            // jinja2: split on runs of [-\s({\[<], uppercase each piece's first character, lowercase the rest.
            var out = ""
            var piece = ""
            var inDelim: Bool? = nil
            func flush() {
                if let f = piece.first { out += f.uppercased() + piece.dropFirst().lowercased() }
                piece = ""
            }
            for ch in v.pythonStr {
                let d = ch == "-" || ch == "(" || ch == "{" || ch == "[" || ch == "<" || ch.unicodeScalars.allSatisfy(PyStr.isSpace)
                if inDelim != nil && inDelim != d { flush() }
                inDelim = d
                piece.append(ch)
            }
            flush()
            return .string(out)
        case "string": return .string(v.pythonStr)
        case "safe", "e", "escape":
            if name == "safe" { return v }
            var s = v.pythonStr
            for (a, b) in [("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("\"", "&#34;"), ("'", "&#39;")] {
                s = s.replacingOccurrences(of: a, with: b)
            }
            return .string(s)
        case "default", "d":
            let def = arg(0, "default_value") ?? .string("")
            let boolean = arg(1, "boolean")?.truthy ?? false
            if v.isUndefined || (boolean && !v.truthy) { return def }
            return v
        case "join":
            let sep = arg(0, "d")?.pythonStr ?? ""
            var items = try seq(v)
            if let attr = arg(1, "attribute"), !attr.isNone { items = try items.map { try attributePath($0, attr, pos) } }
            return .string(items.map(\.pythonStr).joined(separator: sep))
        case "replace":
            guard let old = arg(0, "old"), let new = arg(1, "new") else { throw fail("replace expects 2 arguments") }
            let count = arg(2, "count").flatMap { $0.isNone ? nil : $0.intValue } ?? -1
            return .string(PyStr.replace(v.pythonStr, old.pythonStr, new.pythonStr, count: count))
        case "first":
            if case .object(let o) = v { return o.keys.first.map { .string($0) } ?? .undefined("No first item, sequence was empty.") }
            return try seq(v).first ?? .undefined("No first item, sequence was empty.")
        case "last":
            if case .object = v { throw fail("'dict' object is not reversible") }
            return try seq(v).last ?? .undefined("No last item, sequence was empty.")
        case "list": return .array(try seq(v))
        case "items":
            switch v {
            case .object(let o): return .array(o.pairs.map { .array([.string($0.0), $0.1]) })
            case .undefined: return .array([])
            default: throw fail("Can only get item pairs from a mapping.")
            }
        case "int":
            let def = arg(0, "default") ?? .int(0)
            let base = arg(1, "base")?.intValue ?? 10
            switch v {
            case .int: return v
            case .bool(let b): return .int(b ? 1 : 0)
            case .double(let d): return d.isFinite ? .int(Int(d)) : def
            case .string(let s):
                let t = PyStr.strip(s, nil, left: true, right: true).replacingOccurrences(of: "_", with: "")
                if let i = Int(t, radix: base) { return .int(i) }
                if let d = Double(t), d.isFinite { return .int(Int(d)) }
                return def
            default: return def
            }
        case "float":
            let def = arg(0, "default") ?? .double(0)
            switch v {
            case .double: return v
            case .int(let i): return .double(Double(i))
            case .bool(let b): return .double(b ? 1 : 0)
            case .string(let s): return Double(PyStr.strip(s, nil, left: true, right: true)).map { .double($0) } ?? def
            default: return def
            }
        case "abs":
            switch v {
            case .int(let i): return .int(abs(i))
            case .double(let d): return .double(abs(d))
            case .bool(let b): return .int(b ? 1 : 0)
            default: throw fail("bad operand type for abs(): '\(v.typeName)'")
            }
        case "round":
            let precision = arg(0, "precision")?.intValue ?? 0
            let method = arg(1, "method")?.pythonStr ?? "common"
            guard let x = v.numeric else { throw fail("round: not a number") }
            let m = pow(10.0, Double(precision))
            let r: Double
            switch method {
            case "ceil": r = (x * m).rounded(.up) / m
            case "floor": r = (x * m).rounded(.down) / m
            default: r = (x * m).rounded(.toNearestOrAwayFromZero) / m
            }
            return .double(r)
        case "reverse":
            switch v {
            case .string(let s): return .string(String(String.UnicodeScalarView(s.unicodeScalars.reversed())))
            default: return .array(try seq(v).reversed())
            }
        case "sort":
            let reverse = arg(0, "reverse")?.truthy ?? false
            let cs = arg(1, "case_sensitive")?.truthy ?? false
            let attr = arg(2, "attribute")
            let items = try seq(v)
            let keyed = try items.map { x -> (JinjaValue, JinjaValue) in
                let k = (attr != nil && !attr!.isNone) ? try attributePath(x, attr!, pos) : x
                return (sortKey(k, caseSensitive: cs), x)
            }
            // Stable sort, like Python's.
            var idx = Array(keyed.indices)
            var err: Error? = nil
            idx.sort { i, j in
                do {
                    if try less(keyed[i].0, keyed[j].0) { return !reverse }
                    if try less(keyed[j].0, keyed[i].0) { return reverse }
                } catch { err = error }
                return i < j
            }
            if let err { throw err }
            return .array(idx.map { keyed[$0].1 })
        case "dictsort":
            guard case .object(let o) = v else { throw fail("dictsort: argument must be a dict") }
            let cs = arg(0, "case_sensitive")?.truthy ?? false
            let byValue = arg(1, "by")?.pythonStr == "value"
            let reverse = arg(2, "reverse")?.truthy ?? false
            var pairs = o.pairs
            var err: Error? = nil
            pairs.sort { a, b in
                let ka = sortKey(byValue ? a.1 : .string(a.0), caseSensitive: cs)
                let kb = sortKey(byValue ? b.1 : .string(b.0), caseSensitive: cs)
                do { return try reverse ? less(kb, ka) : less(ka, kb) } catch { err = error; return false }
            }
            if let err { throw err }
            return .array(pairs.map { .array([.string($0.0), $0.1]) })
        case "unique":
            let cs = arg(0, "case_sensitive")?.truthy ?? false
            let attr = arg(1, "attribute")
            var seen: [JinjaValue] = []
            var out: [JinjaValue] = []
            for x in try seq(v) {
                let k = sortKey((attr != nil && !attr!.isNone) ? try attributePath(x, attr!, pos) : x, caseSensitive: cs)
                if !seen.contains(where: { $0.pyEquals(k) }) { seen.append(k); out.append(x) }
            }
            return .array(out)
        case "min", "max":
            let cs = arg(0, "case_sensitive")?.truthy ?? false
            let attr = arg(1, "attribute")
            var best: (JinjaValue, JinjaValue)? = nil
            for x in try seq(v) {
                let k = sortKey((attr != nil && !attr!.isNone) ? try attributePath(x, attr!, pos) : x, caseSensitive: cs)
                if let b = best {
                    if name == "min" ? try less(k, b.0) : try less(b.0, k) { best = (k, x) }
                } else { best = (k, x) }
            }
            return best?.1 ?? .undefined("No aggregated item, sequence was empty.")
        case "sum":
            let attr = arg(0, "attribute")
            var total: JinjaValue = arg(1, "start") ?? .int(0)
            for x in try seq(v) {
                let y = (attr != nil && !attr!.isNone) ? try attributePath(x, attr!, pos) : x
                total = try eval(.binary("+", .literal(total), .literal(y), pos))
            }
            return total
        case "map":
            let items = try seq(v)
            if let attr = kwargs.first(where: { $0.0 == "attribute" })?.1 {
                let def = kwargs.first(where: { $0.0 == "default" })?.1
                return .array(try items.map { x in
                    let r = try attributePath(x, attr, pos)
                    if r.isUndefined, let def { return def }
                    return r
                })
            }
            guard case .string(let f)? = args.first else { throw fail("map requires a filter name or attribute=") }
            guard JinjaInterpreter.filterNames.contains(f) else {
                throw ChatTemplateError(.unsupported, "unknown filter '\(f)'", pos)
            }
            return .array(try items.map { try applyFilter(f, $0, Array(args.dropFirst()), kwargs, pos) })
        case "select", "reject", "selectattr", "rejectattr":
            let byAttr = name.hasSuffix("attr")
            let wantTrue = name.hasPrefix("select")
            var rest = args
            var attr: JinjaValue? = nil
            if byAttr {
                guard !rest.isEmpty else { throw fail("\(name) requires an attribute name") }
                attr = rest.removeFirst()
            }
            var testName: String? = nil
            if !rest.isEmpty {
                guard case .string(let t) = rest.removeFirst() else { throw fail("\(name): test name must be a string") }
                guard JinjaInterpreter.testNames.contains(t) else {
                    throw ChatTemplateError(.unsupported, "unknown test '\(t)'", pos)
                }
                testName = t
            }
            return .array(try seq(v).filter { x in
                let y = try attr.map { try attributePath(x, $0, pos) } ?? x
                let r = try testName.map { try applyTest($0, y, rest, pos) } ?? y.truthy
                return r == wantTrue
            })
        case "attr":
            guard let a = arg(0, "name") else { throw fail("attr requires a name") }
            return try attributePath(v, .string(a.pythonStr), pos)
        case "indent":
            var width = "    "
            if let w = arg(0, "width") {
                if case .string(let s) = w { width = s } else { width = String(repeating: " ", count: w.intValue ?? 4) }
            }
            let first = arg(1, "first")?.truthy ?? false
            let blank = arg(2, "blank")?.truthy ?? false
            let s = v.pythonStr + "\n"
            var rv: String
            var lines = PyStr.splitlines(s)
            if blank {
                rv = lines.joined(separator: "\n" + width)
            } else {
                rv = lines.isEmpty ? "" : lines.removeFirst()
                if !lines.isEmpty {
                    rv += "\n" + lines.map { $0.isEmpty ? $0 : width + $0 }.joined(separator: "\n")
                }
            }
            if first { rv = width + rv }
            return .string(rv)
        case "center":
            let width = arg(0, "width")?.intValue ?? 80
            let s = v.pythonStr
            let n = s.unicodeScalars.count
            guard width > n else { return .string(s) }
            let total = width - n
            let left = total / 2 + (total & width & 1)
            return .string(String(repeating: " ", count: left) + s + String(repeating: " ", count: total - left))
        case "wordcount":
            return .int(v.pythonStr.split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "_") }).count)
        case "batch":
            guard let n = arg(0, "linecount")?.intValue, n > 0 else { throw fail("batch requires a positive count") }
            let fill = arg(1, "fill_with")
            var out: [JinjaValue] = []
            var cur: [JinjaValue] = []
            for x in try seq(v) {
                cur.append(x)
                if cur.count == n { out.append(.array(cur)); cur = [] }
            }
            if !cur.isEmpty {
                if let fill, !fill.isNone { while cur.count < n { cur.append(fill) } }
                out.append(.array(cur))
            }
            return .array(out)
        default:
            throw ChatTemplateError(.unsupported, "unknown filter '\(name)'", pos)
        }
    }

    func applyTest(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ pos: JinjaPosition) throws -> Bool {
        func other() throws -> JinjaValue {
            guard let a = args.first else { throw ChatTemplateError(.runtime, "test '\(name)' needs an argument", pos) }
            return a
        }
        func cmp(_ op: String) throws -> Bool {
            let b = try other()
            guard let r = op == "<" ? v.pyLess(b) : b.pyLess(v) else {
                throw ChatTemplateError(.runtime, "'\(op)' not supported between instances of '\(v.typeName)' and '\(b.typeName)'", pos)
            }
            return r
        }
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": return v.isNone
        case "boolean": if case .bool = v { return true }; return false
        case "false": if case .bool(false) = v { return true }; return false
        case "true": if case .bool(true) = v { return true }; return false
        case "integer": if case .int = v { return true }; return false
        case "float": if case .double = v { return true }; return false
        case "number": return v.numeric != nil
        case "string": return v.isStringValue
        case "mapping": if case .object = v { return true }; return false
        case "iterable":
            switch v {
            case .string, .array, .object, .undefined: return true
            default: return false
            }
        case "sequence":
            switch v {
            case .string, .array, .object: return true
            default: return false
            }
        case "callable": if case .function = v { return true }; return false
        case "sameas":
            let b = try other()
            switch (v, b) {
            case (.none, .none): return true
            case (.bool(let x), .bool(let y)): return x == y
            case (.namespace(let x), .namespace(let y)): return x === y
            default: return false
            }
        case "eq", "equalto", "==": return v.pyEquals(try other())
        case "ne", "!=": return !v.pyEquals(try other())
        case "lt", "lessthan", "<": return try cmp("<")
        case "gt", "greaterthan", ">": return try cmp(">")
        case "le", "<=": return try cmp("<") || v.pyEquals(try other())
        case "ge", ">=": return try cmp(">") || v.pyEquals(try other())
        case "in":
            return try eval(.compare(.literal(v), [("in", .literal(try other()))], pos)).truthy
        case "odd", "even":
            guard let i = v.intValue else { throw ChatTemplateError(.runtime, "test '\(name)' needs an integer", pos) }
            return (abs(i) % 2 == 1) == (name == "odd")
        case "divisibleby":
            guard let i = v.intValue, let n = try other().intValue, n != 0 else {
                throw ChatTemplateError(.runtime, "divisibleby needs nonzero integers", pos)
            }
            return i % n == 0
        case "lower": let s = v.pythonStr; return s == s.lowercased()
        case "upper": let s = v.pythonStr; return s == s.uppercased()
        case "filter":
            guard case .string(let f) = try other() else { return false }
            return JinjaInterpreter.filterNames.contains(f)
        case "test":
            guard case .string(let t) = try other() else { return false }
            return JinjaInterpreter.testNames.contains(t)
        case "escaped": return false
        default:
            throw ChatTemplateError(.unsupported, "unknown test '\(name)'", pos)
        }
    }
}
