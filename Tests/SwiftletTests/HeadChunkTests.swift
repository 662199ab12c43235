import XCTest
@testable import Swiftlet

/// The head (final norm, lm_head, cross-entropy) runs in chunks of tokens: the chunks' sizes, and a loss
/// and gradients that do not depend on where the chunks end.
final class HeadChunkTests: XCTestCase {
    func testChunksHold16MiLogitsAndAtLeast256Rows() {
        XCTAssertEqual(LlamaModel.headChunk(tokens: 4096, vocab: 32000), 524)     // Llama 2: 16 Mi logits
        XCTAssertEqual(LlamaModel.headChunk(tokens: 4096, vocab: 128_256), 256)   // Llama 3: 130 rows raised to 256
        XCTAssertEqual(LlamaModel.headChunk(tokens: 4096, vocab: 256_000), 256)   // Gemma 2: 65 rows raised to 256
        XCTAssertEqual(LlamaModel.headChunk(tokens: 100, vocab: 256_000), 100)    // never past the batch
        XCTAssertEqual(LlamaModel.headChunk(tokens: 300, vocab: 96), 300)
    }

    /// 300 tokens in chunks of 7 (the last one 6 rows) against one chunk of all of them: the same loss
    /// and LoRA gradients up to the GEMMs' summation order, and the loss equals the cross-entropy of the
    /// model's full logits.
    func testTheLossAndGradientsDoNotDependOnTheChunks() throws {
        let backend = CPUBackend()
        let config = LlamaConfig(vocabSize: 96, hiddenSize: 32, intermediateSize: 64, layers: 1, heads: 2, kvHeads: 2,
                                 rmsNormEps: 1e-5, maxPositionEmbeddings: 256)
        let model = try LlamaModel.random(config: config, seed: 11, std: 0.2, on: backend)
        try model.addLoRA(LoRAConfig(r: 4, alpha: 8), seed: 2)
        var g = SplitMix64(seed: 9)
        let adapters = model.layers[0].linears.compactMap(\.lora)
        for lora in adapters {   // PEFT starts B at zero: random B makes every gradient count
            backend.copy(try backend.upload((0..<lora.b.count).map { _ in Float(g.next() % 1000) / 1000 - 0.5 }, lora.b.shape,
                                            .f32), into: lora.b)
        }
        let batch = Batch(examples: (0..<2).map { _ in Example(inputIds: (0..<150).map { _ in Int32(g.next() % 96) }) })

        func run(chunk: Int?) throws -> (loss: Double, gradients: [[Float]]) {
            model.headChunkOverride = chunk
            for lora in adapters { backend.zero([lora.gradA, lora.gradB]) }
            let loss = try model.step(batch, gradScale: 1)
            return (loss, adapters.flatMap { [backend.download($0.gradA), backend.download($0.gradB)] })
        }
        XCTAssertEqual(LlamaModel.headChunk(tokens: 300, vocab: 96), 300)
        let whole = try run(chunk: nil)
        let chunked = try run(chunk: 7)

        XCTAssertEqual(chunked.loss, whole.loss, accuracy: 1e-9 * abs(whole.loss))
        for (a, b) in zip(chunked.gradients, whole.gradients) {
            XCTAssertLessThan(relativeError(a, b), 1e-5)
        }
        // The loss is Σ CE over the targets of the full logits.
        let logits = try model.logits(batch)
        var expected = 0.0
        for (t, target) in batch.targets.enumerated() where target != Batch.ignoreIndex {
            let row = logits[(t * 96)..<((t + 1) * 96)].map(Double.init)
            let top = row.max()!
            expected += top + log(row.reduce(0) { $0 + exp($1 - top) }) - row[Int(target)]
        }
        XCTAssertEqual(whole.loss, expected, accuracy: 1e-5 * expected)
    }
}
