import Foundation

/// Expressions of the supported Jinja subset.
indirect enum JinjaExpr {
    case literal(JinjaValue)
    case name(String, JinjaPosition)
    case list([JinjaExpr])
    case dict([(JinjaExpr, JinjaExpr)])
    case getattr(JinjaExpr, String, JinjaPosition)
    case getitem(JinjaExpr, JinjaExpr, JinjaPosition)
    case slice(JinjaExpr, JinjaExpr?, JinjaExpr?, JinjaExpr?, JinjaPosition)
    case call(JinjaExpr, [JinjaExpr], [(String, JinjaExpr)], JinjaPosition)
    case filter(JinjaExpr, String, [JinjaExpr], [(String, JinjaExpr)], JinjaPosition)
    case test(JinjaExpr, String, [JinjaExpr], negated: Bool, JinjaPosition)
    case not(JinjaExpr)
    case neg(JinjaExpr, JinjaPosition)
    case binary(String, JinjaExpr, JinjaExpr, JinjaPosition)
    case and(JinjaExpr, JinjaExpr)
    case or(JinjaExpr, JinjaExpr)
    case compare(JinjaExpr, [(String, JinjaExpr)], JinjaPosition)
    case ternary(cond: JinjaExpr, then: JinjaExpr, else: JinjaExpr?)
}

enum JinjaSetTarget {
    case names([String])
    case attribute(String, String)  // ns.attr
}

/// Statements.
indirect enum JinjaNode {
    case text(String)
    case output(JinjaExpr, JinjaPosition)
    case ifBlock([(JinjaExpr, [JinjaNode])], [JinjaNode]?)
    case forBlock(targets: [String], iter: JinjaExpr, filter: JinjaExpr?, body: [JinjaNode], elseBody: [JinjaNode]?, JinjaPosition)
    case set(JinjaSetTarget, JinjaExpr, JinjaPosition)
    case setBlock(String, [JinjaNode])
    case macro(name: String, params: [(String, JinjaExpr?)], body: [JinjaNode])
    case callBlock(call: JinjaExpr, params: [(String, JinjaExpr?)], body: [JinjaNode], JinjaPosition)
    case filterBlock(name: String, args: [JinjaExpr], kwargs: [(String, JinjaExpr)], body: [JinjaNode], JinjaPosition)
    case breakLoop(JinjaPosition)
    case continueLoop(JinjaPosition)
    case generation([JinjaNode])  // transformers' {% generation %} tag: renders its body
}

struct JinjaParser {
    private var toks: [JinjaToken]
    private var k = 0

    init(tokens: [JinjaToken]) { self.toks = tokens }

    static func parse(_ source: String) throws -> [JinjaNode] {
        var lexer = JinjaLexer()
        var p = JinjaParser(tokens: try lexer.tokenize(source))
        let (nodes, end) = try p.parseBody(until: [])
        if let end { throw ChatTemplateError(.syntax, "unexpected '{% \(end.0) %}'", end.1) }
        return nodes
    }

    // MARK: token helpers

    private var cur: JinjaToken { toks[k] }
    private var peek: JinjaToken { toks[min(k + 1, toks.count - 1)] }
    private mutating func next() -> JinjaToken { let t = toks[k]; if k < toks.count - 1 { k += 1 }; return t }

    private func isOp(_ s: String) -> Bool { if case .op(let o) = cur.kind { return o == s }; return false }
    private func isName(_ s: String) -> Bool { if case .name(let n) = cur.kind { return n == s }; return false }
    private mutating func skipOp(_ s: String) -> Bool { if isOp(s) { k += 1; return true }; return false }
    private mutating func skipName(_ s: String) -> Bool { if isName(s) { k += 1; return true }; return false }

    private func describe(_ t: JinjaToken) -> String {
        switch t.kind {
        case .text: return "template text"
        case .varBegin: return "'{{'"
        case .varEnd: return "'}}'"
        case .blockBegin: return "'{%'"
        case .blockEnd: return "'%}'"
        case .name(let n): return "'\(n)'"
        case .string(let s): return "string \(JinjaValue.pythonStringRepr(s))"
        case .int(let i): return "\(i)"
        case .float(let d): return "\(d)"
        case .op(let o): return "'\(o)'"
        case .eof: return "end of template"
        }
    }

    private mutating func expectOp(_ s: String) throws {
        guard skipOp(s) else { throw ChatTemplateError(.syntax, "expected '\(s)', got \(describe(cur))", cur.pos) }
    }
    private mutating func expectName() throws -> String {
        guard case .name(let n) = cur.kind else {
            throw ChatTemplateError(.syntax, "expected a name, got \(describe(cur))", cur.pos)
        }
        k += 1
        return n
    }
    private mutating func expectBlockEnd() throws {
        guard case .blockEnd = cur.kind else {
            throw ChatTemplateError(.syntax, "expected '%}', got \(describe(cur))", cur.pos)
        }
        k += 1
    }

    // MARK: statements

    /// Parses nodes until a block tag whose keyword is in `until`; returns that keyword (tag consumed
    /// up to the keyword) or nil at end of template.
    private mutating func parseBody(until: Set<String>) throws -> ([JinjaNode], (String, JinjaPosition)?) {
        var nodes: [JinjaNode] = []
        while true {
            let t = cur
            switch t.kind {
            case .eof:
                return (nodes, nil)
            case .text(let s):
                k += 1
                nodes.append(.text(s))
            case .varBegin:
                k += 1
                let e = try parseExpression()
                guard case .varEnd = cur.kind else {
                    throw ChatTemplateError(.syntax, "expected '}}', got \(describe(cur))", cur.pos)
                }
                k += 1
                nodes.append(.output(e, t.pos))
            case .blockBegin:
                k += 1
                let kwPos = cur.pos
                let kw = try expectName()
                if until.contains(kw) { return (nodes, (kw, kwPos)) }
                nodes.append(try parseStatement(kw, kwPos))
            default:
                throw ChatTemplateError(.syntax, "unexpected \(describe(t))", t.pos)
            }
        }
    }

    private mutating func parseStatement(_ kw: String, _ pos: JinjaPosition) throws -> JinjaNode {
        switch kw {
        case "if": return try parseIf()
        case "for": return try parseFor(pos)
        case "set": return try parseSet(pos)
        case "macro": return try parseMacro()
        case "call": return try parseCallBlock(pos)
        case "filter": return try parseFilterBlock(pos)
        case "break": try expectBlockEnd(); return .breakLoop(pos)
        case "continue": try expectBlockEnd(); return .continueLoop(pos)
        case "generation":
            try expectBlockEnd()
            let (body, end) = try parseBody(until: ["endgeneration"])
            try close(end, "endgeneration", pos)
            return .generation(body)
        case "include", "import", "from", "extends", "block", "with", "autoescape", "trans", "do":
            throw ChatTemplateError(.unsupported, "unsupported statement '{% \(kw) %}'", pos)
        case "elif", "else", "endif", "endfor", "endset", "endmacro", "endcall", "endfilter", "endgeneration":
            throw ChatTemplateError(.syntax, "unexpected '{% \(kw) %}'", pos)
        default:
            throw ChatTemplateError(.unsupported, "unknown statement '{% \(kw) %}'", pos)
        }
    }

    private mutating func close(_ end: (String, JinjaPosition)?, _ want: String, _ open: JinjaPosition) throws {
        guard let end, end.0 == want else {
            throw ChatTemplateError(.syntax, "missing '{% \(want) %}' for the block opened at \(open)", end?.1 ?? open)
        }
        try expectBlockEnd()
    }

    private mutating func parseIf() throws -> JinjaNode {
        var branches: [(JinjaExpr, [JinjaNode])] = []
        var elseBody: [JinjaNode]? = nil
        let openPos = cur.pos
        var cond = try parseExpression()
        while true {
            try expectBlockEnd()
            let (body, end) = try parseBody(until: ["elif", "else", "endif"])
            branches.append((cond, body))
            guard let end else {
                throw ChatTemplateError(.syntax, "missing '{% endif %}' for the 'if' at \(openPos)", openPos)
            }
            if end.0 == "elif" { cond = try parseExpression(); continue }
            if end.0 == "else" {
                try expectBlockEnd()
                let (eb, end2) = try parseBody(until: ["endif"])
                elseBody = eb
                try close(end2, "endif", openPos)
            } else {
                try expectBlockEnd()
            }
            return .ifBlock(branches, elseBody)
        }
    }

    private mutating func parseFor(_ pos: JinjaPosition) throws -> JinjaNode {
        var targets = [try expectName()]
        while skipOp(",") { targets.append(try expectName()) }
        guard skipName("in") else { throw ChatTemplateError(.syntax, "expected 'in' in for loop", cur.pos) }
        let iter = try parseTernaryFree()
        var filter: JinjaExpr? = nil
        if skipName("if") { filter = try parseTernaryFree() }
        if isName("recursive") {
            throw ChatTemplateError(.unsupported, "unsupported recursive for loop", cur.pos)
        }
        try expectBlockEnd()
        let (body, end) = try parseBody(until: ["else", "endfor"])
        var elseBody: [JinjaNode]? = nil
        if let end, end.0 == "else" {
            try expectBlockEnd()
            let (eb, end2) = try parseBody(until: ["endfor"])
            elseBody = eb
            try close(end2, "endfor", pos)
        } else {
            try close(end, "endfor", pos)
        }
        return .forBlock(targets: targets, iter: iter, filter: filter, body: body, elseBody: elseBody, pos)
    }

    private mutating func parseSet(_ pos: JinjaPosition) throws -> JinjaNode {
        let first = try expectName()
        if skipOp(".") {
            let attr = try expectName()
            try expectOp("=")
            let e = try parseExpression()
            try expectBlockEnd()
            return .set(.attribute(first, attr), e, pos)
        }
        var names = [first]
        while skipOp(",") { names.append(try expectName()) }
        if case .blockEnd = cur.kind, names.count == 1 {
            k += 1
            let (body, end) = try parseBody(until: ["endset"])
            try close(end, "endset", pos)
            return .setBlock(first, body)
        }
        if isOp("|") {
            throw ChatTemplateError(.unsupported, "unsupported filtered block set", cur.pos)
        }
        try expectOp("=")
        var e = try parseExpression()
        if isOp(",") {  // set a, b = x, y
            var items = [e]
            while skipOp(",") { items.append(try parseExpression()) }
            e = .list(items)
        }
        try expectBlockEnd()
        return .set(.names(names), e, pos)
    }

    private mutating func parseParams() throws -> [(String, JinjaExpr?)] {
        var params: [(String, JinjaExpr?)] = []
        if skipOp("(") {
            while !isOp(")") {
                let n = try expectName()
                var d: JinjaExpr? = nil
                if skipOp("=") { d = try parseExpression() }
                params.append((n, d))
                if !skipOp(",") { break }
            }
            try expectOp(")")
        }
        return params
    }

    private mutating func parseMacro() throws -> JinjaNode {
        let pos = cur.pos
        let name = try expectName()
        let params = try parseParams()
        try expectBlockEnd()
        let (body, end) = try parseBody(until: ["endmacro"])
        try close(end, "endmacro", pos)
        return .macro(name: name, params: params, body: body)
    }

    private mutating func parseCallBlock(_ pos: JinjaPosition) throws -> JinjaNode {
        let params = isOp("(") ? try parseParams() : []
        let call = try parseExpression()
        guard case .call = call else { throw ChatTemplateError(.syntax, "expected a call in '{% call %}'", pos) }
        try expectBlockEnd()
        let (body, end) = try parseBody(until: ["endcall"])
        try close(end, "endcall", pos)
        return .callBlock(call: call, params: params, body: body, pos)
    }

    private mutating func parseFilterBlock(_ pos: JinjaPosition) throws -> JinjaNode {
        let name = try expectName()
        var args: [JinjaExpr] = [], kwargs: [(String, JinjaExpr)] = []
        if isOp("(") { (args, kwargs) = try parseCallArgs() }
        try expectBlockEnd()
        let (body, end) = try parseBody(until: ["endfilter"])
        try close(end, "endfilter", pos)
        return .filterBlock(name: name, args: args, kwargs: kwargs, body: body, pos)
    }

    // MARK: expressions (jinja2's precedence)

    mutating func parseExpression() throws -> JinjaExpr {
        var e = try parseOr()
        while skipName("if") {
            let cond = try parseOr()
            var alt: JinjaExpr? = nil
            if skipName("else") { alt = try parseExpression() }
            e = .ternary(cond: cond, then: e, else: alt)
        }
        return e
    }

    /// For loop iterables and filters: no bare `if` ternary (jinja2 parses these with with_condexpr=False).
    private mutating func parseTernaryFree() throws -> JinjaExpr { try parseOr() }

    private mutating func parseOr() throws -> JinjaExpr {
        var e = try parseAnd()
        while skipName("or") { e = .or(e, try parseAnd()) }
        return e
    }

    private mutating func parseAnd() throws -> JinjaExpr {
        var e = try parseNot()
        while skipName("and") { e = .and(e, try parseNot()) }
        return e
    }

    private mutating func parseNot() throws -> JinjaExpr {
        if skipName("not") { return .not(try parseNot()) }
        return try parseCompare()
    }

    private mutating func parseCompare() throws -> JinjaExpr {
        let pos = cur.pos
        let e = try parseMath1()
        var ops: [(String, JinjaExpr)] = []
        while true {
            if case .op(let o) = cur.kind, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                k += 1
                ops.append((o, try parseMath1()))
            } else if skipName("in") {
                ops.append(("in", try parseMath1()))
            } else if isName("not"), case .name("in") = peek.kind {
                k += 2
                ops.append(("notin", try parseMath1()))
            } else {
                break
            }
        }
        return ops.isEmpty ? e : .compare(e, ops, pos)
    }

    private mutating func parseMath1() throws -> JinjaExpr {
        var e = try parseConcat()
        while case .op(let o) = cur.kind, o == "+" || o == "-" {
            let p = cur.pos
            k += 1
            e = .binary(o, e, try parseConcat(), p)
        }
        return e
    }

    private mutating func parseConcat() throws -> JinjaExpr {
        var e = try parseMath2()
        while isOp("~") {
            let p = cur.pos
            k += 1
            e = .binary("~", e, try parseMath2(), p)
        }
        return e
    }

    private mutating func parseMath2() throws -> JinjaExpr {
        var e = try parsePow()
        while case .op(let o) = cur.kind, ["*", "/", "//", "%"].contains(o) {
            let p = cur.pos
            k += 1
            e = .binary(o, e, try parsePow(), p)
        }
        return e
    }

    private mutating func parsePow() throws -> JinjaExpr {
        var e = try parseUnary(withFilter: true)
        while isOp("**") {
            let p = cur.pos
            k += 1
            e = .binary("**", e, try parseUnary(withFilter: true), p)
        }
        return e
    }

    private mutating func parseUnary(withFilter: Bool) throws -> JinjaExpr {
        var e: JinjaExpr
        let p = cur.pos
        if skipOp("-") {
            e = .neg(try parseUnary(withFilter: false), p)
        } else if skipOp("+") {
            e = try parseUnary(withFilter: false)
        } else {
            e = try parsePrimary()
        }
        e = try parsePostfix(e)
        if withFilter { e = try parseFilterExpr(e) }
        return e
    }

    private mutating func parsePrimary() throws -> JinjaExpr {
        let t = next()
        switch t.kind {
        case .name(let n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n, t.pos)
            }
        case .string(var s):
            while case .string(let more) = cur.kind { s += more; k += 1 }  // adjacent literals concatenate
            return .literal(.string(s))
        case .int(let i): return .literal(.int(i))
        case .float(let d): return .literal(.double(d))
        case .op("("):
            if skipOp(")") { return .list([]) }  // empty tuple
            let e = try parseExpression()
            if isOp(",") {
                var items = [e]
                while skipOp(",") {
                    if isOp(")") { break }
                    items.append(try parseExpression())
                }
                try expectOp(")")
                return .list(items)
            }
            try expectOp(")")
            return e
        case .op("["):
            var items: [JinjaExpr] = []
            while !isOp("]") {
                items.append(try parseExpression())
                if !skipOp(",") { break }
            }
            try expectOp("]")
            return .list(items)
        case .op("{"):
            var pairs: [(JinjaExpr, JinjaExpr)] = []
            while !isOp("}") {
                let key = try parseExpression()
                try expectOp(":")
                pairs.append((key, try parseExpression()))
                if !skipOp(",") { break }
            }
            try expectOp("}")
            return .dict(pairs)
        default:
            throw ChatTemplateError(.syntax, "unexpected \(describe(t))", t.pos)
        }
    }

    private mutating func parsePostfix(_ base: JinjaExpr) throws -> JinjaExpr {
        var e = base
        while true {
            let p = cur.pos
            if skipOp(".") {
                switch next().kind {
                case .name(let n): e = .getattr(e, n, p)
                case .int(let i): e = .getitem(e, .literal(.int(i)), p)
                default: throw ChatTemplateError(.syntax, "expected an attribute name after '.'", p)
                }
            } else if skipOp("[") {
                e = try parseSubscript(e, p)
            } else if isOp("(") {
                let (args, kwargs) = try parseCallArgs()
                e = .call(e, args, kwargs, p)
            } else {
                return e
            }
        }
    }

    private mutating func parseSubscript(_ base: JinjaExpr, _ p: JinjaPosition) throws -> JinjaExpr {
        var parts: [JinjaExpr?] = []
        var isSlice = false
        var current: JinjaExpr? = nil
        while true {
            if isOp(":") {
                isSlice = true
                k += 1
                parts.append(current)
                current = nil
                continue
            }
            if isOp("]") { k += 1; break }
            if current != nil { throw ChatTemplateError(.syntax, "unexpected \(describe(cur)) in subscript", cur.pos) }
            current = try parseExpression()
            if isOp(",") {
                throw ChatTemplateError(.unsupported, "unsupported tuple subscript", cur.pos)
            }
        }
        parts.append(current)
        if !isSlice {
            guard let idx = parts[0] else { throw ChatTemplateError(.syntax, "empty subscript", p) }
            return .getitem(base, idx, p)
        }
        guard parts.count <= 3 else { throw ChatTemplateError(.syntax, "too many ':' in slice", p) }
        while parts.count < 3 { parts.append(nil) }
        return .slice(base, parts[0], parts[1], parts[2], p)
    }

    private mutating func parseCallArgs() throws -> ([JinjaExpr], [(String, JinjaExpr)]) {
        try expectOp("(")
        var args: [JinjaExpr] = []
        var kwargs: [(String, JinjaExpr)] = []
        while !isOp(")") {
            if case .name(let n) = cur.kind, case .op("=") = peek.kind {
                k += 2
                kwargs.append((n, try parseExpression()))
            } else {
                if isOp("*") || isOp("**") {
                    throw ChatTemplateError(.unsupported, "unsupported *args/**kwargs in call", cur.pos)
                }
                args.append(try parseExpression())
            }
            if !skipOp(",") { break }
        }
        try expectOp(")")
        return (args, kwargs)
    }

    private mutating func parseFilterExpr(_ base: JinjaExpr) throws -> JinjaExpr {
        var e = base
        while true {
            let p = cur.pos
            if skipOp("|") {
                var name = try expectName()
                while isOp("."), case .name(let more) = peek.kind { k += 2; name += "." + more }
                var args: [JinjaExpr] = [], kwargs: [(String, JinjaExpr)] = []
                if isOp("(") { (args, kwargs) = try parseCallArgs() }
                e = .filter(e, name, args, kwargs, p)
            } else if isName("is") {
                k += 1
                let negated = skipName("not")
                var name = try expectName()
                while isOp("."), case .name(let more) = peek.kind { k += 2; name += "." + more }
                var args: [JinjaExpr] = []
                if isOp("(") {
                    let (a, kw) = try parseCallArgs()
                    if !kw.isEmpty { throw ChatTemplateError(.unsupported, "unsupported keyword arguments to test '\(name)'", p) }
                    args = a
                } else {
                    switch cur.kind {
                    case .name(let n) where !["else", "or", "and"].contains(n):
                        args = [try parsePostfix(try parsePrimary())]
                    case .string, .int, .float, .op("["), .op("{"):
                        args = [try parsePostfix(try parsePrimary())]
                    default: break
                    }
                }
                e = .test(e, name, args, negated: negated, p)
            } else if isOp("(") {
                let (args, kwargs) = try parseCallArgs()
                e = .call(e, args, kwargs, p)
            } else {
                return e
            }
        }
    }
}
