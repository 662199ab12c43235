import Foundation
import XCTest
@testable import Swiftlet

/// Phi-3's longrope: config.json parsing as transformers 5 reads it, the frequency table, and the
/// config written back. The numerics against PyTorch are in ModelFixtureTests (phi3_longrope,
/// phi3_longrope_short).
final class LongRoPETests: XCTestCase {
    /// Phi-3-mini-128k's layout, shrunk: head_dim 8, so four factors each.
    let base: [String: Any] = [
        "model_type": "phi3", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 1, "num_attention_heads": 4, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
        "rope_scaling": ["type": "longrope", "short_factor": [1.0, 1.5, 2.0, 3.0], "long_factor": [2.0, 4.0, 8.0, 16.0]],
    ]

    func parse(_ changes: [String: Any?], rope: [String: Any?] = [:]) throws -> LlamaConfig {
        var json = base
        for (k, v) in changes { json[k] = v ?? nil }
        if !rope.isEmpty {
            var scaling = json["rope_scaling"] as! [String: Any]
            for (k, v) in rope { scaling[k] = v ?? nil }
            json["rope_scaling"] = scaling
        }
        return try HFConfig.parse(json, file: "config.json")
    }

    func longrope(_ c: LlamaConfig) throws -> LongRoPE {
        guard case let .longrope(l) = c.rope.kind else { throw XCTSkip("not longrope: \(c.rope.kind)") }
        return l
    }

    func assertError(_ changes: [String: Any?], rope: [String: Any?] = [:], field: String, mentions: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try parse(changes, rope: rope), file: file, line: line) { error in
            XCTAssertEqual((error as? ConfigError)?.field, field, "\(error)", file: file, line: line)
            XCTAssertTrue("\(error)".contains("config.json") && "\(error)".contains(mentions), "\(error)",
                          file: file, line: line)
        }
    }

    func testPhi3ConfigParses() throws {
        let l = try longrope(try parse([:]))
        XCTAssertEqual(l, LongRoPE(shortFactor: [1, 1.5, 2, 3], longFactor: [2, 4, 8, 16], originalMaxPositions: 4096))
        // 131072 / 4096 = 32: sqrt(1 + ln 32 / ln 4096) = sqrt(1 + 5/12), Phi-3-mini-128k's 1.19024.
        XCTAssertEqual(l.attentionScale(maxPositionEmbeddings: 131072), Float((1 + 5.0 / 12).squareRoot()))
        // The older spelling and transformers 5's rope_parameters give the same.
        XCTAssertEqual(try parse([:], rope: ["type": "su"]).rope.kind, .longrope(l))
        let v5: [String: Any] = ["rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0, 1.5, 2.0, 3.0],
                                 "long_factor": [2.0, 4.0, 8.0, 16.0], "original_max_position_embeddings": 4096]
        XCTAssertEqual(try parse(["rope_scaling": nil, "rope_parameters": v5]).rope.kind, .longrope(l))
    }

    func testOriginalContextFollowsTransformers() throws {
        // Phi-3: the top-level field wins over rope_parameters', and without it Phi3Config's 4096.
        XCTAssertEqual(try longrope(try parse([:], rope: ["original_max_position_embeddings": 8192])).originalMaxPositions, 4096)
        XCTAssertEqual(try longrope(try parse(["original_max_position_embeddings": nil],
                                              rope: ["original_max_position_embeddings": 8192])).originalMaxPositions, 4096)
        // Other families: rope_parameters', else max_position_embeddings.
        XCTAssertEqual(try longrope(try parse(["model_type": "llama", "original_max_position_embeddings": nil],
                                              rope: ["original_max_position_embeddings": 8192])).originalMaxPositions, 8192)
        XCTAssertEqual(try longrope(try parse(["model_type": "llama", "original_max_position_embeddings": nil]))
            .originalMaxPositions, 131072)
    }

    func testAttentionScale() throws {
        XCTAssertEqual(try longrope(try parse([:], rope: ["attention_factor": 1.25])).attentionScale(maxPositionEmbeddings: 131072), 1.25)
        // A given factor is used instead of max / original.
        XCTAssertEqual(try longrope(try parse([:], rope: ["factor": 4096.0])).attentionScale(maxPositionEmbeddings: 131072),
                       Float(2.0.squareRoot()))
        // No extension (factor <= 1): no scaling.
        XCTAssertEqual(try longrope(try parse(["max_position_embeddings": 4096])).attentionScale(maxPositionEmbeddings: 4096), 1)
    }

    func testFactorListsAreChecked() {
        assertError([:], rope: ["short_factor": [1.0, 1.0, 1.0]], field: "rope_scaling.short_factor", mentions: "head_dim / 2 = 4")
        assertError([:], rope: ["long_factor": [1.0, 1.0, 1.0, 1.0, 1.0]], field: "rope_scaling.long_factor", mentions: "5 entries")
        assertError([:], rope: ["long_factor": nil], field: "rope_scaling.long_factor", mentions: "missing")
        assertError([:], rope: ["short_factor": "1,2,3,4"], field: "rope_scaling.short_factor", mentions: "list of numbers")
        assertError([:], rope: ["short_factor": [1.0, 0.0, 1.0, 1.0]], field: "rope_scaling.short_factor", mentions: "positive")
        assertError([:], rope: ["attention_factor": -1.0], field: "rope_scaling.attention_factor", mentions: "positive")
        // head_dim counts, not hidden / heads.
        assertError(["head_dim": 16], field: "rope_scaling.short_factor", mentions: "head_dim / 2 = 8")
        // YaRN stays refused with its own message.
        assertError([:], rope: ["type": "yarn"], field: "rope_scaling.rope_type", mentions: "'yarn' is not supported")
    }

    func testTableSwitchesFactorsPastTheOriginalContextAndScales() throws {
        var c = try parse(["max_position_embeddings": 64, "original_max_position_embeddings": 8])
        let plain: [Float] = stride(from: 0, to: 8, by: 2).map { 1 / powf(10000, Float($0) / 8) }
        let short = RoPEFrequencies.inverse(c, sequenceLength: 8)
        let long = RoPEFrequencies.inverse(c, sequenceLength: 9)
        for i in 0..<4 {
            XCTAssertEqual(short[i], plain[i] / [1, 1.5, 2, 3][i], accuracy: plain[i] * 1e-6)
            XCTAssertEqual(long[i], plain[i] / [2, 4, 8, 16][i], accuracy: plain[i] * 1e-6)
        }
        let scale = RoPEFrequencies.attentionScale(c)
        XCTAssertEqual(scale, Float(2.0.squareRoot()))  // factor 64 / 8 = 8 = original
        let table = try RoPEFrequencies.table(c, positions: 9, sequenceLength: 9, on: CPUBackend())
        let cos = table.cos.floats, sin = table.sin.floats
        XCTAssertEqual(cos[0], scale, "position 0: cos 1 times the scale")
        XCTAssertEqual(cos[5 * 4 + 1], cosf(5 * long[1]) * scale)
        XCTAssertEqual(sin[5 * 4 + 1], sinf(5 * long[1]) * scale)
        c.rope.kind = .none
        XCTAssertEqual(RoPEFrequencies.attentionScale(c), 1)
    }

    func testConfigIsWrittenBackAsRead() throws {
        for rope: [String: Any?] in [[:], ["attention_factor": 1.25, "factor": 16.0]] {
            let c = try parse([:], rope: rope)
            let json = HFConfig.json(c)
            XCTAssertEqual(json["original_max_position_embeddings"] as? Int, 4096)
            let written = try XCTUnwrap(json["rope_parameters"] as? [String: Any])
            XCTAssertEqual(written["rope_type"] as? String, "longrope")
            XCTAssertEqual(written["attention_factor"] as? Double, rope["attention_factor"] as? Double)
            XCTAssertEqual(written["factor"] as? Double, rope["factor"] as? Double)
            XCTAssertEqual(try HFConfig.parse(json, file: "written.json"), c)
        }
    }
}
