import Foundation

/// Renders a parsed template with jinja2's semantics (as configured by transformers: default
/// `Undefined`, immutable sandbox, loop controls, `tojson` = `json.dumps(ensure_ascii=False)`).
final class JinjaInterpreter {
    private var frames: [[String: JinjaValue]]
    /// Unicode-scalar spans of `{% generation %}` blocks in the output (as transformers' AssistantTracker records
    /// them: start = output length so far, end = start + rendered length of the block).
    private(set) var generationSpans: [(start: Int, end: Int)] = []

    init(globals: [String: JinjaValue]) {
        frames = [globals]
    }

    private enum Flow { case normal, breakLoop, continueLoop }

    func render(_ nodes: [JinjaNode]) throws -> String {
        var out = ""
        _ = try render(nodes, into: &out)
        return out
    }

    // MARK: scopes

    private func lookup(_ name: String) -> JinjaValue? {
        for f in frames.reversed() { if let v = f[name] { return v } }
        return nil
    }

    private func assign(_ name: String, _ value: JinjaValue) {
        frames[frames.count - 1][name] = value
    }

    // MARK: statements

    private func render(_ nodes: [JinjaNode], into out: inout String) throws -> Flow {
        for node in nodes {
            switch node {
            case .text(let s):
                out += s
            case .output(let e, _):
                out += try eval(e).pythonStr
            case .ifBlock(let branches, let elseBody):
                var taken = false
                for (cond, body) in branches where try eval(cond).truthy {
                    taken = true
                    let f = try render(body, into: &out)
                    if f != .normal { return f }
                    break
                }
                if !taken, let elseBody {
                    let f = try render(elseBody, into: &out)
                    if f != .normal { return f }
                }
            case .forBlock(let targets, let iterExpr, let filter, let body, let elseBody, let pos):
                try renderFor(targets, iterExpr, filter, body, elseBody, pos, &out)
            case .set(let target, let e, let pos):
                let v = try eval(e)
                switch target {
                case .names(let names):
                    try bind(names, v, pos)
                case .attribute(let nsName, let attr):
                    guard case .namespace(let ns)? = lookup(nsName) else {
                        throw ChatTemplateError(.runtime, "cannot assign attribute on non-namespace object '\(nsName)'", pos)
                    }
                    if attr.hasPrefix("_") {
                        throw ChatTemplateError(.runtime, "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(attr)'.", pos)
                    }
                    ns.attributes[attr] = v
                }
            case .setBlock(let name, let body):
                var s = ""
                frames.append([:])
                defer { frames.removeLast() }
                _ = try render(body, into: &s)
                frames[frames.count - 2][name] = .string(s)
            case .macro(let name, let params, let body):
                assign(name, makeMacro(name, params, body))
            case .callBlock(let call, let params, let body, let pos):
                guard case .call(let calleeExpr, let argExprs, let kwExprs, _) = call else { break }
                let callee = try eval(calleeExpr)
                let caller = makeMacro("caller", params, body)
                let args = try argExprs.map { try eval($0) }
                var kwargs = try kwExprs.map { ($0.0, try eval($0.1)) }
                kwargs.append(("caller", caller))
                out += try callValue(callee, args, kwargs, pos).pythonStr
            case .filterBlock(let name, let argExprs, let kwExprs, let body, let pos):
                var s = ""
                frames.append([:])
                let f: Flow
                do { f = try render(body, into: &s) } catch { frames.removeLast(); throw error }
                frames.removeLast()
                let args = try argExprs.map { try eval($0) }
                let kwargs = try kwExprs.map { ($0.0, try eval($0.1)) }
                out += try applyFilter(name, .string(s), args, kwargs, pos).pythonStr
                if f != .normal { return f }
            case .breakLoop:
                return .breakLoop
            case .continueLoop:
                return .continueLoop
            case .generation(let body):
                let start = out.unicodeScalars.count
                let f = try render(body, into: &out)
                generationSpans.append((start, out.unicodeScalars.count))
                if f != .normal { return f }
            }
        }
        return .normal
    }

    private func bind(_ names: [String], _ v: JinjaValue, _ pos: JinjaPosition) throws {
        if names.count == 1 { assign(names[0], v); return }
        let items = try iterate(v, pos)
        guard items.count == names.count else {
            throw ChatTemplateError(.runtime, "cannot unpack \(items.count) values into \(names.count) names", pos)
        }
        for (n, x) in zip(names, items) { assign(n, x) }
    }

    private func renderFor(_ targets: [String], _ iterExpr: JinjaExpr, _ filter: JinjaExpr?, _ body: [JinjaNode],
                           _ elseBody: [JinjaNode]?, _ pos: JinjaPosition, _ out: inout String) throws {
        var items = try iterate(try eval(iterExpr), pos)
        if let filter {
            var kept: [JinjaValue] = []
            for item in items {
                frames.append([:])
                defer { frames.removeLast() }
                try bind(targets, item, pos)
                if try eval(filter).truthy { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty {
            if let elseBody {
                frames.append([:])
                defer { frames.removeLast() }
                _ = try render(elseBody, into: &out)
            }
            return
        }
        let n = items.count
        for (idx, item) in items.enumerated() {
            var loop = JinjaObject()
            loop["index"] = .int(idx + 1)
            loop["index0"] = .int(idx)
            loop["revindex"] = .int(n - idx)
            loop["revindex0"] = .int(n - idx - 1)
            loop["first"] = .bool(idx == 0)
            loop["last"] = .bool(idx == n - 1)
            loop["length"] = .int(n)
            loop["depth"] = .int(1)
            loop["depth0"] = .int(0)
            loop["previtem"] = idx > 0 ? items[idx - 1] : .undefined("'loop.previtem' is undefined")
            loop["nextitem"] = idx < n - 1 ? items[idx + 1] : .undefined("'loop.nextitem' is undefined")
            loop["cycle"] = .function(JinjaFunction("loop.cycle") { args, _ in
                guard !args.isEmpty else { throw ChatTemplateError(.runtime, "no items for cycling given") }
                return args[idx % args.count]
            })
            frames.append(["loop": .object(loop)])
            let flow: Flow
            do {
                try bind(targets, item, pos)
                flow = try render(body, into: &out)
            } catch {
                frames.removeLast()
                throw error
            }
            frames.removeLast()
            if flow == .breakLoop { break }
        }
    }

    private func makeMacro(_ name: String, _ params: [(String, JinjaExpr?)], _ body: [JinjaNode]) -> JinjaValue {
        .function(JinjaFunction(name) { [unowned self] args, kwargs in
            var frame: [String: JinjaValue] = [:]
            var extraArgs: [JinjaValue] = []
            for (i, a) in args.enumerated() {
                if i < params.count { frame[params[i].0] = a } else { extraArgs.append(a) }
            }
            var extraKw = JinjaObject()
            for (k, v) in kwargs {
                if k == "caller" || params.contains(where: { $0.0 == k }) { frame[k] = v } else { extraKw[k] = v }
            }
            let saved = self.frames
            self.frames = [saved[0], frame]
            defer { self.frames = saved }
            for (p, d) in params where frame[p] == nil {
                self.frames[1][p] = try d.map { try self.eval($0) } ?? .undefined("'\(p)' is undefined")
            }
            self.frames[1]["varargs"] = .array(extraArgs)
            self.frames[1]["kwargs"] = .object(extraKw)
            var s = ""
            _ = try self.render(body, into: &s)
            return .string(s)
        })
    }

    // MARK: expressions

    func eval(_ e: JinjaExpr) throws -> JinjaValue {
        switch e {
        case .literal(let v):
            return v
        case .name(let n, _):
            return lookup(n) ?? .undefined("'\(n)' is undefined")
        case .list(let items):
            return .array(try items.map { try eval($0) })
        case .dict(let pairs):
            var o = JinjaObject()
            for (ke, ve) in pairs {
                let k = try eval(ke)
                guard case .string(let ks) = k else {
                    throw ChatTemplateError(.unsupported, "unsupported non-string dict key \(k.pythonRepr)")
                }
                o[ks] = try eval(ve)
            }
            return .object(o)
        case .getattr(let base, let name, let pos):
            return try getattr(try eval(base), name, pos)
        case .getitem(let base, let idx, let pos):
            return try getitem(try eval(base), try eval(idx), pos)
        case .slice(let base, let a, let b, let c, let pos):
            return try slice(try eval(base), try a.map { try eval($0) }, try b.map { try eval($0) },
                             try c.map { try eval($0) }, pos)
        case .call(let callee, let argExprs, let kwExprs, let pos):
            let f = try eval(callee)
            let args = try argExprs.map { try eval($0) }
            let kwargs = try kwExprs.map { ($0.0, try eval($0.1)) }
            return try callValue(f, args, kwargs, pos)
        case .filter(let base, let name, let argExprs, let kwExprs, let pos):
            let v = try eval(base)
            let args = try argExprs.map { try eval($0) }
            let kwargs = try kwExprs.map { ($0.0, try eval($0.1)) }
            return try applyFilter(name, v, args, kwargs, pos)
        case .test(let base, let name, let argExprs, let negated, let pos):
            let v = try eval(base)
            let args = try argExprs.map { try eval($0) }
            let r = try applyTest(name, v, args, pos)
            return .bool(negated ? !r : r)
        case .not(let x):
            return .bool(!(try eval(x).truthy))
        case .neg(let x, let pos):
            switch try eval(x) {
            case .int(let i): return .int(-i)
            case .double(let d): return .double(-d)
            case .bool(let b): return .int(b ? -1 : 0)
            case .undefined(let m): throw ChatTemplateError(.runtime, m, pos)
            case let v: throw ChatTemplateError(.runtime, "bad operand type for unary -: '\(v.typeName)'", pos)
            }
        case .and(let a, let b):
            let x = try eval(a)
            return x.truthy ? try eval(b) : x
        case .or(let a, let b):
            let x = try eval(a)
            return x.truthy ? x : try eval(b)
        case .binary(let op, let a, let b, let pos):
            return try binary(op, try eval(a), try eval(b), pos)
        case .compare(let first, let ops, let pos):
            var left = try eval(first)
            for (op, re) in ops {
                let right = try eval(re)
                if !(try compare(op, left, right, pos)) { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .ternary(let cond, let then, let alt):
            if try eval(cond).truthy { return try eval(then) }
            return try alt.map { try eval($0) } ?? .undefined("the inline if-expression evaluated to false and no else section was defined")
        }
    }

    // MARK: operators

    private func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue, _ pos: JinjaPosition) throws -> JinjaValue {
        if op == "~" { return .string(a.pythonStr + b.pythonStr) }
        if case .undefined(let m) = a { throw ChatTemplateError(.runtime, m, pos) }
        if case .undefined(let m) = b { throw ChatTemplateError(.runtime, m, pos) }
        func typeError() -> ChatTemplateError {
            if op == "+", case .string = a {
                return ChatTemplateError(.runtime, "can only concatenate str (not \"\(b.typeName)\") to str", pos)
            }
            if op == "+", case .array = a {
                return ChatTemplateError(.runtime, "can only concatenate list (not \"\(b.typeName)\") to list", pos)
            }
            return ChatTemplateError(.runtime, "unsupported operand type(s) for \(op): '\(a.typeName)' and '\(b.typeName)'", pos)
        }
        func ints() -> (Int, Int)? {
            switch (a, b) {
            case (.int(let x), .int(let y)): return (x, y)
            case (.bool(let x), .int(let y)): return (x ? 1 : 0, y)
            case (.int(let x), .bool(let y)): return (x, y ? 1 : 0)
            case (.bool(let x), .bool(let y)): return (x ? 1 : 0, y ? 1 : 0)
            default: return nil
            }
        }
        switch op {
        case "+":
            switch (a, b) {
            case (.string(let x), .string(let y)): return .string(x + y)
            case (.array(let x), .array(let y)): return .array(x + y)
            default:
                if let (x, y) = ints() {
                    let (r, o) = x.addingReportingOverflow(y)
                    return o ? .double(Double(x) + Double(y)) : .int(r)
                }
                if let x = a.numeric, let y = b.numeric { return .double(x + y) }
                throw typeError()
            }
        case "-":
            if let (x, y) = ints() { return .int(x - y) }
            if let x = a.numeric, let y = b.numeric { return .double(x - y) }
            throw typeError()
        case "*":
            switch (a, b) {
            case (.string(let s), _), (_, .string(let s)):
                guard let n = (a.isStringValue ? b.intValue : a.intValue) else { throw typeError() }
                return .string(n > 0 ? String(repeating: s, count: n) : "")
            case (.array(let arr), _), (_, .array(let arr)):
                guard let n = (a.isArrayValue ? b.intValue : a.intValue) else { throw typeError() }
                return .array(n > 0 ? Array([[JinjaValue]](repeating: arr, count: n).joined()) : [])
            default:
                if let (x, y) = ints() {
                    let (r, o) = x.multipliedReportingOverflow(by: y)
                    return o ? .double(Double(x) * Double(y)) : .int(r)
                }
                if let x = a.numeric, let y = b.numeric { return .double(x * y) }
                throw typeError()
            }
        case "/":
            guard let x = a.numeric, let y = b.numeric else { throw typeError() }
            if y == 0 { throw ChatTemplateError(.runtime, "division by zero", pos) }
            return .double(x / y)
        case "//":
            if let (x, y) = ints() {
                if y == 0 { throw ChatTemplateError(.runtime, "integer division or modulo by zero", pos) }
                let q = x / y
                return .int((x % y != 0 && ((x < 0) != (y < 0))) ? q - 1 : q)
            }
            guard let x = a.numeric, let y = b.numeric else { throw typeError() }
            if y == 0 { throw ChatTemplateError(.runtime, "float floor division by zero", pos) }
            return .double((x / y).rounded(.down))
        case "%":
            if case .string = a {
                throw ChatTemplateError(.unsupported, "unsupported printf-style string formatting ('%' on a string)", pos)
            }
            if let (x, y) = ints() {
                if y == 0 { throw ChatTemplateError(.runtime, "integer division or modulo by zero", pos) }
                let r = x % y
                return .int((r != 0 && ((r < 0) != (y < 0))) ? r + y : r)
            }
            guard let x = a.numeric, let y = b.numeric else { throw typeError() }
            if y == 0 { throw ChatTemplateError(.runtime, "float modulo", pos) }
            let r = x.truncatingRemainder(dividingBy: y)
            return .double((r != 0 && ((r < 0) != (y < 0))) ? r + y : r)
        case "**":
            if let (x, y) = ints(), y >= 0 {
                var r = 1
                for _ in 0..<y {
                    let (m, o) = r.multipliedReportingOverflow(by: x)
                    if o { return .double(pow(Double(x), Double(y))) }
                    r = m
                }
                return .int(r)
            }
            guard let x = a.numeric, let y = b.numeric else { throw typeError() }
            return .double(pow(x, y))
        default:
            throw ChatTemplateError(.unsupported, "unsupported operator '\(op)'", pos)
        }
    }

    private func compare(_ op: String, _ a: JinjaValue, _ b: JinjaValue, _ pos: JinjaPosition) throws -> Bool {
        switch op {
        case "==": return a.pyEquals(b)
        case "!=": return !a.pyEquals(b)
        case "in": return try contains(b, a, pos)
        case "notin": return !(try contains(b, a, pos))
        default:
            if case .undefined(let m) = a { throw ChatTemplateError(.runtime, m, pos) }
            if case .undefined(let m) = b { throw ChatTemplateError(.runtime, m, pos) }
            let r: Bool?
            switch op {
            case "<": r = a.pyLess(b)
            case ">": r = b.pyLess(a)
            case "<=": r = a.pyLess(b).map { $0 || a.pyEquals(b) }
            case ">=": r = b.pyLess(a).map { $0 || a.pyEquals(b) }
            default: throw ChatTemplateError(.unsupported, "unsupported comparison '\(op)'", pos)
            }
            guard let r else {
                throw ChatTemplateError(.runtime, "'\(op)' not supported between instances of '\(a.typeName)' and '\(b.typeName)'", pos)
            }
            return r
        }
    }

    private func contains(_ container: JinjaValue, _ item: JinjaValue, _ pos: JinjaPosition) throws -> Bool {
        switch container {
        case .string(let s):
            guard case .string(let sub) = item else {
                throw ChatTemplateError(.runtime, "'in <string>' requires string as left operand, not \(item.typeName)", pos)
            }
            return sub.isEmpty || s.contains(sub)
        case .array(let a): return a.contains { $0.pyEquals(item) }
        case .object(let o):
            if case .string(let k) = item { return o[k] != nil }
            return false
        case .undefined: return false
        default:
            throw ChatTemplateError(.runtime, "argument of type '\(container.typeName)' is not iterable", pos)
        }
    }

    func iterate(_ v: JinjaValue, _ pos: JinjaPosition) throws -> [JinjaValue] {
        switch v {
        case .array(let a): return a
        case .object(let o): return o.keys.map { .string($0) }
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        case .undefined: return []
        default: throw ChatTemplateError(.runtime, "'\(v.typeName)' object is not iterable", pos)
        }
    }

    // MARK: attribute / item access (jinja2 sandbox getattr / getitem)

    static let dictMethods: Set<String> = ["items", "keys", "values", "get"]
    static let stringMethods: Set<String> = [
        "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith", "upper", "lower",
        "replace", "title", "capitalize", "find", "rfind", "count", "join", "isdigit", "isalpha", "isalnum",
        "isspace", "isupper", "islower", "zfill", "removeprefix", "removesuffix", "index", "casefold", "swapcase",
    ]

    private func getattr(_ v: JinjaValue, _ name: String, _ pos: JinjaPosition) throws -> JinjaValue {
        switch v {
        case .undefined(let m):
            throw ChatTemplateError(.runtime, m, pos)
        case .object(let o):
            if JinjaInterpreter.dictMethods.contains(name) { return dictMethod(o, name, pos) }
            if ["pop", "popitem", "update", "clear", "setdefault"].contains(name) {
                return .function(JinjaFunction("dict.\(name)") { _, _ in
                    throw ChatTemplateError(.runtime, "access to attribute '\(name)' of 'dict' object is unsafe.", pos)
                })
            }
            return o[name] ?? .undefined("'dict object' has no attribute '\(name)'")
        case .namespace(let ns):
            return ns.attributes[name] ?? .undefined("'Namespace object' has no attribute '\(name)'")
        case .string(let s):
            if JinjaInterpreter.stringMethods.contains(name) { return stringMethod(s, name, pos) }
            return .undefined("'str object' has no attribute '\(name)'")
        case .array:
            if ["append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear"].contains(name) {
                return .function(JinjaFunction("list.\(name)") { _, _ in
                    throw ChatTemplateError(.runtime, "access to attribute '\(name)' of 'list' object is unsafe.", pos)
                })
            }
            if name == "index" || name == "count" {
                guard case .array(let a) = v else { break }
                return .function(JinjaFunction("list.\(name)") { args, _ in
                    guard let x = args.first else { throw ChatTemplateError(.runtime, "\(name)() takes one argument", pos) }
                    if name == "count" { return .int(a.filter { $0.pyEquals(x) }.count) }
                    guard let i = a.firstIndex(where: { $0.pyEquals(x) }) else {
                        throw ChatTemplateError(.runtime, "\(x.pythonRepr) is not in list", pos)
                    }
                    return .int(i)
                })
            }
            return .undefined("'list object' has no attribute '\(name)'")
        default:
            break
        }
        return .undefined("'\(v.typeName) object' has no attribute '\(name)'")
    }

    private func getitem(_ v: JinjaValue, _ idx: JinjaValue, _ pos: JinjaPosition) throws -> JinjaValue {
        switch (v, idx) {
        case (.undefined(let m), _):
            throw ChatTemplateError(.runtime, m, pos)
        case (.object(let o), .string(let k)):
            return o[k] ?? .undefined("'dict object' has no attribute '\(k)'")
        case (.namespace, .string(let k)):
            return try getattr(v, k, pos)
        case (.array(let a), _) where idx.intValue != nil:
            var i = idx.intValue!
            if i < 0 { i += a.count }
            return (i >= 0 && i < a.count) ? a[i] : .undefined("list object has no element \(idx.intValue!)")
        case (.string(let s), _) where idx.intValue != nil:
            let u = Array(s.unicodeScalars)
            var i = idx.intValue!
            if i < 0 { i += u.count }
            return (i >= 0 && i < u.count) ? .string(String(u[i])) : .undefined("str object has no element \(idx.intValue!)")
        case (_, .string(let k)):
            return try getattr(v, k, pos)
        default:
            return .undefined("'\(v.typeName) object' has no attribute \(idx.pythonRepr)")
        }
    }

    private func slice(_ v: JinjaValue, _ a: JinjaValue?, _ b: JinjaValue?, _ c: JinjaValue?, _ pos: JinjaPosition) throws -> JinjaValue {
        func intOrNil(_ x: JinjaValue?) throws -> Int? {
            guard let x, !x.isNone else { return nil }
            guard let i = x.intValue else {
                throw ChatTemplateError(.runtime, "slice indices must be integers or None", pos)
            }
            return i
        }
        let start = try intOrNil(a), stop = try intOrNil(b), step = try intOrNil(c) ?? 1
        if step == 0 { throw ChatTemplateError(.runtime, "slice step cannot be zero", pos) }
        func indices(_ n: Int) -> [Int] {
            // Python slice.indices semantics.
            func clamp(_ x: Int?, _ def: Int, lo: Int, hi: Int) -> Int {
                guard var x else { return def }
                if x < 0 { x += n }
                return min(max(x, lo), hi)
            }
            var out: [Int] = []
            if step > 0 {
                var i = clamp(start, 0, lo: 0, hi: n)
                let e = clamp(stop, n, lo: 0, hi: n)
                while i < e { out.append(i); i += step }
            } else {
                var i = clamp(start, n - 1, lo: -1, hi: n - 1)
                let e = clamp(stop, -1, lo: -1, hi: n - 1)
                while i > e { out.append(i); i += step }
            }
            return out
        }
        switch v {
        case .array(let arr): return .array(indices(arr.count).map { arr[$0] })
        case .string(let s):
            let u = Array(s.unicodeScalars)
            var r = String.UnicodeScalarView()
            for i in indices(u.count) { r.append(u[i]) }
            return .string(String(r))
        case .undefined(let m): throw ChatTemplateError(.runtime, m, pos)
        default: throw ChatTemplateError(.runtime, "'\(v.typeName)' object is not subscriptable", pos)
        }
    }

    func callValue(_ f: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], _ pos: JinjaPosition) throws -> JinjaValue {
        switch f {
        case .function(let fn):
            do { return try fn.call(args, kwargs) } catch var e as ChatTemplateError {
                if e.position == nil { e.position = pos }
                throw e
            }
        case .undefined(let m):
            throw ChatTemplateError(.runtime, m, pos)
        default:
            throw ChatTemplateError(.runtime, "'\(f.typeName)' object is not callable", pos)
        }
    }

    // MARK: methods

    private func dictMethod(_ o: JinjaObject, _ name: String, _ pos: JinjaPosition) -> JinjaValue {
        .function(JinjaFunction("dict.\(name)") { args, _ in
            switch name {
            case "items": return .array(o.pairs.map { .array([.string($0.0), $0.1]) })
            case "keys": return .array(o.keys.map { .string($0) })
            case "values": return .array(o.pairs.map { $0.1 })
            default:  // get
                guard let key = args.first else { throw ChatTemplateError(.runtime, "get expected at least 1 argument", pos) }
                if case .string(let k) = key, let v = o[k] { return v }
                return args.count > 1 ? args[1] : .none
            }
        })
    }

    private func stringMethod(_ s: String, _ name: String, _ pos: JinjaPosition) -> JinjaValue {
        .function(JinjaFunction("str.\(name)") { args, kwargs in
            func arg(_ i: Int, _ key: String) -> JinjaValue? {
                if i < args.count { return args[i] }
                return kwargs.first { $0.0 == key }?.1
            }
            func strArg(_ i: Int, _ key: String) throws -> String? {
                guard let v = arg(i, key), !v.isNone else { return nil }
                guard case .string(let x) = v else {
                    throw ChatTemplateError(.runtime, "\(name) arg must be None or str, not \(v.typeName)", pos)
                }
                return x
            }
            switch name {
            case "strip": return .string(PyStr.strip(s, try strArg(0, "chars"), left: true, right: true))
            case "lstrip": return .string(PyStr.strip(s, try strArg(0, "chars"), left: true, right: false))
            case "rstrip": return .string(PyStr.strip(s, try strArg(0, "chars"), left: false, right: true))
            case "split", "rsplit":
                let maxsplit = arg(1, "maxsplit")?.intValue ?? -1
                return .array(PyStr.split(s, try strArg(0, "sep"), maxsplit: maxsplit, fromRight: name == "rsplit").map { .string($0) })
            case "splitlines": return .array(PyStr.splitlines(s).map { .string($0) })
            case "startswith", "endswith":
                var candidates: [String] = []
                switch arg(0, "prefix") {
                case .string(let p)?: candidates = [p]
                case .array(let a)?: candidates = a.compactMap { if case .string(let x) = $0 { return x }; return nil }
                default: throw ChatTemplateError(.runtime, "\(name) first arg must be str or a tuple of str", pos)
                }
                return .bool(candidates.contains { name == "startswith" ? s.unicodeScalars.starts(with: $0.unicodeScalars) : PyStr.hasSuffix(s, $0) })
            case "upper": return .string(s.uppercased())
            case "lower": return .string(s.lowercased())
            case "casefold": return .string(s.lowercased())
            case "swapcase": return .string(String(s.map { $0.isUppercase ? Character($0.lowercased()) : Character($0.uppercased()) }))
            case "title": return .string(PyStr.title(s))
            case "capitalize": return .string(PyStr.capitalize(s))
            case "replace":
                guard let old = try strArg(0, "old"), let new = try strArg(1, "new") else {
                    throw ChatTemplateError(.runtime, "replace expected 2 arguments", pos)
                }
                return .string(PyStr.replace(s, old, new, count: arg(2, "count")?.intValue ?? -1))
            case "find", "rfind", "index":
                guard let sub = try strArg(0, "sub") else { throw ChatTemplateError(.runtime, "\(name) expected 1 argument", pos) }
                let i = PyStr.find(s, sub, fromRight: name == "rfind")
                if name == "index" && i < 0 { throw ChatTemplateError(.runtime, "substring not found", pos) }
                return .int(i)
            case "count":
                guard let sub = try strArg(0, "sub") else { throw ChatTemplateError(.runtime, "count expected 1 argument", pos) }
                return .int(PyStr.count(s, sub))
            case "join":
                guard let v = arg(0, "iterable") else { throw ChatTemplateError(.runtime, "join expected 1 argument", pos) }
                let parts = try self.iterate(v, pos).map { x -> String in
                    guard case .string(let t) = x else {
                        throw ChatTemplateError(.runtime, "sequence item: expected str instance, \(x.typeName) found", pos)
                    }
                    return t
                }
                return .string(parts.joined(separator: s))
            case "isdigit": return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.numericType != nil })
            case "isalpha": return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic })
            case "isalnum": return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || $0.properties.numericType != nil })
            case "isspace": return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { PyStr.isSpace($0) })
            case "isupper": return .bool(s.contains { $0.isCased } && s == s.uppercased())
            case "islower": return .bool(s.contains { $0.isCased } && s == s.lowercased())
            case "zfill":
                let w = arg(0, "width")?.intValue ?? 0
                let n = s.unicodeScalars.count
                if n >= w { return .string(s) }
                var body = s
                var sign = ""
                if let f = body.first, f == "-" || f == "+" { sign = String(f); body.removeFirst() }
                return .string(sign + String(repeating: "0", count: w - n) + body)
            case "removeprefix":
                let p = try strArg(0, "prefix") ?? ""
                return .string(s.unicodeScalars.starts(with: p.unicodeScalars) ? String(String.UnicodeScalarView(s.unicodeScalars.dropFirst(p.unicodeScalars.count))) : s)
            case "removesuffix":
                let p = try strArg(0, "suffix") ?? ""
                return .string(!p.isEmpty && PyStr.hasSuffix(s, p) ? String(String.UnicodeScalarView(s.unicodeScalars.dropLast(p.unicodeScalars.count))) : s)
            default:
                throw ChatTemplateError(.unsupported, "unsupported string method '\(name)'", pos)
            }
        })
    }
}

extension JinjaValue {
    var intValue: Int? {
        switch self {
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }
    var isStringValue: Bool { if case .string = self { return true }; return false }
    var isArrayValue: Bool { if case .array = self { return true }; return false }
}

/// Python `str` operations on Unicode scalars (Python strings are code point sequences).
enum PyStr {
    static func isSpace(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }

    static func strip(_ s: String, _ chars: String?, left: Bool, right: Bool) -> String {
        let set = chars.map { Set($0.unicodeScalars) }
        func strippable(_ c: Unicode.Scalar) -> Bool { set?.contains(c) ?? isSpace(c) }
        var u = Array(s.unicodeScalars)
        var lo = 0, hi = u.count
        if left { while lo < hi, strippable(u[lo]) { lo += 1 } }
        if right { while hi > lo, strippable(u[hi - 1]) { hi -= 1 } }
        if lo == 0 && hi == u.count { return s }
        u = Array(u[lo..<hi])
        return String(String.UnicodeScalarView(u))
    }

    static func hasSuffix(_ s: String, _ suffix: String) -> Bool {
        let a = Array(s.unicodeScalars), b = Array(suffix.unicodeScalars)
        return b.count <= a.count && Array(a[(a.count - b.count)...]) == b
    }

    static func find(_ s: String, _ sub: String, fromRight: Bool = false) -> Int {
        let a = Array(s.unicodeScalars), b = Array(sub.unicodeScalars)
        if b.isEmpty { return fromRight ? a.count : 0 }
        guard b.count <= a.count else { return -1 }
        let range = Array(0...(a.count - b.count))
        for i in (fromRight ? range.reversed() : range) where Array(a[i..<i + b.count]) == b { return i }
        return -1
    }

    static func count(_ s: String, _ sub: String) -> Int {
        let a = Array(s.unicodeScalars), b = Array(sub.unicodeScalars)
        if b.isEmpty { return a.count + 1 }
        var n = 0, i = 0
        while i + b.count <= a.count {
            if Array(a[i..<i + b.count]) == b { n += 1; i += b.count } else { i += 1 }
        }
        return n
    }

    static func replace(_ s: String, _ old: String, _ new: String, count: Int = -1) -> String {
        let a = Array(s.unicodeScalars), b = Array(old.unicodeScalars), n = Array(new.unicodeScalars)
        var out: [Unicode.Scalar] = []
        var done = 0
        if b.isEmpty {
            // Python inserts `new` between every character (and at both ends).
            for c in a {
                if count < 0 || done < count { out += n; done += 1 }
                out.append(c)
            }
            if count < 0 || done < count { out += n }
            return String(String.UnicodeScalarView(out))
        }
        var i = 0
        while i < a.count {
            if (count < 0 || done < count), i + b.count <= a.count, Array(a[i..<i + b.count]) == b {
                out += n; i += b.count; done += 1
            } else {
                out.append(a[i]); i += 1
            }
        }
        return String(String.UnicodeScalarView(out))
    }

    static func split(_ s: String, _ sep: String?, maxsplit: Int = -1, fromRight: Bool = false) -> [String] {
        let a = Array(s.unicodeScalars)
        func str(_ x: ArraySlice<Unicode.Scalar>) -> String { String(String.UnicodeScalarView(x)) }
        if let sep {
            let b = Array(sep.unicodeScalars)
            guard !b.isEmpty else { return [s] }
            var parts: [String] = []
            if fromRight {
                var end = a.count, i = a.count - b.count
                while i >= 0 {
                    if (maxsplit < 0 || parts.count < maxsplit), Array(a[i..<i + b.count]) == b {
                        parts.append(str(a[(i + b.count)..<end])); end = i; i -= b.count
                    } else { i -= 1 }
                }
                parts.append(str(a[0..<end]))
                return parts.reversed()
            }
            var start = 0, i = 0
            while i + b.count <= a.count {
                if (maxsplit < 0 || parts.count < maxsplit), Array(a[i..<i + b.count]) == b {
                    parts.append(str(a[start..<i])); i += b.count; start = i
                } else { i += 1 }
            }
            parts.append(str(a[start...]))
            return parts
        }
        // Whitespace split: runs of whitespace, no empty strings.
        var parts: [String] = []
        if fromRight {
            var i = a.count
            while i > 0 {
                while i > 0, isSpace(a[i - 1]) { i -= 1 }
                if i == 0 { break }
                if maxsplit >= 0 && parts.count == maxsplit {
                    parts.append(str(a[0..<i])); i = 0; break
                }
                var j = i
                while j > 0, !isSpace(a[j - 1]) { j -= 1 }
                parts.append(str(a[j..<i])); i = j
            }
            return parts.reversed()
        }
        var i = 0
        while i < a.count {
            while i < a.count, isSpace(a[i]) { i += 1 }
            if i == a.count { break }
            if maxsplit >= 0 && parts.count == maxsplit {
                var e = a.count
                while e > i, isSpace(a[e - 1]) { e -= 1 }
                parts.append(str(a[i..<e])); break
            }
            var j = i
            while j < a.count, !isSpace(a[j]) { j += 1 }
            parts.append(str(a[i..<j])); i = j
        }
        return parts
    }

    static func splitlines(_ s: String) -> [String] {
        var lines: [String] = []
        var cur = String.UnicodeScalarView()
        let a = Array(s.unicodeScalars)
        var i = 0
        while i < a.count {
            let c = a[i]
            switch c.value {
            case 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029:
                lines.append(String(cur)); cur = String.UnicodeScalarView()
                if c == "\r", i + 1 < a.count, a[i + 1] == "\n" { i += 1 }
            default:
                cur.append(c)
            }
            i += 1
        }
        if !cur.isEmpty { lines.append(String(cur)) }
        return lines
    }

    /// Python `str.title()`: uppercase the first cased letter after an uncased character.
    static func title(_ s: String) -> String {
        var out = ""
        var prevCased = false
        for ch in s {
            if ch.isCased {
                out += prevCased ? ch.lowercased() : ch.uppercased()
                prevCased = true
            } else {
                out.append(ch)
                prevCased = false
            }
        }
        return out
    }

    static func capitalize(_ s: String) -> String {
        guard let f = s.first else { return s }
        return f.uppercased() + s.dropFirst().lowercased()
    }
}
