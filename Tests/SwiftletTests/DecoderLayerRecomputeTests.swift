import XCTest
@testable import Swiftlet

/// Gradient checkpointing's `DecoderLayer.recompute` gives the backward what the forward's saved
/// activations give it, bit for bit, without the layer's output: a dense MLP's down_proj runs only
/// its LoRA down product.
final class DecoderLayerRecomputeTests: XCTestCase {
    func testTheRecomputeGivesTheForwardsGradientsWithoutTheOutput() throws {
        for dropout: Float in [0, 0.1] {   // the fused LoRA ops, and the GEMM path with a dropout mask
            try check(config: LlamaConfig(vocabSize: 64, hiddenSize: 64, intermediateSize: 160, layers: 1, heads: 4,
                                          kvHeads: 2, rmsNormEps: 1e-5, maxPositionEmbeddings: 256),
                      dropout: dropout, skipsOutput: true)
        }
    }

    /// Gemma's norm of the MLP output needs that output in its backward: the recompute computes it
    /// (without it the norm's backward would be skipped and the gradients differ).
    func testGemmasMLPOutputNormStillGetsTheMLPOutput() throws {
        var config = LlamaConfig(vocabSize: 64, hiddenSize: 64, intermediateSize: 160, layers: 1, heads: 4, kvHeads: 2,
                                 rmsNormEps: 1e-5, maxPositionEmbeddings: 256)
        config.sandwichNorms = true
        try check(config: config, dropout: 0, skipsOutput: false)
    }

    private func check(config: LlamaConfig, dropout: Float, skipsOutput: Bool) throws {
        let backend = CPUBackend()
        let model = try LlamaModel.random(config: config, seed: 5, std: 0.1, on: backend)
        try model.addLoRA(LoRAConfig(r: 4, alpha: 8, dropout: dropout), seed: 1)
        // B starts at zero in PEFT's init; random B makes every LoRA term count.
        let adapters = model.layers[0].linears.compactMap(\.lora)
        var g = SplitMix64(seed: 3)
        func random(_ shape: Shape) throws -> Tensor {
            try backend.upload((0..<shape.count).map { _ in Float(g.next() % 1000) / 1000 - 0.5 }, shape, .f32)
        }
        for lora in adapters { backend.copy(try random(lora.b.shape), into: lora.b) }
        let batch = Batch(examples: [Example(inputIds: (0..<96).map { _ in Int32(g.next() % 64) })])
        var context = try model.stepContext(batch)
        context.layerSeed = 17
        let tokens = batch.tokenCount, hidden = config.hiddenSize
        let h = try random([tokens, hidden]), dOut = backend.download(try random([tokens, hidden]))
        let layer = model.layers[0]

        func gradients(_ saved: consuming DecoderLayer.Saved) throws -> [[Float]] {
            for lora in adapters { backend.zero([lora.gradA, lora.gradB]) }
            // a fresh dL/dout each time: the backward accumulates the residual's gradient into it
            let dH = try layer.backward(try backend.upload(dOut, [tokens, hidden], .f32), saved: saved, context)
            return [backend.download(dH)] + adapters.flatMap { [backend.download($0.gradA), backend.download($0.gradB)] }
        }
        let start = backend.memory.requestedCurrent
        backend.memory.resetPeak()
        let (output, forwardSaved) = try layer.forward(h, context)
        let forwardPeak = backend.memory.requestedPeak - start
        let expected = try gradients(forwardSaved)
        _ = output

        let before = backend.memory.requestedCurrent
        backend.memory.resetPeak()
        let recomputed = try layer.recompute(h, context)
        let recomputePeak = backend.memory.requestedPeak - before
        let got = try gradients(recomputed)

        XCTAssertEqual(got.count, expected.count)
        for (n, (a, b)) in zip(got, expected).enumerated() {
            XCTAssertEqual(a, b, "gradient \(n) differs after the recompute (dropout \(dropout))")
        }
        XCTAssertTrue(expected[1...].contains { $0.contains { $0 != 0 } }, "the LoRA gradients are all zero")
        // The forward peaks when the layer's output joins the saved activations; the recompute of a
        // dense MLP without Gemma's output norm never holds down_proj's product.
        XCTAssertEqual(forwardPeak - recomputePeak, skipsOutput ? tokens * hidden * 4 : 0,
                       "the forward peaked \(forwardPeak) bytes above its start, the recompute \(recomputePeak)")
    }
}
