import XCTest
@testable import Swiftlet

/// `DecoderLayer.backward` consumes the layer's saved activations and frees the MLP's (gate, up and the
/// gated product, 3 × tokens × intermediate) before the attention's backward allocates its gradients;
/// the forward does not keep the input norm's output.
final class DecoderLayerMemoryTests: XCTestCase {
    func testTheAttentionBackwardDoesNotHoldTheMLPActivations() throws {
        let config = LlamaConfig(vocabSize: 64, hiddenSize: 64, intermediateSize: 512, layers: 1, heads: 4, kvHeads: 2,
                                 rmsNormEps: 1e-5, maxPositionEmbeddings: 256)
        let backend = CPUBackend()
        let model = try LlamaModel.random(config: config, seed: 5, std: 0.1, on: backend)
        try model.addLoRA(LoRAConfig(r: 4, alpha: 8), seed: 1)
        var g = SplitMix64(seed: 3)
        let batch = Batch(examples: [Example(inputIds: (0..<128).map { _ in Int32(g.next() % 64) })])
        let context = try model.stepContext(batch)
        let tokens = batch.tokenCount, hidden = config.hiddenSize
        let h = try backend.upload((0..<tokens * hidden).map { _ in Float(g.next() % 1000) / 1000 - 0.5 }, [tokens, hidden], .f32)
        let dOut = try backend.upload((0..<tokens * hidden).map { _ in Float(g.next() % 1000) / 1000 - 0.5 }, [tokens, hidden], .f32)
        let before = backend.memory.requestedCurrent
        let (_, saved) = try model.layers[0].forward(h, context)
        // The input norm's output (q, k and v's input) is not held: the backward recomputes it.
        XCTAssertTrue(saved.qkvSaved.linears.allSatisfy { $0.input == nil })
        let held = backend.memory.requestedCurrent - before
        let base = backend.memory.requestedCurrent
        backend.memory.resetPeak()
        _ = try model.layers[0].backward(dOut, saved: consume saved, context)
        let rise = backend.memory.requestedPeak - base
        // The attention's backward allocates dL/d(attention output), dQ, dK and dV: had the MLP's activations
        // stayed alive, the peak would rise above the saved activations by at least these; freed, what the
        // MLP's backward allocates (dL/dn2, the LoRA terms) sets the peak.
        let attentionGradients = 4 * tokens * (2 * config.qWidth + 2 * config.kvWidth)
        let mlpActivations = 4 * 3 * tokens * config.intermediateSize
        XCTAssertLessThan(rise, attentionGradients,
                          "the backward's peak rose \(rise) bytes above the saved activations: the MLP's \(mlpActivations) bytes are held through the attention's backward")
        XCTAssertGreaterThan(rise, 0)
        XCTAssertGreaterThan(held, mlpActivations)
    }
}
