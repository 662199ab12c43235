import Foundation

/// A Hugging Face `tokenizer.json` tokenizer whose `encode` and `decode` give the same results as the Python
/// `tokenizers` library (0.23) for the pipelines Llama-family models use:
///
/// - SentencePiece-style BPE with byte fallback (Llama 2, Mistral, TinyLlama, CodeLlama, Yi): normalizer
///   `Sequence[Prepend("▁"), Replace(" ", "▁")]` or pre-tokenizer `Metaspace`; decoders Replace / ByteFallback /
///   Fuse / Strip / Metaspace.
/// - Byte-level BPE (Llama 3, Qwen2, GPT-2): `Split` with the Llama-3 / Qwen2 regex + `ByteLevel`, or `ByteLevel`
///   with the GPT-2 regex; normalizer null or NFC (NFD/NFKC/NFKD too); decoder `ByteLevel`.
/// - Added tokens (`special`, `single_word`, `lstrip`, `rstrip`, `normalized`), post-processors
///   `TemplateProcessing` / `ByteLevel` / `Sequence` / null.
///
/// Anything else in the file (another model such as WordPiece or Unigram, another normalizer, pre-tokenizer,
/// regex, decoder or post-processor) is refused with a `TokenizerError` naming the file and field.
///
/// Special tokens rule (`addSpecialTokens: true`): the post-processor of tokenizer.json decides, as in
/// transformers 5.x, which drops `add_bos_token` / `add_eos_token` from tokenizer_config.json whenever a
/// tokenizer.json exists. So those two flags are read (`config`) but do not change `encode`. When the
/// post-processor is null nothing is added (transformers then installs a template with neither bos nor eos).
public final class Tokenizer: @unchecked Sendable {
    public let config: TokenizerConfig
    public let addedTokens: [AddedToken]
    let normalizer: TokenNormalizer?
    let preTokenizer: PreTokenizer?
    let model: BPEModel
    let decoder: TokenDecoder?
    let postProcessor: PostProcessor?
    let added: AddedVocabulary
    private let addedByContent: [[UInt32]: Int32]

    /// Reads `tokenizer.json` and, when present, `tokenizer_config.json` from a model directory.
    public convenience init(directory: URL) throws {
        let tokURL = directory.appendingPathComponent("tokenizer.json")
        let tokData: Data
        do { tokData = try Data(contentsOf: tokURL) } catch {
            throw TokenizerError.unreadable(file: tokURL.path, reason: "\(error.localizedDescription)")
        }
        let cfgURL = directory.appendingPathComponent("tokenizer_config.json")
        let cfgData = FileManager.default.fileExists(atPath: cfgURL.path) ? try? Data(contentsOf: cfgURL) : nil
        try self.init(tokenizerJSON: tokData, config: cfgData, tokenizerFile: tokURL.path, configFile: cfgURL.path)
    }

    public convenience init(tokenizerJSON: Data, config: Data?) throws {
        try self.init(tokenizerJSON: tokenizerJSON, config: config, tokenizerFile: "tokenizer.json",
                      configFile: "tokenizer_config.json")
    }

    init(tokenizerJSON: Data, config configData: Data?, tokenizerFile file: String, configFile: String) throws {
        let json = try TokenizerJSON.parse(tokenizerJSON, file: file)
        guard json.objectValue != nil else {
            throw TokenizerError.invalidField(file: file, field: "(root)", reason: "expected an object")
        }
        if let configData {
            config = try TokenizerConfig(json: try TokenizerJSON.parse(configData, file: configFile), file: configFile)
        } else {
            config = TokenizerConfig()
        }
        if let t = json["truncation"], !t.isNull {
            throw TokenizerError.unsupported(file: file, field: "truncation", value: "non-null")
        }
        guard let modelJSON = json["model"] else {
            throw TokenizerError.invalidField(file: file, field: "model", reason: "missing")
        }
        model = try BPEModel(json: modelJSON, file: file)
        normalizer = try TokenNormalizer.parse(json["normalizer"] ?? .null, file: file, field: "normalizer")
        preTokenizer = try PreTokenizer.parse(json["pre_tokenizer"] ?? .null, file: file, field: "pre_tokenizer")
        decoder = try TokenDecoder.parse(json["decoder"] ?? .null, file: file, field: "decoder")
        postProcessor = try PostProcessor.parse(json["post_processor"] ?? .null, file: file, field: "post_processor")

        var tokens: [AddedToken] = []
        for (i, t) in (json["added_tokens"]?.arrayValue ?? []).enumerated() {
            guard let id = t["id"]?.intValue, let content = t["content"]?.stringValue else {
                throw TokenizerError.invalidField(file: file, field: "added_tokens[\(i)]", reason: "expected id and content")
            }
            tokens.append(AddedToken(id: Int32(id), content: content, special: t["special"]?.boolValue ?? false,
                                     singleWord: t["single_word"]?.boolValue ?? false,
                                     lstrip: t["lstrip"]?.boolValue ?? false, rstrip: t["rstrip"]?.boolValue ?? false,
                                     normalized: t["normalized"]?.boolValue ?? !(t["special"]?.boolValue ?? false)))
        }
        addedTokens = tokens
        added = AddedVocabulary(tokens: tokens, normalizer: normalizer)
        var byContent: [[UInt32]: Int32] = [:]
        for t in tokens { byContent[scalarValues(t.content)] = t.id }
        addedByContent = byContent
    }

    // MARK: - Vocabulary

    /// Ids of the model vocabulary and added tokens: the largest id + 1 (the embedding size the ids need).
    public var vocabSize: Int {
        let m = model.idToToken.keys.max() ?? -1
        let a = addedTokens.map(\.id).max() ?? -1
        return Int(max(m, a)) + 1
    }

    public func tokenToId(_ token: String) -> Int32? {
        let s = scalarValues(token)
        return addedByContent[s] ?? model.tokenId(s)
    }

    public func idToToken(_ id: Int32) -> String? {
        if let t = added.byId[id] { return t.content }
        return model.idToToken[id].map { stringFromScalars($0) }
    }

    public var bosTokenId: Int32? { config.bosToken.flatMap(tokenToId) }
    public var eosTokenId: Int32? { config.eosToken.flatMap(tokenToId) }
    public var padTokenId: Int32? { config.padToken.flatMap(tokenToId) }
    public var unkTokenId: Int32? { config.unkToken.flatMap(tokenToId) }

    /// The special added tokens (content → id).
    public var specialTokens: [String: Int32] {
        var d: [String: Int32] = [:]
        for t in addedTokens where t.special { d[t.content] = t.id }
        return d
    }

    // MARK: - Encode

    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int32] {
        let scalars = scalarValues(text)
        var ids: [Int32] = []
        ids.reserveCapacity(scalars.count / 3 + 4)
        if let trie = added.rawTrie {
            for seg in added.split(scalars, trie: trie) {
                switch seg {
                case let .token(id): ids.append(id)
                case let .text(r): encodeText(Array(scalars[r]), atStart: r.lowerBound == 0, into: &ids)
                }
            }
        } else if !scalars.isEmpty {
            encodeText(scalars, atStart: true, into: &ids)
        }
        return postProcessor?.process(ids, addSpecialTokens: addSpecialTokens) ?? ids
    }

    /// Normalize, match normalized added tokens, pre-tokenize, run the model.
    private func encodeText(_ raw: [UInt32], atStart: Bool, into ids: inout [Int32]) {
        let normalized = normalizer?.normalize(raw) ?? raw
        if let trie = added.normalizedTrie {
            for seg in added.split(normalized, trie: trie) {
                switch seg {
                case let .token(id): ids.append(id)
                case let .text(r):
                    preTokenizeAndModel(TextPiece(scalars: Array(normalized[r]), atStart: atStart && r.lowerBound == 0), into: &ids)
                }
            }
        } else if !normalized.isEmpty {
            preTokenizeAndModel(TextPiece(scalars: normalized, atStart: atStart), into: &ids)
        }
    }

    private func preTokenizeAndModel(_ piece: TextPiece, into ids: inout [Int32]) {
        guard let preTokenizer else {
            model.tokenize(piece.scalars, into: &ids)
            return
        }
        var words: [TextPiece] = []
        preTokenizer.apply(piece, into: &words)
        for w in words { model.tokenize(w.scalars, into: &ids) }
    }

    // MARK: - Decode

    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = false) -> String {
        var tokens: [[UInt32]] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            guard let t = added.decodeForm[id] ?? model.idToToken[id] else { continue }
            if skipSpecialTokens && added.specialContents.contains(t) { continue }
            tokens.append(t)
        }
        guard let decoder else {
            var out: [UInt32] = []
            for (i, t) in tokens.enumerated() {
                if i > 0 { out.append(0x20) }
                out.append(contentsOf: t)
            }
            return stringFromScalars(out)
        }
        return stringFromScalars(decoder.decodeChain(tokens).joined())
    }
}
