import Foundation

/// The `tokenizer.*` metadata of a GGUF file, built from a Hugging Face `tokenizer.json` (+
/// `tokenizer_config.json`) as llama.cpp's `convert_hf_to_gguf.py` builds it:
///
/// - byte-level BPE (a `ByteLevel` pre-tokenizer): `tokenizer.ggml.model = "gpt2"`, the tokens by
///   id, token types, the merges as "a b" strings and `tokenizer.ggml.pre` named after the split
///   regex ("llama-bpe", "qwen2" or "gpt-2"), as `_set_vocab_gpt2` does;
/// - SentencePiece-style BPE (▁ for spaces, byte fallback): `tokenizer.ggml.model = "llama"`, the
///   tokens, token types and scores. There is no tokenizer.model to take scores from, so a token
///   made by the merge of rank r scores −r and every other token −(merges + id): llama.cpp's SPM
///   tokenizer merges the highest-scoring pair first, which then replays the BPE merge order. A
///   tokenizer that puts no ▁ before the first word (Gemma's) gets `tokenizer.ggml.add_space_prefix`
///   false, as the converter writes for Gemma; llama.cpp's default (true) is Llama's.
///
/// Ids the tokenizer does not use, up to the model's vocab size, become `[PAD<id>]` tokens of
/// type UNUSED, as the converter pads them. A tokenizer with more ids than the model is refused.
public struct GGUFVocabulary {
    /// llama.cpp's `llama_token_type` (gguf-py's `TokenType`).
    public enum TokenType: Int32 { case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6 }

    public var model: String
    public var pre: String
    public var tokens: [String]
    public var types: [TokenType]
    public var scores: [Float]?
    public var merges: [String]?
    public var bosId: Int?, eosId: Int?, unkId: Int?, padId: Int?
    public var addBos: Bool?, addEos: Bool?
    /// SentencePiece-style only: whether a ▁ is put before the text's first word.
    public var addSpacePrefix: Bool?
    public var chatTemplate: String?

    /// Reads `tokenizer.json` (and `tokenizer_config.json`, `chat_template.jinja` when present)
    /// from `directory`, padding to `vocabSize` tokens.
    public init(directory: URL, vocabSize: Int) throws {
        let file = directory.appendingPathComponent("tokenizer.json").path
        let json = try TokenizerJSON.parse(try Data(contentsOf: URL(fileURLWithPath: file)), file: file)
        let tokenizer = try Tokenizer(directory: directory)
        guard let modelJSON = json["model"], let vocabJSON = modelJSON["vocab"]?.objectValue else {
            throw TokenizerError.invalidField(file: file, field: "model.vocab", reason: "expected an object")
        }
        guard tokenizer.vocabSize <= vocabSize else {
            throw GGUFError.unsupported(field: "\(file): vocabulary", value: "\(tokenizer.vocabSize) ids",
                                        reason: "more than the model's vocab_size \(vocabSize)")
        }
        var names = [String?](repeating: nil, count: vocabSize)
        for (token, id) in vocabJSON { if let id = id.intValue { names[id] = token } }
        var special = Set<Int>(), userDefined = Set<Int>()
        for t in tokenizer.addedTokens {
            names[Int(t.id)] = t.content
            if t.special { special.insert(Int(t.id)) } else { userDefined.insert(Int(t.id)) }
        }
        var mergeList: [(String, String)] = []
        for (rank, m) in (modelJSON["merges"]?.arrayValue ?? []).enumerated() {
            // Split on the scalar: a combining mark after the space would hide it from Character search.
            if let s = m.stringValue?.unicodeScalars, let sp = s.firstIndex(of: " ") {
                mergeList.append((String(s[..<sp]), String(s[s.index(after: sp)...])))
            } else if let p = m.arrayValue, p.count == 2, let a = p[0].stringValue, let b = p[1].stringValue {
                mergeList.append((a, b))
            } else {
                throw TokenizerError.invalidField(file: file, field: "model.merges[\(rank)]", reason: "expected \"a b\" or [\"a\", \"b\"]")
            }
        }

        let byteLevel = Self.containsType("ByteLevel", json["pre_tokenizer"] ?? .null)
        model = byteLevel ? "gpt2" : "llama"
        if byteLevel {
            pre = Self.preName(json["pre_tokenizer"] ?? .null)
        } else {
            pre = "default"
        }
        let unkToken = modelJSON["unk_token"]?.stringValue
        tokens = []
        types = []
        for id in 0..<vocabSize {
            guard let name = names[id] else {
                tokens.append("[PAD\(id)]")
                types.append(.unused)
                continue
            }
            tokens.append(name)
            if special.contains(id) { types.append(name == unkToken ? .unknown : .control) }
            else if userDefined.contains(id) { types.append(.userDefined) }
            else if !byteLevel && Self.isByteToken(name) { types.append(.byte) }
            else if name == unkToken { types.append(.unknown) }
            else { types.append(.normal) }
        }
        if byteLevel {
            merges = mergeList.map { "\($0.0) \($0.1)" }
            scores = nil
        } else {
            merges = nil
            var rankOf: [String: Int] = [:]
            for (rank, m) in mergeList.enumerated() where rankOf[m.0 + m.1] == nil { rankOf[m.0 + m.1] = rank }
            scores = tokens.enumerated().map { id, name in
                if let r = rankOf[name] { return -Float(r) }
                switch types[id] {
                case .control, .byte, .unknown, .unused: return 0
                default: return -Float(mergeList.count + id)
                }
            }
        }
        let config = tokenizer.config
        bosId = tokenizer.bosTokenId.map(Int.init)
        eosId = tokenizer.eosTokenId.map(Int.init)
        unkId = tokenizer.unkTokenId.map(Int.init)
        padId = tokenizer.padTokenId.map(Int.init)
        // transformers 5 lets the post-processor decide (Tokenizer's rule); llama.cpp needs the flag.
        let framed = tokenizer.encode("a", addSpecialTokens: true)
        addBos = config.addBosToken ?? (bosId != nil && framed.first.map(Int.init) == bosId)
        addEos = config.addEosToken ?? (eosId != nil && framed.last.map(Int.init) == eosId)
        // Seen on the tokenizer itself: the first piece of "a" is "▁a" where a space is prefixed.
        if !byteLevel, let first = tokenizer.encode("a", addSpecialTokens: false).first {
            addSpacePrefix = tokenizer.idToToken(first)?.hasPrefix("\u{2581}") ?? true
        }
        let jinja = directory.appendingPathComponent("chat_template.jinja")
        chatTemplate = config.chatTemplate ?? (try? String(contentsOf: jinja, encoding: .utf8))
    }

    /// The key/value pairs, in the converter's order.
    public var metadata: [(String, GGUFValue)] {
        var kv: [(String, GGUFValue)] = [("tokenizer.ggml.model", .string(model)), ("tokenizer.ggml.pre", .string(pre)),
                                         ("tokenizer.ggml.tokens", .strings(tokens))]
        if let scores { kv.append(("tokenizer.ggml.scores", .floats(scores))) }
        kv.append(("tokenizer.ggml.token_type", .int32s(types.map(\.rawValue))))
        if let merges { kv.append(("tokenizer.ggml.merges", .strings(merges))) }
        for (key, id) in [("bos", bosId), ("eos", eosId), ("unknown", unkId), ("padding", padId)] {
            if let id { kv.append(("tokenizer.ggml.\(key)_token_id", .uint32(UInt32(id)))) }
        }
        if let addBos { kv.append(("tokenizer.ggml.add_bos_token", .bool(addBos))) }
        if let addEos { kv.append(("tokenizer.ggml.add_eos_token", .bool(addEos))) }
        // Only where it differs from llama.cpp's default (true), so Llama exports stay as they were.
        if addSpacePrefix == false { kv.append(("tokenizer.ggml.add_space_prefix", .bool(false))) }
        if let chatTemplate { kv.append(("tokenizer.chat_template", .string(chatTemplate))) }
        return kv
    }

    static func isByteToken(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return false }
        return u[3...4].allSatisfy { (0x30...0x39).contains($0) || (0x41...0x46).contains($0) || (0x61...0x66).contains($0) }
    }

    static func containsType(_ type: String, _ json: TokenizerJSON) -> Bool {
        if json["type"]?.stringValue == type { return true }
        for p in json["pretokenizers"]?.arrayValue ?? [] where containsType(type, p) { return true }
        return false
    }

    /// llama.cpp's pre-tokenizer name for the split regex of a byte-level tokenizer (the
    /// converter hashes a test tokenization instead; the regexes Swiftlet reads map one to one).
    static func preName(_ json: TokenizerJSON) -> String {
        var regex: String?
        func visit(_ j: TokenizerJSON) {
            if j["type"]?.stringValue == "Split", let r = j["pattern"]?["Regex"]?.stringValue { regex = r }
            for p in j["pretokenizers"]?.arrayValue ?? [] { visit(p) }
        }
        visit(json)
        switch regex.flatMap(SplitPattern.init(source:)) {
        case .llama3(maxDigits: 3)?: return "llama-bpe"
        case .llama3(maxDigits: 1)?: return "qwen2"
        default: return "gpt-2"
        }
    }
}
