import Foundation
import XCTest
@testable import Swiftlet

/// `GGUFExport`: the file re-parsed here has the GGUF v3 header, the llama metadata, the tensor
/// table with aligned offsets, and data equal to the merged weights (Q/K rows permuted).
/// scripts/check_gguf_export.py reads the same files with the real gguf-py reader.
final class GGUFExportTests: XCTestCase {
    func fixture(_ name: String) throws -> URL {
        try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).appendingPathComponent(name)
    }

    func temporaryFile() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir.appendingPathComponent("model.gguf")
    }

    /// A minimal GGUF reader: enough to check what the writer wrote.
    struct Parsed {
        var version: UInt32 = 0
        var metadata: [String: Any] = [:]
        var keys: [String] = []
        var tensors: [(name: String, dims: [Int], type: UInt32, offset: Int)] = []
        var dataStart = 0
        var bytes: [UInt8] = []

        init(_ data: Data) throws {
            bytes = [UInt8](data)
            var p = 0
            func u32() -> UInt32 { defer { p += 4 }; return bytes[p..<p + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
            func u64() -> UInt64 { defer { p += 8 }; return bytes[p..<p + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
            func string() -> String { let n = Int(u64()); defer { p += n }; return String(decoding: bytes[p..<p + n], as: UTF8.self) }
            func value(_ type: UInt32) throws -> Any {
                switch type {
                case 4: return u32()
                case 5: return Int32(bitPattern: u32())
                case 6: return Float(bitPattern: u32())
                case 7: defer { p += 1 }; return bytes[p] != 0
                case 8: return string()
                case 9: let t = u32(); return try (0..<Int(u64())).map { _ in try value(t) }
                case 10: return u64()
                default: throw GGUFError.unsupported(field: "type", value: "\(type)", reason: "unexpected")
                }
            }
            guard u32() == 0x4655_4747 else { throw GGUFError.unsupported(field: "magic", value: "", reason: "not GGUF") }
            version = u32()
            let nTensors = Int(u64()), nKV = Int(u64())
            for _ in 0..<nKV {
                let key = string()
                keys.append(key)
                metadata[key] = try value(u32())
            }
            for _ in 0..<nTensors {
                let name = string()
                let dims = (0..<Int(u32())).map { _ in Int(u64()) }
                let type = u32()
                tensors.append((name, dims, type, Int(u64())))
            }
            dataStart = (p + 31) / 32 * 32
        }

        func data(_ name: String) -> ArraySlice<UInt8> {
            let t = tensors.first { $0.name == name }!
            let count = t.dims.reduce(1, *)
            let size = t.type == 0 ? count * 4 : t.type == 1 ? count * 2 : count / 32 * 34
            return bytes[(dataStart + t.offset)..<(dataStart + t.offset + size)]
        }

        func floats(_ name: String) -> [Float] {
            let raw = Array(data(name))
            let t = tensors.first { $0.name == name }!
            switch t.type {
            case 0: return stride(from: 0, to: raw.count, by: 4).map { i in Float(bitPattern: raw[i..<i + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) }) }
            case 1: return stride(from: 0, to: raw.count, by: 2).map { i in Half.float(UInt16(raw[i]) | UInt16(raw[i + 1]) << 8) }
            default: return GGMLQ8_0.dequantize(raw)
            }
        }
    }

    func testLlamaF16AndQ8_0Export() throws {
        let directory = try fixture("llama_gqa")
        let model = try LlamaModel.load(directory: directory, on: CPUBackend())
        try PEFTAdapter.load(directory: directory.appendingPathComponent("adapter"), into: model)
        let c = model.config
        for quant in [GGUFExport.Quant.f16, .q8_0] {
            let url = try temporaryFile()
            let summary = try GGUFExport.write(model: model, to: url, quant: quant, name: "llama_gqa", tokenizerDirectory: directory)
            XCTAssertFalse(summary.hasTokenizer)
            XCTAssertEqual(summary.mergedModules, model.adapters.count)
            let g = try Parsed(Data(contentsOf: url))
            XCTAssertEqual(g.version, 3)
            XCTAssertEqual(g.keys.first, "general.architecture")
            XCTAssertEqual(g.metadata["general.architecture"] as? String, "llama")
            XCTAssertEqual(g.metadata["general.alignment"] as? UInt32, 32)
            XCTAssertEqual(g.metadata["general.file_type"] as? UInt32, quant == .f16 ? 1 : 7)
            XCTAssertEqual(g.metadata["llama.block_count"] as? UInt32, UInt32(c.layers))
            XCTAssertEqual(g.metadata["llama.attention.head_count_kv"] as? UInt32, UInt32(c.kvHeads))
            XCTAssertEqual(g.metadata["llama.rope.freq_base"] as? Float, c.rope.theta)
            XCTAssertEqual(g.metadata["llama.attention.layer_norm_rms_epsilon"] as? Float, c.rmsNormEps)
            XCTAssertEqual(g.metadata["llama.vocab_size"] as? UInt32, UInt32(c.vocabSize))
            // 1 rope_freqs + embeddings + 9 per layer + final norm + output.
            XCTAssertEqual(g.tensors.count, 1 + 1 + 9 * c.layers + 1 + 1)
            for t in g.tensors { XCTAssertEqual(t.offset % 32, 0, t.name) }
            let q = try XCTUnwrap(g.tensors.first { $0.name == "blk.0.attn_q.weight" })
            XCTAssertEqual(q.dims, [c.hiddenSize, c.qWidth])
            XCTAssertEqual(q.type, quant == .f16 ? 1 : 8)
            XCTAssertEqual(g.tensors.first { $0.name == "blk.1.ffn_norm.weight" }?.type, 0)
            XCTAssertEqual(g.tensors.first { $0.name == "rope_freqs.weight" }?.dims, [c.headDim / 2])

            // k_proj: merged HF weight, rows permuted into llama.cpp's rotary order, rounded once.
            let named = Dictionary(uniqueKeysWithValues: model.namedWeights.map { ($0.name, $0.weight) })
            let adapter = model.adapters.first { $0.module == "model.layers.0.self_attn.k_proj" }
            let hf = try MergedExport.mergedWeight(XCTUnwrap(named["model.layers.0.self_attn.k_proj.weight"]), adapter: adapter)
            let permuted = GGUFExport.permuteRows(hf, heads: c.kvHeads, rowLength: c.hiddenSize)
            let got = g.floats("blk.0.attn_k.weight")
            let expected = quant == .f16 ? permuted.map { Half.float(Half.bits($0)) } : GGMLQ8_0.dequantize(GGMLQ8_0.quantize(permuted))
            XCTAssertEqual(got, expected)
            // Row 1 of head 0 in llama.cpp's order is HF row headDim/2 of that head.
            let hd = c.headDim
            XCTAssertEqual(Array(permuted[c.hiddenSize..<(2 * c.hiddenSize)]), Array(hf[(hd / 2 * c.hiddenSize)..<((hd / 2 + 1) * c.hiddenSize)]))
        }
    }

    /// Phi-3 longrope as convert_hf_to_gguf.py's Phi3MiniModel writes it: rope_factors_long and
    /// rope_factors_short (f32, before the weights), attn_factor, and the original context.
    func testPhi3LongRoPEExport() throws {
        let directory = try fixture("phi3_longrope")
        let model = try LlamaModel.load(directory: directory, on: CPUBackend())
        let url = try temporaryFile()
        let summary = try GGUFExport.write(model: model, to: url, name: "phi3_longrope", tokenizerDirectory: nil)
        XCTAssertEqual(summary.tensors, 2 + 3 + model.config.layers * 6)
        let g = try Parsed(Data(contentsOf: url))
        XCTAssertEqual(g.tensors.prefix(2).map(\.name), ["rope_factors_long.weight", "rope_factors_short.weight"])
        XCTAssertEqual(g.floats("rope_factors_long.weight"), [1.2, 3.5, 9, 27])
        XCTAssertEqual(g.floats("rope_factors_short.weight"), [1, 1.1, 1.7, 2.3])
        XCTAssertEqual(g.metadata["phi3.rope.scaling.attn_factor"] as? Float, Float(2.0.squareRoot()))  // 64 / 8
        XCTAssertEqual(g.metadata["phi3.rope.scaling.original_context_length"] as? UInt32, 8)
        XCTAssertEqual(g.metadata["phi3.context_length"] as? UInt32, 64)

        // llama.cpp takes longrope factors only for phi3.
        var llama = model.config
        llama.modelType = .llama
        XCTAssertThrowsError(try GGUFExport.modelMetadata(llama, name: "l", quant: .f16)) { error in
            XCTAssertTrue("\(error)".contains("longrope"), "\(error)")
        }
    }

    func testQ8_0BlockLayout() {
        var x = (0..<64).map { Float($0) - 20.5 }
        x[40] = 0
        let bytes = GGMLQ8_0.quantize(x)
        XCTAssertEqual(bytes.count, 68)
        // Block 0: amax 20.5 → d = 20.5/127; -20.5 → -127; 0.5 · 127/20.5 = 3.097… → 3.
        XCTAssertEqual(Half.float(UInt16(bytes[0]) | UInt16(bytes[1]) << 8), Half.float(Half.bits(20.5 / 127)))
        XCTAssertEqual(Int8(bitPattern: bytes[2]), -127)
        XCTAssertEqual(Int8(bitPattern: bytes[2 + 21]), 3)
        XCTAssertEqual(GGMLQ8_0.quantize([Float](repeating: 0, count: 32)), [UInt8](repeating: 0, count: 34))
    }

    func testVocabularies() throws {
        let spm = try GGUFVocabulary(directory: fixture("tokenizers/spm_bpe"), vocabSize: 1160)
        XCTAssertEqual(spm.model, "llama")
        XCTAssertEqual(spm.tokens.count, 1160)
        XCTAssertEqual(spm.tokens[1159], "[PAD1159]")
        XCTAssertEqual(spm.types[1159], .unused)
        XCTAssertEqual(spm.types[1], .control)
        XCTAssertEqual(spm.types[0], .unknown)
        XCTAssertEqual(spm.bosId, 1)
        XCTAssertEqual(spm.eosId, 2)
        XCTAssertEqual(spm.addBos, true)
        XCTAssertNotNil(spm.scores)
        XCTAssertNil(spm.merges)
        XCTAssertNotNil(spm.chatTemplate)
        let byteIndex = try XCTUnwrap(spm.tokens.firstIndex(of: "<0x41>"))
        XCTAssertEqual(spm.types[byteIndex], .byte)
        XCTAssertEqual(spm.addSpacePrefix, true)
        XCTAssertFalse(spm.metadata.contains { $0.0 == "tokenizer.ggml.add_space_prefix" }, "llama.cpp's default")
        // Gemma's tokenizer puts no ▁ before the first word: the same vocabulary without the Prepend normalizer.
        let gemmaStyle = FileManager.default.temporaryDirectory.appendingPathComponent("gemma-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: gemmaStyle, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: gemmaStyle) }
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: fixture("tokenizers/spm_bpe/tokenizer.json"))) as? [String: Any])
        json["normalizer"] = ["type": "Replace", "pattern": ["String": " "], "content": "\u{2581}"]
        try JSONSerialization.data(withJSONObject: json).write(to: gemmaStyle.appendingPathComponent("tokenizer.json"))
        try FileManager.default.copyItem(at: fixture("tokenizers/spm_bpe/tokenizer_config.json"),
                                         to: gemmaStyle.appendingPathComponent("tokenizer_config.json"))
        let gemma = try GGUFVocabulary(directory: gemmaStyle, vocabSize: 1160)
        XCTAssertEqual(gemma.addSpacePrefix, false)
        XCTAssertTrue(gemma.metadata.contains { $0.0 == "tokenizer.ggml.add_space_prefix" })

        let bpe = try GGUFVocabulary(directory: fixture("tokenizers/byte_bpe"), vocabSize: 1502)
        XCTAssertEqual(bpe.model, "gpt2")
        XCTAssertEqual(bpe.pre, "llama-bpe")
        XCTAssertNil(bpe.scores)
        XCTAssertEqual(bpe.merges?.count, 1239)
        XCTAssertEqual(bpe.types[1500], .userDefined)
        XCTAssertEqual(try GGUFVocabulary(directory: fixture("tokenizers/qwen_bpe"), vocabSize: 800).pre, "qwen2")
        XCTAssertEqual(try GGUFVocabulary(directory: fixture("tokenizers/gpt2_bpe"), vocabSize: 600).pre, "gpt-2")

        // More tokenizer ids than embedding rows: refused.
        XCTAssertThrowsError(try GGUFVocabulary(directory: fixture("tokenizers/spm_bpe"), vocabSize: 128))
    }
}

final class GGUFQ4KMTests: XCTestCase {
    func testZeroBlocksAreAllZeroBytes() {
        let zeros = [Float](repeating: 0, count: 256)
        XCTAssertEqual(GGMLQ4K.quantize(zeros), [UInt8](repeating: 0, count: 144))
        XCTAssertEqual(GGMLQ6K.quantize(zeros), [UInt8](repeating: 0, count: 210))
    }

    func testRoundTripErrorIsSmall() {
        // Seeded, over many blocks. Uniform values in [-1, 1]: 16 levels over a sub-block's range ≤ 2 make
        // a step ≤ 2/15, 64 levels ≤ 2/63. llama.cpp's scale search may clip a sub-block's extremes for a
        // smaller squared error, so one value can miss by more than half a step (0.103 was seen unseeded
        // against a bound of 0.1), but never by a whole step; the RMS error stays near step/√12.
        var g = SplitMix64(seed: 11)
        let x = (0..<256 * 256).map { _ in Float.random(in: -1...1, using: &g) }
        XCTAssertEqual(GGMLQ4K.quantize(Array(x[0..<1024])).count, 4 * 144)
        XCTAssertEqual(GGMLQ6K.quantize(Array(x[0..<1024])).count, 4 * 210)
        for (name, roundTrip, step) in [("Q4_K", { GGMLQ4K.dequantize(GGMLQ4K.quantize($0)) }, Float(2) / 15),
                                        ("Q6_K", { GGMLQ6K.dequantize(GGMLQ6K.quantize($0)) }, Float(2) / 63)]
            as [(String, ([Float]) -> [Float], Float)] {
            let errors = zip(roundTrip(x), x).map { abs($0 - $1) }
            let rms = (errors.map { Double($0 * $0) }.reduce(0, +) / Double(errors.count)).squareRoot()
            XCTAssertLessThan(errors.max()!, step, name)
            XCTAssertLessThan(rms, Double(step) / 12.squareRoot(), name)   // measured: 0.82 and 0.84 of it
        }
    }

    func testNearestIntRoundsHalfToEven() {
        XCTAssertEqual([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999, 7.6].map { GGMLKQuant.nearestInt(Float($0)) }, [0, 2, 2, 0, -2, 2, 8])
    }

    func testQ4KMTypeRules() throws {
        // 8 layers: use_more_bits picks layers 0 (first eighth), 7 (last eighth), 3 and 6 (every third).
        XCTAssertEqual((0..<8).filter { GGUFExport.useMoreBits($0, 8) }, [0, 3, 6, 7])
        func type(_ n: String, hasOutput: Bool = true) throws -> GGMLType {
            try GGUFExport.q4KMType(n, rowLength: 256, layers: 8, hasOutput: hasOutput, arch: "llama")
        }
        XCTAssertEqual(try type("output.weight"), .q6_K)
        XCTAssertEqual(try type("token_embd.weight"), .q4_K)
        XCTAssertEqual(try type("token_embd.weight", hasOutput: false), .q6_K)
        XCTAssertEqual(try type("blk.3.attn_v.weight"), .q6_K)
        XCTAssertEqual(try type("blk.4.attn_v.weight"), .q4_K)
        XCTAssertEqual(try type("blk.6.ffn_down.weight"), .q6_K)
        XCTAssertEqual(try type("blk.0.attn_q.weight"), .q4_K)
        XCTAssertThrowsError(try GGUFExport.q4KMType("blk.0.attn_q.weight", rowLength: 64, layers: 8, hasOutput: true, arch: "llama"))
    }
}

extension GGUFExportTests {
    /// GGUF: Gemma's norms under llama.cpp's names, each written as 1 + w; softcaps and the window in
    /// the metadata; what llama.cpp cannot express (another attention scale than it derives, other
    /// sliding-layer patterns) is refused.
    func testGGUFOfGemma() throws {
        XCTAssertEqual(GGUFExport.tensorName("model.layers.2.post_attention_layernorm.weight", sandwichNorms: true),
                       "blk.2.post_attention_norm.weight")
        XCTAssertEqual(GGUFExport.tensorName("model.layers.2.pre_feedforward_layernorm.weight", sandwichNorms: true),
                       "blk.2.ffn_norm.weight")
        XCTAssertEqual(GGUFExport.tensorName("model.layers.2.post_feedforward_layernorm.weight", sandwichNorms: true),
                       "blk.2.post_ffw_norm.weight")
        XCTAssertEqual(GGUFExport.tensorName("model.layers.2.post_attention_layernorm.weight"), "blk.2.ffn_norm.weight")
        // The fixture scales attention by 24^-1/2, llama.cpp would use head_dim 16's.
        let softcapped = try LlamaModel.load(directory: try fixture("gemma2_softcap"), on: CPUBackend())
        XCTAssertThrowsError(try GGUFExport.write(model: softcapped, to: try temporaryFile(), name: "g", tokenizerDirectory: nil)) {
            XCTAssertTrue("\($0)".contains("query_pre_attn_scalar"), "\($0)")
        }
        var config = softcapped.config
        config.queryPreAttentionScalar = Float(config.headDim)
        let gemma2 = try LlamaModel.random(config: config, seed: 3, std: 0.2, on: CPUBackend())
        gemma2.layers[0].mlpOutputNorm = try gemma2.backend.upload((0..<config.hiddenSize).map { Float($0) / 100 },
                                                                   [config.hiddenSize], .f32)
        XCTAssertEqual(try GGUFExport.architecture(gemma2.config), "gemma2")
        let url = try temporaryFile()
        let summary = try GGUFExport.write(model: gemma2, to: url, name: "gemma2", tokenizerDirectory: nil)
        // token_embd, output_norm (tied: no output), and per layer 4 norms + 7 linears.
        XCTAssertEqual(summary.tensors, 2 + gemma2.config.layers * 11)
        let g = try Parsed(Data(contentsOf: url))
        XCTAssertEqual(g.metadata["gemma2.attn_logit_softcapping"] as? Float, 2)
        XCTAssertEqual(g.metadata["gemma2.final_logit_softcapping"] as? Float, 3)
        XCTAssertEqual(g.metadata["gemma2.attention.sliding_window"] as? UInt32, 4)
        XCTAssertEqual(g.floats("blk.0.post_ffw_norm.weight"), (0..<config.hiddenSize).map { Float($0) / 100 + 1 })
        // gemma3_text slides on layers 0 and 2 of 3; llama.cpp's gemma3 on 5 of every 6.
        var gemma3 = try LlamaModel.load(directory: try fixture("gemma3_text"), on: CPUBackend()).config
        gemma3.queryPreAttentionScalar = Float(gemma3.headDim)
        XCTAssertThrowsError(try GGUFExport.modelMetadata(gemma3, name: "g3", quant: .f16)) { error in
            XCTAssertTrue("\(error)".contains("layer_types"), "\(error)")
        }
        gemma3.layers = 6
        gemma3.slidingLayers = [true, true, true, true, true, false]
        let metadata = try GGUFExport.modelMetadata(gemma3, name: "g3", quant: .f16)
        XCTAssertTrue(metadata.contains { $0.0 == "gemma3.attention.sliding_window" })
        XCTAssertFalse(metadata.contains { $0.0 == "gemma3.attn_logit_softcapping" })
        XCTAssertTrue(metadata.contains { $0.0 == "gemma3.rope.scaling.type" }, "the global layers' linear scaling")
    }
}
