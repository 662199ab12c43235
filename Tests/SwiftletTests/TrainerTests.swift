import XCTest
@testable import Swiftlet

final class TrainerTests: XCTestCase {
    static let config = LlamaConfig(vocabSize: 64, hiddenSize: 32, intermediateSize: 48, layers: 2, heads: 4, kvHeads: 2,
                                    rmsNormEps: 1e-5, maxPositionEmbeddings: 64)

    func model(seed: UInt64 = 3, lora: LoRAConfig = LoRAConfig(r: 4, alpha: 8)) throws -> LlamaModel {
        let m = try LlamaModel.random(config: Self.config, seed: seed, on: CPUBackend())
        try m.addLoRA(lora, seed: 11)
        return m
    }

    func data(_ count: Int = 24) -> [Example] {
        var g = SplitMix64(seed: 5)
        return (0..<count).map { _ in
            let start = Int32(g.next() % 64)
            return Example(inputIds: (0..<12).map { (start + Int32($0)) % 64 })
        }
    }

    func arguments(steps: Int = 6) -> TrainingArguments {
        var a = TrainingArguments()
        a.batchSize = 4
        a.maxSteps = steps
        a.learningRate = 1e-2
        a.scheduler = .constant
        return a
    }

    func weights(_ m: LlamaModel) -> [[Float]] { m.adapters.flatMap { [m.backend.download($0.a), m.backend.download($0.b)] } }

    func testLossFallsAndRunsAreReproducible() throws {
        var losses: [Double] = []
        let m1 = try model()
        try Trainer(model: m1, examples: data(), arguments: arguments(steps: 15)).train(onStep: { losses.append($0.loss) })
        XCTAssertLessThan(losses.suffix(3).reduce(0, +) / 3, losses[0] - 0.15, "loss \(losses)")
        XCTAssertFalse(losses.contains { $0.isNaN })

        let m2 = try model()
        try Trainer(model: m2, examples: data(), arguments: arguments(steps: 15)).train()
        XCTAssertEqual(weights(m1), weights(m2), "same seed, same data: bit-identical adapters")
    }

    func testGradientAccumulationEqualsOneLargeBatch() throws {
        // Same 4 examples as one batch of 4, or as 2 micro-batches of 2 with unequal token counts:
        // the loss is normalised over all targets of the step either way.
        var examples = data(4)
        examples[1].labels = examples[1].inputIds.enumerated().map { $0.offset < 8 ? -100 : $0.element }
        var a = arguments(steps: 1)
        a.shuffle = false
        a.optimizer = .sgd
        let big = try model(), small = try model()
        let logBig = try Trainer(model: big, examples: examples, arguments: a).step()
        a.batchSize = 2
        a.gradientAccumulation = 2
        let logSmall = try Trainer(model: small, examples: examples, arguments: a).step()
        XCTAssertEqual(logBig.loss, logSmall.loss, accuracy: 1e-6)
        XCTAssertEqual(logBig.gradNorm, logSmall.gradNorm, accuracy: 1e-6 * logBig.gradNorm)
        for (x, y) in zip(weights(big), weights(small)) {
            for (p, q) in zip(x, y) { XCTAssertEqual(p, q, accuracy: 1e-6) }
        }
    }

    func testClippingBoundsTheUpdate() throws {
        var a = arguments(steps: 1)
        a.optimizer = .sgd
        a.learningRate = 1
        a.maxGradNorm = 1e-3
        let m = try model()
        let before = weights(m)
        let log = try Trainer(model: m, examples: data(), arguments: a).step()
        XCTAssertGreaterThan(log.gradNorm, 1e-3)
        let moved = zip(weights(m).joined(), before.joined()).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }.squareRoot()
        XCTAssertEqual(moved, 1e-3, accuracy: 1e-5, "an SGD step of lr 1 moves exactly the clipped norm")
    }

    func testAdapterRoundTripsThroughPEFTFormat() throws {
        let lora = LoRAConfig(r: 4, alpha: 8, dropout: 0.1, targets: [.q, .v, .down], useRSLoRA: true)
        let m = try model(lora: lora)
        try Trainer(model: m, examples: data(), arguments: arguments(steps: 2)).train()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("adapter-\(UUID().uuidString)")
        try PEFTAdapter.save(m, config: lora, to: directory)

        let fresh = try LlamaModel.random(config: Self.config, seed: 3, on: CPUBackend())
        let loaded = try PEFTAdapter.load(directory: directory, into: fresh)
        XCTAssertEqual(loaded, lora)
        XCTAssertEqual(weights(fresh), weights(m))
        XCTAssertEqual(fresh.adapters.map(\.module), m.adapters.map(\.module))

        // A model with fewer layers finds tensors it has no module for: an error, not a silent drop.
        var smaller = Self.config
        smaller.layers = 1
        let other = try LlamaModel.random(config: smaller, seed: 3, on: CPUBackend())
        XCTAssertThrowsError(try PEFTAdapter.load(directory: directory, into: other)) { error in
            XCTAssertTrue("\(error)".contains("model.layers.1"), "\(error)")
        }
        // A bigger rank in the config than in the file: shape mismatch naming the tensor.
        let configURL = directory.appendingPathComponent("adapter_config.json")
        let text = try String(contentsOf: configURL, encoding: .utf8).replacingOccurrences(of: "\"r\" : 4", with: "\"r\" : 5")
        try text.write(to: configURL, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try PEFTAdapter.load(directory: directory, into: try LlamaModel.random(config: Self.config, seed: 3, on: CPUBackend()))) { error in
            XCTAssertTrue("\(error)".contains("lora_A.weight"), "\(error)")
        }
    }

    /// The built-in demo end to end: files written, model and tokenizer loaded back, chat data
    /// rendered with the template, trained on the answers only, and the loss falls.
    func testDemoTaskLearnsQuickly() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("demo-\(UUID().uuidString)")
        try DemoTask.write(to: folder)
        let model = try LlamaModel.load(directory: folder.appendingPathComponent("model"), on: CPUBackend())
        XCTAssertEqual(model.config, DemoTask.config)
        let tokenizer = try Tokenizer(directory: folder.appendingPathComponent("model"))
        XCTAssertEqual(tokenizer.decode(tokenizer.encode("Count by 3 from 14."), skipSpecialTokens: true), "Count by 3 from 14.")
        let data = try TextDataset.load(url: folder.appendingPathComponent("chat.jsonl"), tokenizer: tokenizer,
                                        options: DatasetOptions(trainOnResponsesOnly: true, maxSeqLength: 96))
        XCTAssertEqual(data.format, .conversations)
        // only the answer and its <|im_end|> are trained: e.g. "14 17 20 23 26 29 32 35<|im_end|>"
        let first = data.examples[0]
        let trained = zip(first.inputIds, first.labels!).filter { $0.1 != Batch.ignoreIndex }.map(\.0)
        XCTAssertEqual(tokenizer.decode(trained), DemoTask.pairs(count: 1)[0].answer + "<|im_end|>")
        try model.addLoRA(DemoTask.lora, seed: 42)
        var a = DemoTask.arguments
        a.maxSteps = 40
        a.warmupSteps = 0
        a.scheduler = .constant
        var losses: [Double] = []
        try Trainer(model: model, examples: Array(data.examples.prefix(128)), arguments: a).train(onStep: { losses.append($0.loss) })
        XCTAssertGreaterThan(losses[0], 4, "an untrained model knows nothing of the task")
        XCTAssertLessThan(losses.suffix(5).reduce(0, +) / 5, losses[0] - 1.5, "\(losses)")
    }

    /// Packed rows keep every example's attention and positions to itself, so the loss and the
    /// gradients of a packed step equal those of the same examples right-padded one per row.
    func testPackedStepEqualsPaddedStep() throws {
        var g = SplitMix64(seed: 12)
        let examples = (0..<6).map { i in
            Example(inputIds: (0..<(5 + 3 * i)).map { _ in Int32(g.next() % 64) })
        }
        var a = arguments(steps: 1)
        a.shuffle = false
        a.optimizer = .sgd
        a.maxSeqLength = 24
        a.batchSize = 6
        let padded = try model()
        let logPadded = try Trainer(model: padded, examples: examples, arguments: a).step()
        a.packing = true
        a.batchSize = Packing.pack(examples, seqLength: 24).count  // every packed row, once
        XCTAssertLessThan(a.batchSize, examples.count)
        let packedModel = try model()
        let trainer = try Trainer(model: packedModel, examples: examples, arguments: a)
        let logPacked = try trainer.step()
        XCTAssertEqual(logPacked.targetTokens, logPadded.targetTokens)
        XCTAssertLessThan(logPacked.tokens, logPadded.tokens, "packing wastes fewer tokens on padding")
        XCTAssertEqual(logPacked.loss, logPadded.loss, accuracy: 1e-5)
        XCTAssertEqual(logPacked.gradNorm, logPadded.gradNorm, accuracy: 1e-5 * logPadded.gradNorm)
    }
}
