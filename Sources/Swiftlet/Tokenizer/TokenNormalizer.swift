import Foundation

/// `tokenizer.json` normalizers that Swiftlet supports. Text is handled as arrays of Unicode scalar values.
indirect enum TokenNormalizer {
    case sequence([TokenNormalizer])
    /// Prepends `prefix` to a non-empty string.
    case prepend([UInt32])
    /// Replaces every (non-overlapping, left to right) occurrence of a literal string.
    case replace(pattern: [UInt32], content: [UInt32])
    case nfc, nfd, nfkc, nfkd

    static func parse(_ json: TokenizerJSON, file: String, field: String) throws -> TokenNormalizer? {
        if json.isNull { return nil }
        guard let type = json["type"]?.stringValue else {
            throw TokenizerError.invalidField(file: file, field: "\(field).type", reason: "missing")
        }
        switch type {
        case "Sequence":
            guard let items = json["normalizers"]?.arrayValue else {
                throw TokenizerError.invalidField(file: file, field: "\(field).normalizers", reason: "expected a list")
            }
            return .sequence(try items.enumerated().compactMap {
                try parse($0.element, file: file, field: "\(field).normalizers[\($0.offset)]")
            })
        case "Prepend":
            guard let p = json["prepend"]?.stringValue else {
                throw TokenizerError.invalidField(file: file, field: "\(field).prepend", reason: "expected a string")
            }
            return .prepend(scalarValues(p))
        case "Replace":
            return try parseReplace(json, file: file, field: field)
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        default:
            throw TokenizerError.unsupported(file: file, field: "\(field).type", value: "\"\(type)\"")
        }
    }

    static func parseReplace(_ json: TokenizerJSON, file: String, field: String) throws -> TokenNormalizer {
        guard let pattern = json["pattern"] else {
            throw TokenizerError.invalidField(file: file, field: "\(field).pattern", reason: "missing")
        }
        guard let literal = pattern["String"]?.stringValue else {
            throw TokenizerError.unsupported(file: file, field: "\(field).pattern",
                                             value: "a Regex pattern (only {\"String\": ...} is supported)")
        }
        guard let content = json["content"]?.stringValue else {
            throw TokenizerError.invalidField(file: file, field: "\(field).content", reason: "expected a string")
        }
        return .replace(pattern: scalarValues(literal), content: scalarValues(content))
    }

    func normalize(_ s: [UInt32]) -> [UInt32] {
        switch self {
        case let .sequence(items):
            var out = s
            for n in items { out = n.normalize(out) }
            return out
        case let .prepend(prefix):
            return s.isEmpty ? s : prefix + s
        case let .replace(pattern, content):
            return TokenNormalizer.replaceAll(s, pattern, content)
        case .nfc: return TokenNormalizer.unicode(s) { $0.precomposedStringWithCanonicalMapping }
        case .nfd: return TokenNormalizer.unicode(s) { $0.decomposedStringWithCanonicalMapping }
        case .nfkc: return TokenNormalizer.unicode(s) { $0.precomposedStringWithCompatibilityMapping }
        case .nfkd: return TokenNormalizer.unicode(s) { $0.decomposedStringWithCompatibilityMapping }
        }
    }

    private static func unicode(_ s: [UInt32], _ f: (String) -> String) -> [UInt32] {
        if s.allSatisfy({ $0 < 0x80 }) { return s }  // ASCII is invariant under every normal form
        return scalarValues(f(stringFromScalars(s)))
    }

    static func replaceAll(_ s: [UInt32], _ pattern: [UInt32], _ content: [UInt32]) -> [UInt32] {
        guard !pattern.isEmpty, s.count >= pattern.count else { return s }
        var out: [UInt32] = []
        out.reserveCapacity(s.count)
        var i = 0
        let first = pattern[0]
        let m = pattern.count
        while i < s.count {
            if s[i] == first, i + m <= s.count, m == 1 || s[i..<i + m].elementsEqual(pattern) {
                out.append(contentsOf: content)
                i += m
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return out
    }
}
