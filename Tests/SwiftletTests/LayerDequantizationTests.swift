import XCTest
@testable import Swiftlet

/// QLoRA with gradient checkpointing: a layer's recompute and its backward share one dequantization
/// of each NF4 weight (`DecoderLayer.dequantizedForBackward`), with the same bits as dequantizing
/// for every use.
final class LayerDequantizationTests: XCTestCase {
    let config = LlamaConfig(vocabSize: 64, hiddenSize: 64, intermediateSize: 128, layers: 2, heads: 4, kvHeads: 2,
                             rmsNormEps: 1e-5, maxPositionEmbeddings: 128)

    override func tearDown() { DecoderLayer.dequantizesForBackward = DecoderLayer.dequantizesForBackwardByDefault }

    func testTheDequantizedLayerHoldsTheSameValuesDense() throws {
        DecoderLayer.dequantizesForBackward = true
        let model = try LlamaModel.random(config: config, seed: 2, loadIn4bit: true, on: CPUBackend())
        let layer = model.layers[0]
        XCTAssertTrue(layer.linears.allSatisfy { $0.weight.isQuantized })
        let dense = try layer.dequantizedForBackward()
        XCTAssertTrue(dense.linears.allSatisfy { !$0.weight.isQuantized })
        for (a, b) in zip(layer.linears, dense.linears) { XCTAssertEqual(try a.weight.floats(), try b.weight.floats()) }
        DecoderLayer.dequantizesForBackward = false
        XCTAssertTrue(try layer.dequantizedForBackward().linears.allSatisfy { $0.weight.isQuantized })
    }

    func testTheStepGivesTheSameBitsEitherWay() throws {
        func step(sharing: Bool) throws -> (Double, [[Float]]) {
            DecoderLayer.dequantizesForBackward = sharing
            let backend = CPUBackend()
            let model = try LlamaModel.random(config: config, seed: 2, loadIn4bit: true, on: backend)
            try model.addLoRA(LoRAConfig(r: 4, alpha: 8), seed: 3)
            var g = SplitMix64(seed: 4)
            for adapter in model.adapters {   // B is zero at init: random B makes every gradient count
                backend.copy(try backend.upload((0..<adapter.b.count).map { _ in Float(g.next() % 1000) / 1e4 - 0.05 },
                                                adapter.b.shape, .f32), into: adapter.b)
            }
            model.gradientCheckpointing = .on
            let batch = Batch(examples: [Example(inputIds: (0..<48).map { _ in Int32(g.next() % 64) })])
            let loss = try model.step(batch, gradScale: 1 / Float(batch.targetCount))
            return (loss, model.adapters.flatMap { [backend.download($0.gradA), backend.download($0.gradB)] })
        }
        let (shared, separate) = (try step(sharing: true), try step(sharing: false))
        XCTAssertEqual(shared.0, separate.0)
        XCTAssertEqual(shared.1, separate.1)
        XCTAssertTrue(shared.1.contains { $0.contains { $0 != 0 } })
    }
}
