import XCTest
@testable import Swiftlet

/// The adapters a layer hands `Backend.withPreparedLoRA` are grouped as its low-rank ops take them:
/// q/k/v and gate/up together when every part has an adapter, alone otherwise; o and down alone.
final class LoRAGroupsTests: XCTestCase {
    let config = LlamaConfig(vocabSize: 32, hiddenSize: 32, intermediateSize: 48, layers: 1, heads: 4, kvHeads: 2,
                             rmsNormEps: 1e-5, maxPositionEmbeddings: 32)

    func modules(_ targets: Set<LoRAConfig.Target>, rank: Int = 4, dropout: Float = 0) throws -> [[String]] {
        let model = try LlamaModel.random(config: config, seed: 1, on: CPUBackend())
        try model.addLoRA(LoRAConfig(r: rank, alpha: 8, dropout: dropout, targets: targets), seed: 2)
        return model.layers[0].loraGroups.map { $0.map(\.module) }
    }

    /// Adapters whose products never take the fused low-rank ops (a dropout mask, a rank above theirs)
    /// have nothing to prepare.
    func testAdaptersOffTheFusedOpsAreLeftOut() throws {
        XCTAssertEqual(try modules(Set(LoRAConfig.Target.allCases), dropout: 0.1), [])
        XCTAssertEqual(try modules(Set(LoRAConfig.Target.allCases), rank: LoRAShapes.maxRank + 8), [])
        XCTAssertEqual(try modules(Set(LoRAConfig.Target.allCases), rank: LoRAShapes.maxRank).count, 4)
    }

    func testAllSevenGroupAsTheOpsShareTheirInput() throws {
        let names = try modules(Set(LoRAConfig.Target.allCases)).map { $0.map { $0.split(separator: ".").last.map(String.init) ?? $0 } }
        XCTAssertEqual(names, [["q_proj", "k_proj", "v_proj"], ["o_proj"], ["gate_proj", "up_proj"], ["down_proj"]])
    }

    func testPartsWithoutAnAdapterLeaveTheOthersAlone() throws {
        let names = try modules([.q, .v, .down]).map { $0.map { $0.split(separator: ".").last.map(String.init) ?? $0 } }
        XCTAssertEqual(names, [["q_proj"], ["v_proj"], ["down_proj"]])
    }
}
