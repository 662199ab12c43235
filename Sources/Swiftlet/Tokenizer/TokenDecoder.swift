/// `tokenizer.json` decoders that Swiftlet supports; each transforms the list of token strings
/// (as scalar arrays) like the `decode_chain` of `tokenizers`, and the result is concatenated.
indirect enum TokenDecoder {
    case sequence([TokenDecoder])
    case replace(pattern: [UInt32], content: [UInt32])
    case byteFallback
    case fuse
    case strip(content: UInt32, start: Int, stop: Int)
    case metaspace(replacement: UInt32, prependScheme: PrependScheme)
    case byteLevel

    static func parse(_ json: TokenizerJSON, file: String, field: String) throws -> TokenDecoder? {
        if json.isNull { return nil }
        guard let type = json["type"]?.stringValue else {
            throw TokenizerError.invalidField(file: file, field: "\(field).type", reason: "missing")
        }
        switch type {
        case "Sequence":
            guard let items = json["decoders"]?.arrayValue else {
                throw TokenizerError.invalidField(file: file, field: "\(field).decoders", reason: "expected a list")
            }
            return .sequence(try items.enumerated().compactMap {
                try parse($0.element, file: file, field: "\(field).decoders[\($0.offset)]")
            })
        case "Replace":
            guard case let .replace(p, c) = try TokenNormalizer.parseReplace(json, file: file, field: field) else {
                fatalError("unreachable")
            }
            return .replace(pattern: p, content: c)
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Strip":
            let content = scalarValues(json["content"]?.stringValue ?? " ")
            guard content.count == 1, let start = json["start"]?.intValue, let stop = json["stop"]?.intValue,
                  start >= 0, stop >= 0 else {
                throw TokenizerError.invalidField(file: file, field: field, reason: "expected content (one char), start, stop")
            }
            return .strip(content: content[0], start: start, stop: stop)
        case "Metaspace":
            let r = scalarValues(json["replacement"]?.stringValue ?? json["str_rep"]?.stringValue ?? "\u{2581}")
            guard r.count == 1 else {
                throw TokenizerError.invalidField(file: file, field: "\(field).replacement", reason: "expected one character")
            }
            return .metaspace(replacement: r[0], prependScheme: try PreTokenizer.parsePrependScheme(json, file: file, field: field))
        case "ByteLevel": return .byteLevel
        default:
            throw TokenizerError.unsupported(file: file, field: "\(field).type", value: "\"\(type)\"")
        }
    }

    func decodeChain(_ tokens: [[UInt32]]) -> [[UInt32]] {
        switch self {
        case let .sequence(items):
            var t = tokens
            for d in items { t = d.decodeChain(t) }
            return t
        case let .replace(pattern, content):
            return tokens.map { TokenNormalizer.replaceAll($0, pattern, content) }
        case .byteFallback:
            var out: [[UInt32]] = []
            var pending: [UInt8] = []
            func flush() {
                if pending.isEmpty { return }
                if let s = scalarsFromUTF8(pending, lossy: false) {
                    out.append(s)
                } else {
                    for _ in pending { out.append([0xFFFD]) }
                }
                pending.removeAll()
            }
            for t in tokens {
                if let b = TokenDecoder.fallbackByte(t) {
                    pending.append(b)
                } else {
                    flush()
                    out.append(t)
                }
            }
            flush()
            return out
        case .fuse:
            return [tokens.flatMap { $0 }]
        case let .strip(content, start, stop):
            return tokens.map { t in
                var startCut = 0
                for i in 0..<min(start, t.count) {
                    if t[i] == content { startCut = i + 1 } else { break }
                }
                var stopCut = t.count
                if stop > 0 {
                    for i in 0..<stop {
                        let index = t.count - i - 1
                        guard index >= 0 else { break }
                        if t[index] == content { stopCut = index } else { break }
                    }
                }
                return stopCut > startCut ? Array(t[startCut..<stopCut]) : []
            }
        case let .metaspace(replacement, scheme):
            return tokens.enumerated().map { i, t in
                var out: [UInt32] = []
                out.reserveCapacity(t.count)
                for c in t {
                    if c == replacement {
                        if !(i == 0 && scheme != .never) { out.append(0x20) }
                    } else {
                        out.append(c)
                    }
                }
                return out
            }
        case .byteLevel:
            var bytes: [UInt8] = []
            for t in tokens {
                var mapped: [UInt8] = []
                mapped.reserveCapacity(t.count)
                var ok = true
                for c in t {
                    let b = ByteLevelMap.byte(of: c)
                    if b < 0 { ok = false; break }
                    mapped.append(UInt8(b))
                }
                if ok { bytes.append(contentsOf: mapped) } else { utf8Bytes(t, into: &bytes) }
            }
            return [scalarsFromUTF8(bytes, lossy: true)!]
        }
    }

    /// "<0xXX>" (6 bytes, parsed like Rust's `u8::from_str_radix(&token[3..5], 16)`).
    static func fallbackByte(_ t: [UInt32]) -> UInt8? {
        guard t.count == 6, t[0] == 0x3C, t[1] == 0x30, t[2] == 0x78, t[5] == 0x3E else { return nil }
        func hex(_ v: UInt32) -> UInt8? {
            switch v {
            case 0x30...0x39: return UInt8(v - 0x30)
            case 0x41...0x46: return UInt8(v - 0x41 + 10)
            case 0x61...0x66: return UInt8(v - 0x61 + 10)
            default: return nil
            }
        }
        if t[3] == 0x2B, let lo = hex(t[4]) { return lo }  // "+F" parses in Rust
        guard let hi = hex(t[3]), let lo = hex(t[4]) else { return nil }
        return hi << 4 | lo
    }
}
