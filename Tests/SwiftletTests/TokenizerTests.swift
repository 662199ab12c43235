import Foundation
import XCTest
@testable import Swiftlet

/// Tokenizer fixtures made by scripts/make_tokenizer_fixtures.py with the Python `tokenizers` library:
/// every id of every case, with and without special tokens, and every decode must be identical.
final class TokenizerTests: XCTestCase {
    static let fixtureNames = ["spm_bpe", "spm_metaspace", "byte_bpe", "qwen_bpe", "gpt2_bpe"]

    func fixtureDir(_ name: String) throws -> URL {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        return root.appendingPathComponent("tokenizers").appendingPathComponent(name)
    }

    /// Read with the tokenizer's own exact JSON reader (Foundation's JSONSerialization drops a U+FEFF that
    /// starts a string value, and Swift dictionaries merge canonically-equivalent keys).
    func loadJSON(_ url: URL) throws -> Any { plain(try TokenizerJSON.parse(Data(contentsOf: url), file: url.path)) }

    func plain(_ j: TokenizerJSON) -> Any {
        switch j {
        case .null: return NSNull()
        case let .bool(b): return b
        case let .number(d): return Int(d)
        case let .string(s): return s
        case let .array(a): return a.map(plain)
        case let .object(o): return Dictionary(o.map { ($0.0, plain($0.1)) }, uniquingKeysWith: { a, _ in a })
        }
    }

    func ints(_ any: Any?) -> [Int32] { ((any as? [Any]) ?? []).map { Int32($0 as! Int) } }

    func checkLibraryCases(_ name: String) throws {
        let dir = try fixtureDir(name)
        // the `tokenizers` library alone: tokenizer.json, no config
        let tok = try Tokenizer(tokenizerJSON: Data(contentsOf: dir.appendingPathComponent("tokenizer.json")), config: nil)
        let root = try XCTUnwrap(loadJSON(dir.appendingPathComponent("cases.json")) as? [String: Any])
        let cases = try XCTUnwrap(root["cases"] as? [[String: Any]])
        XCTAssertGreaterThan(cases.count, 150)
        var failures = 0
        for c in cases {
            let text = c["text"] as! String
            let ids = ints(c["ids"]), idsNoSpecial = ints(c["ids_no_special"])
            let got = tok.encode(text, addSpecialTokens: true)
            let gotNo = tok.encode(text, addSpecialTokens: false)
            let dec = tok.decode(ids, skipSpecialTokens: false)
            let decSkip = tok.decode(ids, skipSpecialTokens: true)
            let ok = got == ids && gotNo == idsNoSpecial
                && dec.unicodeScalars.elementsEqual((c["decoded"] as! String).unicodeScalars)
                && decSkip.unicodeScalars.elementsEqual((c["decoded_skip"] as! String).unicodeScalars)
            if !ok {
                failures += 1
                if failures <= 5 {
                    XCTFail("\(name): \(text.debugDescription)\n  ids      \(got)\n  expected \(ids)\n  no-spec  \(gotNo)\n  expected \(idsNoSpecial)\n"
                        + "  decoded  \(dec.debugDescription) expected \((c["decoded"] as! String).debugDescription)\n"
                        + "  skip     \(decSkip.debugDescription) expected \((c["decoded_skip"] as! String).debugDescription)")
                }
            }
        }
        XCTAssertEqual(failures, 0, "\(name): \(failures) of \(cases.count) cases differ")

        let decodeCases = try XCTUnwrap(root["decode_cases"] as? [[String: Any]])
        for c in decodeCases {
            let ids = ints(c["ids"])
            XCTAssertTrue(tok.decode(ids).unicodeScalars.elementsEqual((c["decoded"] as! String).unicodeScalars),
                          "\(name): decode \(ids): \(tok.decode(ids).debugDescription) vs \((c["decoded"] as! String).debugDescription)")
            XCTAssertTrue(tok.decode(ids, skipSpecialTokens: true).unicodeScalars.elementsEqual((c["decoded_skip"] as! String).unicodeScalars),
                          "\(name): decode(skip) \(ids)")
        }
    }

    func testSPMBPE() throws { try checkLibraryCases("spm_bpe") }
    func testSPMMetaspace() throws { try checkLibraryCases("spm_metaspace") }
    func testByteBPE() throws { try checkLibraryCases("byte_bpe") }
    func testQwenBPE() throws { try checkLibraryCases("qwen_bpe") }
    func testGPT2BPE() throws { try checkLibraryCases("gpt2_bpe") }

    /// transformers' AutoTokenizer on the folder (tokenizer.json + tokenizer_config.json).
    func testTransformersCases() throws {
        for name in Self.fixtureNames {
            let dir = try fixtureDir(name)
            let tok = try Tokenizer(directory: dir)
            let root = try XCTUnwrap(loadJSON(dir.appendingPathComponent("transformers_cases.json")) as? [String: Any])
            let texts = try XCTUnwrap(root["texts"] as? [String])
            let ids = try XCTUnwrap(root["ids"] as? [Any]), idsNo = try XCTUnwrap(root["ids_no_special"] as? [Any])
            for (i, text) in texts.enumerated() {
                XCTAssertEqual(tok.encode(text), ints(ids[i]), "\(name): \(text.debugDescription)")
                XCTAssertEqual(tok.encode(text, addSpecialTokens: false), ints(idsNo[i]), "\(name): \(text.debugDescription)")
            }
        }
    }

    func testConfigAndVocabulary() throws {
        let spm = try Tokenizer(directory: try fixtureDir("spm_bpe"))
        XCTAssertEqual(spm.bosTokenId, 1)
        XCTAssertEqual(spm.eosTokenId, 2)
        XCTAssertNil(spm.padTokenId)
        XCTAssertEqual(spm.config.addBosToken, true)
        XCTAssertEqual(spm.config.addEosToken, false)
        XCTAssertNotNil(spm.config.chatTemplate)
        XCTAssertEqual(spm.tokenToId("<0x41>"), 3 + 0x41)
        XCTAssertEqual(spm.idToToken(3 + 0x41), "<0x41>")
        XCTAssertEqual(spm.specialTokens, ["<unk>": 0, "<s>": 1, "</s>": 2])
        XCTAssertEqual(spm.vocabSize, 1157)
        XCTAssertEqual(spm.encode("").count, 1)

        let byte = try Tokenizer(directory: try fixtureDir("byte_bpe"))
        XCTAssertEqual(byte.bosTokenId, byte.tokenToId("<|begin_of_text|>"))
        XCTAssertEqual(byte.eosTokenId, byte.tokenToId("<|eot_id|>"))
        XCTAssertEqual(byte.encode("hi<|im_end|>", addSpecialTokens: false).last, byte.tokenToId("<|im_end|>"))
        XCTAssertEqual(byte.decode(byte.encode("hi<|im_end|>"), skipSpecialTokens: true), "hi")
    }

    // MARK: - Small hand-written tokenizers

    func miniJSON(model: String, normalizer: String = "null", preTokenizer: String = "null", decoder: String = "null",
                  postProcessor: String = "null", added: String = "[]") -> Data {
        Data("""
        {"version": "1.0", "truncation": null, "padding": null, "added_tokens": \(added),
         "normalizer": \(normalizer), "pre_tokenizer": \(preTokenizer), "post_processor": \(postProcessor),
         "decoder": \(decoder), "model": \(model)}
        """.utf8)
    }

    let abcVocab = #"{"<unk>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "bc": 5, "abc": 6, "<0xC3>": 7, "<0xA9>": 8}"#

    func testMergesBothFormsAndRanks() throws {
        for merges in [#"["b c", "a b", "a bc"]"#, #"[["b", "c"], ["a", "b"], ["a", "bc"]]"#] {
            let model = #"{"type": "BPE", "unk_token": "<unk>", "byte_fallback": true, "fuse_unk": true, "vocab": "#
                + abcVocab + #", "merges": "# + merges + "}"
            let tok = try Tokenizer(tokenizerJSON: miniJSON(model: model), config: nil)
            // "b c" has the lowest rank: a|bc then a+bc → abc
            XCTAssertEqual(tok.encode("abc"), [6])
            XCTAssertEqual(tok.encode("abab"), [4, 4])
            XCTAssertEqual(tok.encode("cab"), [3, 4])
        }
        // with "a b" first, "abc" is a+b → ab, and there is no ab+c merge
        let model = #"{"type": "BPE", "vocab": "# + abcVocab + #", "merges": ["a b", "b c", "a bc"]}"#
        let tok = try Tokenizer(tokenizerJSON: miniJSON(model: model), config: nil)
        XCTAssertEqual(tok.encode("abc"), [4, 3])
    }

    func testByteFallbackAndUnk() throws {
        let model = #"{"type": "BPE", "unk_token": "<unk>", "byte_fallback": true, "fuse_unk": true, "vocab": "#
            + abcVocab + #", "merges": []}"#
        let decoder = #"{"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]}"#
        let tok = try Tokenizer(tokenizerJSON: miniJSON(model: model, decoder: decoder), config: nil)
        XCTAssertEqual(tok.encode("aéb"), [1, 7, 8, 2])  // é = C3 A9
        XCTAssertEqual(tok.decode([1, 7, 8, 2]), "aéb")
        XCTAssertEqual(tok.decode([1, 7, 2]), "a\u{FFFD}b")  // a lone lead byte → one U+FFFD per byte
        XCTAssertEqual(tok.encode("a€€b"), [1, 0, 2])  // bytes of € are missing → fused <unk>
        let noFuse = try Tokenizer(tokenizerJSON: miniJSON(model: model.replacingOccurrences(of: #""fuse_unk": true"#,
                                                                                        with: #""fuse_unk": false"#)), config: nil)
        XCTAssertEqual(noFuse.encode("a€€b"), [1, 0, 0, 2])
    }

    func testUnsupportedComponentsAreErrors() throws {
        let bpe = #"{"type": "BPE", "vocab": {"a": 0}, "merges": []}"#
        func error(_ data: Data) -> String {
            do { _ = try Tokenizer(tokenizerJSON: data, config: nil); return "no error" } catch { return "\(error)" }
        }
        let wordPiece = error(miniJSON(model: #"{"type": "WordPiece", "vocab": {"a": 0}, "unk_token": "a"}"#))
        XCTAssertTrue(wordPiece.contains("tokenizer.json") && wordPiece.contains("`model.type`") && wordPiece.contains("WordPiece"), wordPiece)
        let unigram = error(miniJSON(model: #"{"type": "Unigram", "vocab": [["a", 0.0]]}"#))
        XCTAssertTrue(unigram.contains("`model.type`") && unigram.contains("Unigram"), unigram)
        let norm = error(miniJSON(model: bpe, normalizer: #"{"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]}"#))
        XCTAssertTrue(norm.contains("`normalizer.normalizers[1].type`") && norm.contains("Lowercase"), norm)
        let pre = error(miniJSON(model: bpe, preTokenizer: #"{"type": "Whitespace"}"#))
        XCTAssertTrue(pre.contains("`pre_tokenizer.type`") && pre.contains("Whitespace"), pre)
        let regex = error(miniJSON(model: bpe, preTokenizer: #"{"type": "Split", "pattern": {"Regex": "\\d+"}, "behavior": "Isolated", "invert": false}"#))
        XCTAssertTrue(regex.contains("`pre_tokenizer.pattern.Regex`"), regex)
        let dec = error(miniJSON(model: bpe, decoder: #"{"type": "WordPiece", "prefix": "@@", "cleanup": true}"#))
        XCTAssertTrue(dec.contains("`decoder.type`") && dec.contains("WordPiece"), dec)
        let post = error(miniJSON(model: bpe, postProcessor: #"{"type": "BertProcessing", "sep": ["[SEP]", 1], "cls": ["[CLS]", 0]}"#))
        XCTAssertTrue(post.contains("`post_processor.type`") && post.contains("BertProcessing"), post)
        let prefix = error(miniJSON(model: #"{"type": "BPE", "vocab": {"a": 0}, "merges": [], "continuing_subword_prefix": "@@"}"#))
        XCTAssertTrue(prefix.contains("`model.continuing_subword_prefix`"), prefix)
        let badMerge = error(miniJSON(model: #"{"type": "BPE", "vocab": {"a": 0}, "merges": ["a a"]}"#))
        XCTAssertTrue(badMerge.contains("`model.merges[0]`"), badMerge)
        XCTAssertTrue(error(Data("{".utf8)).contains("invalid JSON"))
        XCTAssertEqual(error(miniJSON(model: bpe)), "no error")
    }

    /// A vocabulary holding canonically-equivalent tokens ("é" precomposed and decomposed) keeps both.
    func testCanonicallyEquivalentTokensStayDistinct() throws {
        let model = #"{"type": "BPE", "vocab": {"e": 0, "\u0301": 1, "e\u0301": 2, "\u00e9": 3}, "merges": ["e \u0301"]}"#
        let tok = try Tokenizer(tokenizerJSON: miniJSON(model: model), config: nil)
        XCTAssertEqual(tok.encode("e\u{301}"), [2])
        XCTAssertEqual(tok.encode("\u{e9}"), [3])
        XCTAssertEqual(tok.tokenToId("\u{e9}"), 3)
        XCTAssertEqual(tok.tokenToId("e\u{301}"), 2)
    }

    /// Pieces of the Llama-3 split regex, as `tokenizers`' pre_tokenize_str gives them (Oniguruma folds "ſ" to "s"
    /// inside `(?i:'s|...)`; ids alone can't tell when no merge crosses the boundary).
    func testLlama3SplitPieces() {
        func pieces(_ text: String, _ p: SplitPattern) -> [String] {
            let s = scalarValues(text)
            var out: [String] = []
            s.withUnsafeBufferPointer { buf in p.forEachMatch(buf) { out.append(stringFromScalars(buf[$0..<$1])) } }
            return out
        }
        let llama3 = SplitPattern(source: SplitPattern.llama3Source)!
        XCTAssertEqual(pieces("it'\u{17F}\u{17F}", llama3), ["it", "'\u{17F}", "\u{17F}"])
        XCTAssertEqual(pieces("DON'T 12345 (x)  \n\n y", llama3), ["DON", "'T", " ", "123", "45", " (", "x", ")", "  \n\n", " y"])
        XCTAssertEqual(pieces("a  b   ", llama3), ["a", " ", " b", "   "])
        let gpt2 = SplitPattern(source: SplitPattern.gpt2Source)!
        XCTAssertEqual(pieces("DON'T 12345 it's", gpt2), ["DON", "'", "T", " 12345", " it", "'s"])
    }
}
