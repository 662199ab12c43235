/// `tokenizer.json` post-processors that Swiftlet supports (for single sequences).
indirect enum PostProcessor {
    /// TemplateProcessing `single`: special token ids and `$A` (the sequence).
    case template([TemplatePiece])
    /// ByteLevel only trims offsets: ids are unchanged.
    case byteLevel
    case sequence([PostProcessor])

    enum TemplatePiece { case special([Int32]), sequence }

    static func parse(_ json: TokenizerJSON, file: String, field: String) throws -> PostProcessor? {
        if json.isNull { return nil }
        guard let type = json["type"]?.stringValue else {
            throw TokenizerError.invalidField(file: file, field: "\(field).type", reason: "missing")
        }
        switch type {
        case "ByteLevel": return .byteLevel
        case "Sequence":
            guard let items = json["processors"]?.arrayValue else {
                throw TokenizerError.invalidField(file: file, field: "\(field).processors", reason: "expected a list")
            }
            return .sequence(try items.enumerated().compactMap {
                try parse($0.element, file: file, field: "\(field).processors[\($0.offset)]")
            })
        case "TemplateProcessing":
            guard let single = json["single"]?.arrayValue else {
                throw TokenizerError.invalidField(file: file, field: "\(field).single", reason: "expected a list")
            }
            let specials = json["special_tokens"]
            var pieces: [TemplatePiece] = []
            for (i, item) in single.enumerated() {
                if let seq = item["Sequence"] {
                    guard seq["id"]?.stringValue == "A" else {
                        throw TokenizerError.unsupported(file: file, field: "\(field).single[\(i)].Sequence.id", value: "not A")
                    }
                    pieces.append(.sequence)
                } else if let sp = item["SpecialToken"], let name = sp["id"]?.stringValue {
                    guard let ids = specials?[name]?["ids"]?.arrayValue?.compactMap({ $0.intValue }) else {
                        throw TokenizerError.invalidField(file: file, field: "\(field).special_tokens[\"\(name)\"].ids",
                                                          reason: "missing")
                    }
                    pieces.append(.special(ids.map { Int32($0) }))
                } else {
                    throw TokenizerError.invalidField(file: file, field: "\(field).single[\(i)]",
                                                      reason: "expected Sequence or SpecialToken")
                }
            }
            return .template(pieces)
        default:
            throw TokenizerError.unsupported(file: file, field: "\(field).type", value: "\"\(type)\"")
        }
    }

    func process(_ ids: [Int32], addSpecialTokens: Bool) -> [Int32] {
        switch self {
        case .byteLevel: return ids
        case let .sequence(items):
            var out = ids
            for p in items { out = p.process(out, addSpecialTokens: addSpecialTokens) }
            return out
        case let .template(pieces):
            guard addSpecialTokens else { return ids }
            var out: [Int32] = []
            out.reserveCapacity(ids.count + pieces.count)
            for p in pieces {
                switch p {
                case let .special(s): out.append(contentsOf: s)
                case .sequence: out.append(contentsOf: ids)
                }
            }
            return out
        }
    }
}
