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
        XCTAssertThrowsError(try parse(["model_type": "gemma2"])) { error in
            let text = "\(error)"
            for type in ["llama", "mistral", "qwen2", "qwen3", "phi3"] {
                XCTAssertTrue(text.contains(type), "\(type) missing from: \(text)")
            }
            XCTAssertTrue(text.contains("gemma2"), text)
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
}
