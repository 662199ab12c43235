import Foundation

/// An error parsing or rendering a chat template. Unsupported constructs are `.unsupported` errors that
/// name the construct and its position; `raise_exception(msg)` in a template is a `.raised` error whose
/// message is the template's own.
public struct ChatTemplateError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        case syntax, unsupported, raised, runtime, unknownTemplate
    }
    public var kind: Kind
    public var message: String
    public var position: JinjaPosition?

    public init(_ kind: Kind, _ message: String, _ position: JinjaPosition? = nil) {
        self.kind = kind
        self.message = message
        self.position = position
    }

    public var description: String {
        let label: String
        switch kind {
        case .syntax: label = "chat template syntax error"
        case .unsupported: label = "chat template uses an unsupported construct"
        case .raised: label = "chat template raised an exception"
        case .runtime: label = "chat template error"
        case .unknownTemplate: label = "unknown chat template"
        }
        if let p = position { return "\(label) at \(p): \(message)" }
        return "\(label): \(message)"
    }
}

extension ChatTemplateError: LocalizedError {
    public var errorDescription: String? { description }
}

/// One chat message. `content == nil` leaves the key out of the message (transformers drops
/// None-valued keys); `extra` adds fields such as `tool_calls`, `tool_call_id`, `name`
/// (an extra named "content" replaces `content`, e.g. for structured content).
public struct ChatMessage: Sendable {
    public var role: String
    public var content: String?
    public var extra: [(String, JinjaValue)]

    public init(role: String, content: String?, extra: [(String, JinjaValue)] = []) {
        self.role = role
        self.content = content
        self.extra = extra
    }

    public static func system(_ s: String) -> ChatMessage { ChatMessage(role: "system", content: s) }
    public static func user(_ s: String) -> ChatMessage { ChatMessage(role: "user", content: s) }
    public static func assistant(_ s: String) -> ChatMessage { ChatMessage(role: "assistant", content: s) }

    /// The message as the template sees it: `{"role": ..., "content": ..., **extra}` without None values.
    public var jinjaValue: JinjaValue {
        var o = JinjaObject()
        o["role"] = .string(role)
        if let content { o["content"] = .string(content) }
        for (k, v) in extra { o[k] = v.isNone ? nil : v }
        return .object(o)
    }
}

/// A Hugging Face `chat_template`, rendered like transformers' `apply_chat_template(tokenize=False)`:
/// jinja2 with `trim_blocks` and `lstrip_blocks`, variables `messages`, `tools` (None unless given),
/// `documents` (None), `add_generation_prompt`, the special tokens given (`bos_token`, `eos_token`; absent
/// when nil) and any extra keyword variables; globals `raise_exception`, `strftime_now`, `namespace`,
/// `range`, `dict`.
public struct ChatTemplate: @unchecked Sendable {
    public let source: String
    let nodes: [JinjaNode]

    /// Parses the template; unsupported statements, filters and tests are reported here with their position.
    public init(source: String) throws {
        self.source = source
        self.nodes = try JinjaParser.parse(source)
        try ChatTemplate.validate(nodes)
    }

    /// Renders the conversation.
    /// - Parameters:
    ///   - tools: JSON-schema tool descriptions (passed as `tools`; nil passes None).
    ///   - extra: additional template variables (e.g. `date_string`, `tools_in_user_message`, `builtin_tools`);
    ///     they override the defaults, like transformers' `**kwargs`.
    ///   - now: what `strftime_now` reads; `timeZone`: the zone it formats in (Python uses local time).
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool = false, bosToken: String? = nil,
                       eosToken: String? = nil, tools: [JinjaValue]? = nil, extra: [String: JinjaValue] = [:],
                       now: Date = Date(), timeZone: TimeZone = .current) throws -> String {
        try render(messageValues: messages.map(\.jinjaValue), addGenerationPrompt: addGenerationPrompt,
                   bosToken: bosToken, eosToken: eosToken, tools: tools, extra: extra, now: now, timeZone: timeZone)
    }

    /// Renders messages given as arbitrary values (dicts with any fields).
    public func render(messageValues: [JinjaValue], addGenerationPrompt: Bool = false, bosToken: String? = nil,
                       eosToken: String? = nil, tools: [JinjaValue]? = nil, extra: [String: JinjaValue] = [:],
                       now: Date = Date(), timeZone: TimeZone = .current) throws -> String {
        var vars = ChatTemplate.globals(now: now, timeZone: timeZone)
        if let bosToken { vars["bos_token"] = .string(bosToken) }
        if let eosToken { vars["eos_token"] = .string(eosToken) }
        vars["messages"] = .array(messageValues.map(ChatTemplate.dropNoneKeys))
        vars["tools"] = tools.map { JinjaValue.array($0) } ?? JinjaValue.none
        vars["documents"] = JinjaValue.none
        vars["add_generation_prompt"] = .bool(addGenerationPrompt)
        for (k, v) in extra { vars[k] = v }
        return try JinjaInterpreter(globals: vars).render(nodes)
    }

    static func dropNoneKeys(_ m: JinjaValue) -> JinjaValue {
        guard case .object(let o) = m else { return m }
        return .object(JinjaObject(o.pairs.filter { !$0.1.isNone }))
    }

    // MARK: globals

    static func globals(now: Date, timeZone: TimeZone) -> [String: JinjaValue] {
        var g: [String: JinjaValue] = [:]
        g["raise_exception"] = .function(JinjaFunction("raise_exception") { args, _ in
            throw ChatTemplateError(.raised, args.first?.pythonStr ?? "")
        })
        g["strftime_now"] = .function(JinjaFunction("strftime_now") { args, _ in
            guard case .string(let fmt)? = args.first else {
                throw ChatTemplateError(.runtime, "strftime_now() requires a format string")
            }
            return .string(try strftime(fmt, now, timeZone))
        })
        g["range"] = .function(JinjaFunction("range") { args, _ in
            let ints = try args.map { a -> Int in
                guard let i = a.intValue else {
                    throw ChatTemplateError(.runtime, "'\(a.typeName)' object cannot be interpreted as an integer")
                }
                return i
            }
            var start = 0, stop = 0, step = 1
            switch ints.count {
            case 1: stop = ints[0]
            case 2: start = ints[0]; stop = ints[1]
            case 3: start = ints[0]; stop = ints[1]; step = ints[2]
            default: throw ChatTemplateError(.runtime, "range expected 1 to 3 arguments, got \(ints.count)")
            }
            if step == 0 { throw ChatTemplateError(.runtime, "range() arg 3 must not be zero") }
            var out: [JinjaValue] = []
            var i = start
            while step > 0 ? i < stop : i > stop {
                out.append(.int(i))
                if out.count > 100_000 { throw ChatTemplateError(.runtime, "range too big") }
                i += step
            }
            return .array(out)
        })
        g["namespace"] = .function(JinjaFunction("namespace") { args, kwargs in
            var o = JinjaObject()
            for a in args {
                guard case .object(let d) = a else {
                    throw ChatTemplateError(.runtime, "namespace() positional argument must be a dict")
                }
                for (k, v) in d.pairs { o[k] = v }
            }
            for (k, v) in kwargs {
                if k.hasPrefix("_") {
                    throw ChatTemplateError(.runtime, "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(k)'.")
                }
                o[k] = v
            }
            return .namespace(JinjaNamespace(o))
        })
        g["dict"] = .function(JinjaFunction("dict") { args, kwargs in
            var o = JinjaObject()
            if let first = args.first {
                switch first {
                case .object(let d): for (k, v) in d.pairs { o[k] = v }
                case .array(let a):
                    for p in a {
                        guard case .array(let kv) = p, kv.count == 2, case .string(let k) = kv[0] else {
                            throw ChatTemplateError(.runtime, "dict() sequence elements must be (str, value) pairs")
                        }
                        o[k] = kv[1]
                    }
                default: throw ChatTemplateError(.runtime, "dict() argument must be a mapping or pairs")
                }
            }
            for (k, v) in kwargs { o[k] = v }
            return .object(o)
        })
        return g
    }

    /// Python `datetime.strftime` for the directives chat templates use (C locale names).
    static func strftime(_ fmt: String, _ date: Date, _ tz: TimeZone) throws -> String {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = tz
        let c = cal.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        let months = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                      "October", "November", "December"]
        let days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
        let y = c.year!, mo = c.month!, d = c.day!, h = c.hour!, mi = c.minute!, s = c.second!, wd = c.weekday! - 1
        let yday = cal.ordinality(of: .day, in: .year, for: date) ?? 1
        var out = ""
        var it = Array(fmt)
        var i = 0
        func pad(_ v: Int, _ w: Int, _ noPad: Bool) -> String {
            let t = String(v)
            return noPad ? t : String(repeating: "0", count: max(0, w - t.count)) + t
        }
        while i < it.count {
            let ch = it[i]
            guard ch == "%", i + 1 < it.count else { out.append(ch); i += 1; continue }
            var j = i + 1
            var noPad = false
            if it[j] == "-", j + 1 < it.count { noPad = true; j += 1 }
            let dch = it[j]
            switch dch {
            case "d": out += pad(d, 2, noPad)
            case "e": out += noPad ? String(d) : (d < 10 ? " \(d)" : String(d))
            case "m": out += pad(mo, 2, noPad)
            case "Y": out += String(y)
            case "y": out += pad(y % 100, 2, noPad)
            case "H": out += pad(h, 2, noPad)
            case "I": out += pad(h % 12 == 0 ? 12 : h % 12, 2, noPad)
            case "M": out += pad(mi, 2, noPad)
            case "S": out += pad(s, 2, noPad)
            case "p": out += h < 12 ? "AM" : "PM"
            case "b", "h": out += String(months[mo - 1].prefix(3))
            case "B": out += months[mo - 1]
            case "a": out += String(days[wd].prefix(3))
            case "A": out += days[wd]
            case "w": out += String(wd)
            case "j": out += pad(yday, 3, noPad)
            case "%": out += "%"
            default:
                throw ChatTemplateError(.unsupported, "unsupported strftime directive '%\(dch)'")
            }
            i = j + 1
        }
        it.removeAll()
        return out
    }

    // MARK: validation (unknown filters and tests are errors up front, as in jinja2's compiler)

    static func validate(_ nodes: [JinjaNode]) throws {
        for n in nodes {
            switch n {
            case .text, .breakLoop, .continueLoop: break
            case .output(let e, _): try validate(e)
            case .ifBlock(let branches, let elseBody):
                for (c, b) in branches { try validate(c); try validate(b) }
                if let elseBody { try validate(elseBody) }
            case .forBlock(_, let iter, let filter, let body, let elseBody, _):
                try validate(iter)
                if let filter { try validate(filter) }
                try validate(body)
                if let elseBody { try validate(elseBody) }
            case .set(_, let e, _): try validate(e)
            case .setBlock(_, let b), .generation(let b): try validate(b)
            case .macro(_, let params, let body):
                for (_, d) in params { if let d { try validate(d) } }
                try validate(body)
            case .callBlock(let call, _, let body, _): try validate(call); try validate(body)
            case .filterBlock(let name, let args, let kwargs, let body, let pos):
                guard JinjaInterpreter.filterNames.contains(name) else {
                    throw ChatTemplateError(.unsupported, "unknown filter '\(name)'", pos)
                }
                for a in args { try validate(a) }
                for (_, a) in kwargs { try validate(a) }
                try validate(body)
            }
        }
    }

    static func validate(_ e: JinjaExpr) throws {
        switch e {
        case .literal, .name: break
        case .list(let items): for x in items { try validate(x) }
        case .dict(let pairs): for (k, v) in pairs { try validate(k); try validate(v) }
        case .getattr(let b, _, _): try validate(b)
        case .getitem(let b, let i, _): try validate(b); try validate(i)
        case .slice(let b, let x, let y, let z, _):
            try validate(b)
            for p in [x, y, z] { if let p { try validate(p) } }
        case .call(let f, let args, let kwargs, _):
            try validate(f)
            for a in args { try validate(a) }
            for (_, a) in kwargs { try validate(a) }
        case .filter(let b, let name, let args, let kwargs, let pos):
            guard JinjaInterpreter.filterNames.contains(name) else {
                throw ChatTemplateError(.unsupported, "unknown filter '\(name)'", pos)
            }
            try validate(b)
            for a in args { try validate(a) }
            for (_, a) in kwargs { try validate(a) }
        case .test(let b, let name, let args, _, let pos):
            guard JinjaInterpreter.testNames.contains(name) else {
                throw ChatTemplateError(.unsupported, "unknown test '\(name)'", pos)
            }
            try validate(b)
            for a in args { try validate(a) }
        case .not(let x), .neg(let x, _): try validate(x)
        case .binary(_, let a, let b, _), .and(let a, let b), .or(let a, let b): try validate(a); try validate(b)
        case .compare(let a, let ops, _):
            try validate(a)
            for (_, b) in ops { try validate(b) }
        case .ternary(let c, let t, let f):
            try validate(c); try validate(t)
            if let f { try validate(f) }
        }
    }
}
