import XCTest
@testable import Swiftlet

final class TrainingFLOPsTests: XCTestCase {
    /// A shape small enough to count by hand: hidden 4, 2 heads of 2 sharing one KV head,
    /// intermediate 6, one layer, vocabulary 10, one row of 3 tokens.
    let config = LlamaConfig(vocabSize: 10, hiddenSize: 4, intermediateSize: 6, layers: 1, heads: 2, kvHeads: 1)

    func testCountsByHand() {
        // weights of q, k, v, o, gate, up, down: 16 + 8 + 8 + 16 + 24 + 24 + 24 = 120
        // linear: forward 2·120·3 = 720, input gradient 720; attention: 6 visible pairs, 4·6·(2·2) = 96
        // forward, 240 backward; head 2·4·10·3 = 240 twice
        let f = TrainingFLOPs(config: config, rows: 1, rowLength: 3, rank: 0, recompute: false)
        XCTAssertEqual(f.model, 720 + 96 + 720 + 240 + 480)
        XCTAssertEqual(f.withRecompute, f.model)
        // the recompute skips down_proj's frozen product (2·24·3 = 144)
        let g = TrainingFLOPs(config: config, rows: 1, rowLength: 3, rank: 0, recompute: true)
        XCTAssertEqual(g.withRecompute, g.model + 720 + 96 - 144)
        // unless Gemma's norm of the MLP output needs that output
        var gemma = config
        gemma.sandwichNorms = true
        let s = TrainingFLOPs(config: gemma, rows: 1, rowLength: 3, rank: 0, recompute: true)
        XCTAssertEqual(s.withRecompute, s.model + 720 + 96)
    }

    func testAdaptersAddTheirProducts() {
        // rank 1: Σ(in + out) over the projections = 8 + 6 + 6 + 8 + 10 + 10 + 10 = 58 per rank;
        // forward 2·58·3, backward 4·58·3
        let base = TrainingFLOPs(config: config, rows: 1, rowLength: 3, rank: 0, recompute: false)
        let lora = TrainingFLOPs(config: config, rows: 1, rowLength: 3, rank: 1, recompute: false)
        XCTAssertEqual(lora.model - base.model, 6 * 58 * 3)
    }
}
