import XCTest
@testable import Swiftlet

/// The adapters a layer hands `Backend.withPreparedLoRA` are grouped as its low-rank ops take them:
/// q/k/v and gate/up together when every part has an adapter, alone otherwise; o and down alone.
final class LoRAGroupsTests: XCTestCase {
    let config = LlamaConfig(vocabSize: 32, hiddenSize: 32, intermediateSize: 48, layers: 1, heads: 4, kvHeads: 2,
                             rmsNormEps: 1e-5, maxPositionEmbeddings: 32)

    func modules(_ targets: Set<LoRAConfig.Target>) throws -> [[String]] {
        let model = try LlamaModel.random(config: config, seed: 1, on: CPUBackend())
        try model.addLoRA(LoRAConfig(r: 4, alpha: 8, targets: targets), seed: 2)
        return model.layers[0].loraGroups.map { $0.map(\.module) }
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
