import XCTest
@testable import Swiftlet

final class HFConfigTests: XCTestCase {
    let base: [String: Any] = [
        "model_type": "llama", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
        "num_hidden_layers": 32, "num_attention_heads": 32, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": 4096, "hidden_act": "silu",
    ]

    func parse(_ changes: [String: Any?]) throws -> LlamaConfig {
        var json = base
        for (k, v) in changes { json[k] = v ?? nil }
        return try HFConfig.parse(json, file: "config.json")
    }

    func assertError(_ changes: [String: Any?], field: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try parse(changes), file: file, line: line) { error in
            let e = error as? ConfigError
            XCTAssertEqual(e?.field, field, "\(error)", file: file, line: line)
            XCTAssertTrue("\(error)".contains("config.json"), file: file, line: line)
        }
    }

    func testLlama2Defaults() throws {
        let c = try parse([:])
        XCTAssertEqual(c.kvHeads, 32)
        XCTAssertEqual(c.headDim, 128)
        XCTAssertEqual(c.rope, RoPEScaling(theta: 10000))
        XCTAssertFalse(c.tieWordEmbeddings)
        XCTAssertNil(c.slidingWindow)
        XCTAssertEqual(c.parameterCount, 6_738_415_616)  // Llama-2-7b
    }

    func testGQAHeadDimAndMistralWindow() throws {
        let c = try parse(["model_type": "mistral", "num_key_value_heads": 8, "sliding_window": 4096,
                           "head_dim": 64, "intermediate_size": 14336])
        XCTAssertEqual(c.kvHeads, 8)
        XCTAssertEqual(c.headDim, 64)
        XCTAssertEqual(c.slidingWindow, 4096)
        // Llama ignores sliding_window; Qwen2 has q/k/v biases and ties when told.
        XCTAssertNil(try parse(["sliding_window": 4096]).slidingWindow)
        let q = try parse(["model_type": "qwen2", "tie_word_embeddings": true])
        XCTAssertTrue(q.qkvBias && !q.oBias && q.tieWordEmbeddings)
        XCTAssertTrue(try parse(["attention_bias": true]).oBias)
    }

    func testRoPEScalingVariantsInBothFormats() throws {
        XCTAssertEqual(try parse(["rope_scaling": ["type": "linear", "factor": 2.0]]).rope.kind, .linear(factor: 2))
        XCTAssertEqual(try parse(["rope_scaling": ["rope_type": "dynamic", "factor": 4]]).rope.kind, .dynamic(factor: 4))
        let llama3: [String: Any] = ["rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
                                     "rope_theta": 500000.0]
        let c = try parse(["rope_parameters": llama3, "rope_theta": nil])
        XCTAssertEqual(c.rope, RoPEScaling(theta: 500000, kind: .llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4,
                                                                        originalMaxPositions: 8192)))
        XCTAssertEqual(try parse(["rope_parameters": ["rope_type": "default", "rope_theta": 1e6]]).rope, RoPEScaling(theta: 1e6))
    }

    func testUnsupportedFieldsAreNamed() {
        assertError(["model_type": "gpt2"], field: "model_type")
        assertError(["hidden_act": "gelu"], field: "hidden_act")
        assertError(["num_key_value_heads": 5], field: "num_key_value_heads")
        assertError(["rope_scaling": ["type": "yarn", "factor": 2.0]], field: "rope_scaling.rope_type")
        assertError(["rope_scaling": ["type": "linear"]], field: "rope_scaling.factor")
        assertError(["vocab_size": nil], field: "vocab_size")
        assertError(["hidden_size": "big"], field: "hidden_size")
        assertError(["mlp_bias": true], field: "mlp_bias")
        assertError(["model_type": "qwen2", "use_sliding_window": true], field: "use_sliding_window")
        assertError(["attention_dropout": 0.1], field: "attention_dropout")
    }

    func testQwen3HeadNormsAndHeadDim() throws {
        // Qwen3-0.6B's shape: head_dim 128 with hidden 1024 and 16 heads (q is 2048 wide).
        let c = try parse(["model_type": "qwen3", "hidden_size": 1024, "num_attention_heads": 16,
                           "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 3072,
                           "tie_word_embeddings": true, "use_sliding_window": false, "sliding_window": nil,
                           "layer_types": ["full_attention", "full_attention"]])
        XCTAssertTrue(c.qkNorm && !c.fusedProjections && !c.qkvBias && !c.oBias && c.tieWordEmbeddings)
        XCTAssertEqual(c.qWidth, 2048)
        XCTAssertNil(c.slidingWindow)
        XCTAssertTrue(try parse(["model_type": "qwen3", "attention_bias": true]).qkvBias)
        XCTAssertFalse(try parse([:]).qkNorm, "only Qwen3 has q_norm / k_norm")
        assertError(["model_type": "qwen3", "use_sliding_window": true], field: "use_sliding_window")
        assertError(["model_type": "qwen3", "layer_types": ["full_attention", "sliding_attention"]], field: "layer_types")
    }

    func testPhi3FusedProjectionsAndRefusals() throws {
        let c = try parse(["model_type": "phi3", "sliding_window": 2047, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
                           "rope_scaling": nil, "original_max_position_embeddings": 4096])
        XCTAssertTrue(c.fusedProjections && !c.qkNorm && !c.qkvBias)
        XCTAssertEqual(c.slidingWindow, 2047)
        assertError(["model_type": "phi3", "resid_pdrop": 0.1], field: "resid_pdrop")
        assertError(["model_type": "phi3", "embd_pdrop": 0.1], field: "embd_pdrop")
        assertError(["model_type": "phi3", "rope_scaling": ["type": "yarn", "short_factor": [1.0], "long_factor": [1.0]]],
                    field: "rope_scaling.rope_type")
        assertError(["model_type": "phi3", "partial_rotary_factor": 0.75], field: "partial_rotary_factor")
        assertError(["model_type": "phi3", "rope_parameters": ["rope_type": "default", "rope_theta": 10000.0,
                                                               "partial_rotary_factor": 0.75]],
                    field: "partial_rotary_factor")
    }

    func testUnsupportedModelTypeListsEverySupportedOne() {
        XCTAssertThrowsError(try parse(["model_type": "gemma"])) { error in
            let text = "\(error)"
            for type in ["llama", "mistral", "qwen2", "qwen3", "phi3", "gemma2", "gemma3_text"] {
                XCTAssertTrue(text.contains(type), "\(type) missing from: \(text)")
            }
            XCTAssertTrue(text.contains("'gemma'"), text)
        }
    }

    func testRoPEFrequenciesOfEachVariant() {
        var c = LlamaConfig(vocabSize: 10, hiddenSize: 64, intermediateSize: 8, layers: 1, heads: 4,
                            rope: RoPEScaling(theta: 10000), maxPositionEmbeddings: 16)
        let plain = RoPEFrequencies.inverse(c, sequenceLength: 8)
        XCTAssertEqual(plain.count, 8)
        XCTAssertEqual(plain[0], 1)
        XCTAssertEqual(plain[1], 1 / powf(10000, 2 / 16), accuracy: 1e-9)
        c.rope.kind = .linear(factor: 4)
        XCTAssertEqual(RoPEFrequencies.inverse(c, sequenceLength: 8)[3], plain[3] / 4)
        c.rope.kind = .dynamic(factor: 2)
        XCTAssertEqual(RoPEFrequencies.inverse(c, sequenceLength: 16), plain, "within the trained context nothing changes")
        XCTAssertLessThan(RoPEFrequencies.inverse(c, sequenceLength: 64)[3], plain[3])
        c.rope.kind = .llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 32)
        let l3 = RoPEFrequencies.inverse(c, sequenceLength: 8)
        XCTAssertEqual(l3[0], plain[0], "high frequencies are kept")
        XCTAssertEqual(l3[7], plain[7] / 8, "low frequencies are divided by the factor")
    }

    /// gemma-2-9b's config.json (transformers 4 fields): GeGLU, (1 + w) norms, sandwich norms, scaled
    /// embeddings, softcaps, query_pre_attn_scalar 256 with head_dim 256, every other layer sliding.
    func testGemma2() throws {
        let c = try parse(["model_type": "gemma2", "hidden_act": nil, "hidden_activation": "gelu_pytorch_tanh",
                           "hidden_size": 3584, "intermediate_size": 14336, "num_hidden_layers": 42,
                           "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256, "vocab_size": 256000,
                           "query_pre_attn_scalar": 256, "sliding_window": 4096, "attn_logit_softcapping": 50.0,
                           "final_logit_softcapping": 30.0, "rms_norm_eps": 1e-6, "max_position_embeddings": 8192])
        XCTAssertEqual(c.modelType, .gemma2)
        XCTAssertEqual(c.activation, .geluTanh)
        XCTAssertTrue(c.sandwichNorms && c.scalesEmbeddings && c.tieWordEmbeddings && !c.qkNorm)
        XCTAssertEqual(c.normWeightOffset, 1)
        XCTAssertEqual(c.attentionSoftcap, 50)
        XCTAssertEqual(c.finalLogitSoftcap, 30)
        XCTAssertEqual(c.attentionScale, 1.0 / 16)
        XCTAssertEqual(c.qWidth, 4096)  // wider than hidden 3584
        XCTAssertEqual((0..<4).map { c.isSliding(layer: $0) }, [true, false, true, false])
        XCTAssertEqual(c.embeddingScale(.bf16), 59.75)  // √3584 = 59.87 rounded to bf16, as transformers does
        XCTAssertEqual(c.embeddingScale(.f32), Float(3584.0.squareRoot()))
        XCTAssertEqual(c.parameterCount, 9_241_705_984)  // gemma-2-9b
        var preset = try LlamaConfig.preset("gemma2-9b")  // the bench shape is this config
        preset.bosTokenId = nil; preset.eosTokenId = nil
        XCTAssertEqual(preset, c)
        // Absent softcaps are Gemma2Config's defaults; null means none.
        let defaults = try parse(["model_type": "gemma2", "hidden_act": nil, "sliding_window": 4096])
        XCTAssertEqual(defaults.attentionSoftcap, 50)
        XCTAssertEqual(defaults.finalLogitSoftcap, 30)
        XCTAssertNil(try parse(["model_type": "gemma2", "hidden_act": nil, "sliding_window": 4096,
                                "attn_logit_softcapping": NSNull()]).attentionSoftcap)
        assertError(["model_type": "gemma2", "hidden_act": nil, "hidden_activation": "silu"], field: "hidden_activation")
        assertError(["model_type": "gemma2", "hidden_act": nil, "sliding_window": nil], field: "sliding_window")
        assertError(["model_type": "gemma2", "hidden_act": nil, "sliding_window": 4096, "layer_types": ["full_attention"]],
                    field: "layer_types")
        assertError(["model_type": "gemma2", "hidden_act": nil, "sliding_window": 4096,
                     "use_bidirectional_attention": true], field: "use_bidirectional_attention")
        assertError(["model_type": "gemma2", "hidden_act": nil, "sliding_window": 4096, "attn_logit_softcapping": 0.0],
                    field: "attn_logit_softcapping")
    }

    /// Gemma 3 (text): q/k norms, no softcaps by default, 5 sliding layers then a full one, and two
    /// RoPEs, read from transformers 4's fields (rope_theta + rope_scaling for the global layers,
    /// rope_local_base_freq) and from transformers 5's rope_parameters per layer type.
    func testGemma3Text() throws {
        let old = try parse(["model_type": "gemma3_text", "hidden_act": nil, "hidden_activation": "gelu_pytorch_tanh",
                             "hidden_size": 2560, "num_hidden_layers": 34, "num_attention_heads": 8,
                             "num_key_value_heads": 4, "head_dim": 256, "query_pre_attn_scalar": 256,
                             "sliding_window": 1024, "sliding_window_pattern": 6, "rope_theta": 1_000_000.0,
                             "rope_local_base_freq": 10_000.0, "rope_scaling": ["rope_type": "linear", "factor": 8.0],
                             "final_logit_softcapping": NSNull(), "attn_logit_softcapping": NSNull()])
        XCTAssertTrue(old.qkNorm && old.sandwichNorms)
        XCTAssertNil(old.attentionSoftcap)
        XCTAssertNil(old.finalLogitSoftcap)
        XCTAssertEqual((0..<7).map { old.isSliding(layer: $0) }, [true, true, true, true, true, false, true])
        XCTAssertEqual(old.rope, RoPEScaling(theta: 1e6, kind: .linear(factor: 8)))
        XCTAssertEqual(old.localRope, RoPEScaling(theta: 1e4))
        XCTAssertEqual(old.rope(layer: 0), RoPEScaling(theta: 1e4))
        XCTAssertEqual(old.rope(layer: 5), RoPEScaling(theta: 1e6, kind: .linear(factor: 8)))
        let new = try parse(["model_type": "gemma3_text", "hidden_act": nil, "hidden_size": 2560, "num_hidden_layers": 34,
                             "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "sliding_window": 1024,
                             "rope_theta": nil,
                             "rope_parameters": ["full_attention": ["rope_type": "linear", "factor": 8.0, "rope_theta": 1e6],
                                                 "sliding_attention": ["rope_type": "default", "rope_theta": 1e4]]])
        XCTAssertEqual(new.rope, old.rope)
        XCTAssertEqual(new.localRope, old.localRope)
        // gemma-3-4b-pt's text config is the bench shape
        let full = try parse(["model_type": "gemma3_text", "hidden_act": nil, "hidden_activation": "gelu_pytorch_tanh",
                              "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34,
                              "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "vocab_size": 262_208,
                              "query_pre_attn_scalar": 256, "sliding_window": 1024, "rms_norm_eps": 1e-6,
                              "max_position_embeddings": 131_072, "rope_theta": 1_000_000.0, "rope_local_base_freq": 10_000.0,
                              "rope_scaling": ["rope_type": "linear", "factor": 8.0]])
        var preset = try LlamaConfig.preset("gemma3-4b")
        preset.bosTokenId = nil; preset.eosTokenId = nil
        XCTAssertEqual(preset, full)
        // Written back (merged export) and read again: the same configuration.
        XCTAssertEqual(try HFConfig.parse(HFConfig.json(new), file: "config.json"), new)
        XCTAssertEqual(try HFConfig.parse(HFConfig.json(try parse(["model_type": "gemma2", "hidden_act": nil,
                                                                    "sliding_window": 64])), file: "config.json").finalLogitSoftcap, 30)
        assertError(["model_type": "gemma3", "text_config": [String: Any]()], field: "model_type")
        assertError(["model_type": "gemma3_text", "hidden_act": nil, "sliding_window": 512,
                     "rope_parameters": ["full_attention": ["rope_type": "yarn", "factor": 8.0],
                                         "sliding_attention": ["rope_type": "default"]]],
                    field: "rope_parameters.full_attention.rope_type")
    }

    /// Whole-number float fields are written as floats (transformers' strict configs reject 30 for 30.0),
    /// at any depth; other integers stay integers.
    func testSerializedConfigSpellsFloatFieldsAsFloats() throws {
        let text = String(decoding: try HFConfig.serialized(["final_logit_softcapping": 30.0, "num_hidden_layers": 42,
                                                             "attn_logit_softcapping": 50.5, "rms_norm_eps": 1e-6,
                                                             "quantization_config": ["llm_int8_threshold": 6.0]]),
                          as: UTF8.self)
        XCTAssertTrue(text.contains("\"final_logit_softcapping\" : 30.0,"), text)
        XCTAssertTrue(text.contains("\"attn_logit_softcapping\" : 50.5,"), text)
        XCTAssertTrue(text.contains("\"llm_int8_threshold\" : 6.0\n"), text)
        XCTAssertTrue(text.contains("\"num_hidden_layers\" : 42,"), text)
        let back = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        XCTAssertEqual(back["final_logit_softcapping"] as? Double, 30)
    }
}
