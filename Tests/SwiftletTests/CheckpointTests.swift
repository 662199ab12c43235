import Foundation
import XCTest
@testable import Swiftlet

final class CheckpointTests: XCTestCase {
    static let config = LlamaConfig(vocabSize: 64, hiddenSize: 32, intermediateSize: 48, layers: 2, heads: 4, kvHeads: 2,
                                    rmsNormEps: 1e-5, maxPositionEmbeddings: 64)
    static let lora = LoRAConfig(r: 4, alpha: 8, dropout: 0.1)

    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("swiftlet-ckpt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: directory)
        TrainingInterrupt.reset()
    }

    /// A fresh model, as a new process would build it; `loraSeed` differs to show resume loads the weights.
    func model(config: LlamaConfig = CheckpointTests.config, lora: LoRAConfig = CheckpointTests.lora,
               loraSeed: UInt64 = 11) throws -> LlamaModel {
        let m = try LlamaModel.random(config: config, seed: 3, on: CPUBackend())
        try m.addLoRA(lora, seed: loraSeed)
        return m
    }

    func data(_ count: Int = 22) -> [Example] {
        var g = SplitMix64(seed: 5)
        return (0..<count).map { i in
            let start = Int32(g.next() % 64)
            let length = 8 + i % 5
            return Example(inputIds: (0..<length).map { (start + Int32($0)) % 64 })
        }
    }

    /// Shuffled, AdamW with weight decay, warm-up + cosine, accumulation 2; 22 rows in micro-batches
    /// of 3, so epochs end mid-step and step 5 is mid-epoch.
    func arguments(steps: Int = 10) -> TrainingArguments {
        var a = TrainingArguments()
        a.batchSize = 3
        a.gradientAccumulation = 2
        a.maxSteps = steps
        a.learningRate = 1e-2
        a.scheduler = .cosine
        a.warmupSteps = 3
        a.weightDecay = 0.05
        a.optimizer = .adamw
        a.shuffle = true
        return a
    }

    func weights(_ m: LlamaModel) -> [[Float]] { m.adapters.flatMap { [m.backend.download($0.a), m.backend.download($0.b)] } }

    /// Bit-identical, with a short message when not (the largest difference).
    func assertIdentical(_ x: [[Float]], _ y: [[Float]], _ message: String, line: UInt = #line) {
        guard x != y else { return }
        let diff = zip(x.joined(), y.joined()).map { abs($0 - $1) }.max() ?? .infinity
        XCTFail("\(message): not bit-identical, largest difference \(diff)", line: line)
    }

    func testResumeIsBitIdenticalToTrainingStraight() throws {
        // Straight: 10 steps, saving every 5 through train().
        let straight = try model()
        var a = arguments()
        a.saveSteps = 5
        let t1 = try Trainer(model: straight, examples: data(), arguments: a)
        let periodic = directory.appendingPathComponent("periodic")
        t1.checkpointDirectory = periodic
        var saved: [URL] = []
        t1.onCheckpoint = { saved.append($0) }
        XCTAssertTrue(try t1.train())
        XCTAssertEqual(saved.map(\.lastPathComponent), ["checkpoint-5", "checkpoint-10"])
        XCTAssertEqual(TrainingCheckpoint.list(in: periodic).map(\.step), [5, 10])
        let expected = weights(straight)

        // 5 steps, stop, save by hand.
        let first = try model()
        let t2 = try Trainer(model: first, examples: data(), arguments: arguments())
        XCTAssertFalse(try t2.train(stopWhen: { t2.globalStep == 5 }))
        XCTAssertEqual(t2.globalStep, 5)
        let checkpoint = try t2.saveCheckpoint(to: directory)
        XCTAssertEqual(checkpoint.lastPathComponent, "checkpoint-5")
        for file in ["adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors", "trainer_state.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: checkpoint.appendingPathComponent(file).path), file)
        }
        let state = try JSONSerialization.jsonObject(with: Data(contentsOf: checkpoint.appendingPathComponent("trainer_state.json"))) as? [String: Any]
        XCTAssertEqual(state?["global_step"] as? Int, 5)
        XCTAssertEqual((state?["log_history"] as? [Any])?.count, 5)
        // The adapter in a checkpoint is a PEFT adapter.
        XCTAssertEqual(try PEFTAdapter.config(directory: checkpoint).r, 4)

        // A fresh model (other LoRA init) and trainer resume each checkpoint and finish: bit-identical.
        for source in [checkpoint, periodic.appendingPathComponent("checkpoint-5")] {
            let resumed = try model(loraSeed: 99)
            XCTAssertNotEqual(weights(resumed), weights(first))
            let t3 = try Trainer(model: resumed, examples: data(), arguments: arguments())
            try t3.resume(from: source)
            XCTAssertEqual(t3.globalStep, 5)
            assertIdentical(weights(resumed), weights(first), "the adapter weights are restored")
            var steps: [Int] = []
            XCTAssertTrue(try t3.train(onStep: { steps.append($0.step) }))
            XCTAssertEqual(steps, Array(6...10))
            assertIdentical(weights(resumed), expected, "5 + resume + 5 vs 10 straight (\(source.path))")
            XCTAssertEqual(t3.logHistory.map(\.loss), t1.logHistory.map(\.loss))
            XCTAssertEqual(t3.logHistory.map(\.learningRate), t1.logHistory.map(\.learningRate))
        }

        // The comparison can fail: the same adapter weights without the optimizer state and data position differ.
        let naive = try LlamaModel.random(config: Self.config, seed: 3, on: CPUBackend())
        try PEFTAdapter.load(directory: checkpoint, into: naive)
        var b = arguments(steps: 5)
        b.seed = 42
        try Trainer(model: naive, examples: data(), arguments: b).train()
        XCTAssertNotEqual(weights(naive), expected)
        // ...and dropout is really active in this run (so the resumed masks were the same ones).
        let noDropout = try model(lora: LoRAConfig(r: 4, alpha: 8, dropout: 0))
        try Trainer(model: noDropout, examples: data(), arguments: arguments()).train()
        XCTAssertNotEqual(weights(noDropout), expected)
    }

    /// A mixture's experts: their adapters share one PEFT pair each (every expert's A and B joined), so
    /// the checkpoint names each expert's optimizer state apart and resume splits the joined adapter back.
    /// 3 + resume + 3 steps equal 6 straight, bit for bit, with AdamW and with 8-bit AdamW.
    func testMixtureResumesBitIdentically() throws {
        let moe = LlamaConfig(vocabSize: 64, hiddenSize: 32, intermediateSize: 48, layers: 2, heads: 4, kvHeads: 2,
                              rmsNormEps: 1e-5, maxPositionEmbeddings: 64,
                              moe: MixtureOfExpertsConfig(experts: 4, topK: 2, intermediateSize: 24))
        let lora = LoRAConfig(r: 4, alpha: 8)
        for optimizer in [TrainingArguments.OptimizerKind.adamw, .adamw8bit] {
            var a = arguments(steps: 6)
            a.optimizer = optimizer
            let straight = try model(config: moe, lora: lora)
            XCTAssertTrue(straight.adapters.contains { $0.expert != nil }, "the experts have adapters")
            try Trainer(model: straight, examples: data(), arguments: a).train()

            let first = try model(config: moe, lora: lora)
            let t1 = try Trainer(model: first, examples: data(), arguments: a)
            XCTAssertFalse(try t1.train(stopWhen: { t1.globalStep == 3 }))
            let checkpoint = try t1.saveCheckpoint(to: directory.appendingPathComponent("\(optimizer)"))
            let resumed = try model(config: moe, lora: lora, loraSeed: 99)
            let t2 = try Trainer(model: resumed, examples: data(), arguments: a)
            try t2.resume(from: checkpoint)
            assertIdentical(weights(resumed), weights(first), "\(optimizer): the experts' adapters are restored")
            XCTAssertTrue(try t2.train())
            assertIdentical(weights(resumed), weights(straight), "\(optimizer): 3 + resume + 3 vs 6 straight")
        }
    }

    func testResumeNeedsTheSameDropoutSeedsAndOrder() throws {
        // Changing the seed (dropout masks, shuffles) is refused rather than silently diverging.
        let m = try model()
        let t = try Trainer(model: m, examples: data(), arguments: arguments(steps: 2))
        try t.train()
        let checkpoint = try t.saveCheckpoint(to: directory)
        var other = arguments(steps: 2)
        other.seed = 7
        other.learningRate = 2e-2
        let fresh = try model()
        let t2 = try Trainer(model: fresh, examples: data(), arguments: other)
        XCTAssertThrowsError(try t2.resume(from: checkpoint)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("seed 42 -> 7") && text.contains("learningRate"), text)
        }
        XCTAssertEqual(t2.globalStep, 0, "a failed resume changes nothing")
        // Other data is refused too.
        let t3 = try Trainer(model: try model(), examples: data(21), arguments: arguments(steps: 2))
        XCTAssertThrowsError(try t3.resume(from: checkpoint)) { XCTAssertTrue("\($0)".contains("training data differs"), "\($0)") }
        // A longer run (max_steps changed) may continue.
        let t4 = try Trainer(model: try model(), examples: data(), arguments: arguments(steps: 4))
        try t4.resume(from: checkpoint)
        XCTAssertTrue(try t4.train())
        XCTAssertEqual(t4.globalStep, 4)
    }

    func testSaveTotalLimitAndTemporaryFolders() throws {
        let leftover = directory.appendingPathComponent(".checkpoint-99.tmp-12345")
        try FileManager.default.createDirectory(at: leftover, withIntermediateDirectories: true)
        try Data("half".utf8).write(to: leftover.appendingPathComponent("trainer_state.json"))
        XCTAssertNil(TrainingCheckpoint.latest(in: directory), "a temporary folder is not a checkpoint")

        var a = arguments(steps: 4)
        a.optimizer = .sgd
        a.saveSteps = 1
        a.saveTotalLimit = 2
        let t = try Trainer(model: try model(), examples: data(), arguments: a)
        t.checkpointDirectory = directory
        try t.train()
        XCTAssertEqual(TrainingCheckpoint.list(in: directory).map(\.step), [3, 4])
        XCTAssertEqual(TrainingCheckpoint.latest(in: directory)?.lastPathComponent, "checkpoint-4")
        XCTAssertFalse(FileManager.default.fileExists(atPath: leftover.path), "the next save removes it")
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        XCTAssertEqual(names, ["checkpoint-3", "checkpoint-4"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.appendingPathComponent("checkpoint-4/optimizer.safetensors").path),
                       "SGD has no optimizer state")

        // Saving the same step again replaces it whole.
        try t.saveCheckpoint(to: directory)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted(), ["checkpoint-3", "checkpoint-4"])
        // A non-numeric or temporary name is never "latest".
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("checkpoint-final"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: directory.appendingPathComponent(".checkpoint-7.tmp-1"), withIntermediateDirectories: true)
        XCTAssertEqual(TrainingCheckpoint.latest(in: directory)?.lastPathComponent, "checkpoint-4")
    }

    func testIncompleteCheckpointNamesTheFile() throws {
        let t = try Trainer(model: try model(), examples: data(), arguments: arguments(steps: 1))
        try t.train()
        let checkpoint = try t.saveCheckpoint(to: directory)
        for file in ["optimizer.safetensors", "adapter_model.safetensors", "trainer_state.json"] {
            let url = checkpoint.appendingPathComponent(file)
            let saved = try Data(contentsOf: url)
            try FileManager.default.removeItem(at: url)
            let fresh = try Trainer(model: try model(), examples: data(), arguments: arguments(steps: 1))
            XCTAssertThrowsError(try fresh.resume(from: checkpoint)) { error in
                XCTAssertEqual(error as? CheckpointError, .missingFile(checkpoint: checkpoint.path, file: file))
                XCTAssertTrue("\(error)".contains(checkpoint.path) && "\(error)".contains(file), "\(error)")
            }
            try saved.write(to: url)
        }
        XCTAssertThrowsError(try t.resume(from: directory.appendingPathComponent("checkpoint-77")))
        XCTAssertNoThrow(try Trainer(model: try model(), examples: data(), arguments: arguments(steps: 1)).resume(from: checkpoint))
    }

    func testResumingWithAnotherRankOrModelShapeIsAClearError() throws {
        let t = try Trainer(model: try model(), examples: data(), arguments: arguments(steps: 1))
        try t.train()
        let checkpoint = try t.saveCheckpoint(to: directory)

        let wider = try model(lora: LoRAConfig(r: 8, alpha: 8, dropout: 0.1))
        let t2 = try Trainer(model: wider, examples: data(), arguments: arguments(steps: 1))
        XCTAssertThrowsError(try t2.resume(from: checkpoint)) { error in
            XCTAssertTrue("\(error)".contains("LoRA rank differs: the checkpoint has r=4, the model's adapters have r=8"), "\(error)")
        }

        let bigger = LlamaConfig(vocabSize: 64, hiddenSize: 48, intermediateSize: 48, layers: 2, heads: 4, kvHeads: 2,
                                 rmsNormEps: 1e-5, maxPositionEmbeddings: 64)
        let t3 = try Trainer(model: try model(config: bigger), examples: data(), arguments: arguments(steps: 1))
        XCTAssertThrowsError(try t3.resume(from: checkpoint)) { error in
            XCTAssertTrue("\(error)".contains("model's shape differs") && "\(error)".contains("hiddenSize: 48"), "\(error)")
        }

        let fewer = try model(lora: LoRAConfig(r: 4, alpha: 8, dropout: 0.1, targets: [.q, .v]))
        let t4 = try Trainer(model: fewer, examples: data(), arguments: arguments(steps: 1))
        XCTAssertThrowsError(try t4.resume(from: checkpoint)) { XCTAssertTrue("\($0)".contains("LoRA modules differ"), "\($0)") }
    }

    func testInterruptStopsBetweenStepsAndSignalOnlySetsTheFlag() throws {
        let t = try Trainer(model: try model(), examples: data(), arguments: arguments(steps: 10))
        TrainingInterrupt.install()
        defer { TrainingInterrupt.uninstall() }
        XCTAssertFalse(TrainingInterrupt.requested)
        let finished = try t.train(stopWhen: { TrainingInterrupt.requested }) { log in
            if log.step == 3 { raise(SIGINT) }  // the handler sets the flag; the process lives on
        }
        XCTAssertFalse(finished)
        XCTAssertTrue(TrainingInterrupt.requested)
        XCTAssertEqual(t.globalStep, 3, "the step under way finishes, no further step starts")
        let checkpoint = try t.saveCheckpoint(to: directory)
        XCTAssertEqual(checkpoint.lastPathComponent, "checkpoint-3")
    }

    func testLossScalerStateRoundTrips() throws {
        var s = LossScaler(initialScale: 1024)
        for _ in 0..<3 { _ = s.update(gradientsFinite: true) }
        XCTAssertEqual(s.cleanSteps, 3)

        // fp16 runs only on CUDA; on the CPU a scaler is set by hand (power-of-two scaling is exact in f32).
        let t = try Trainer(model: try model(), examples: data(), arguments: arguments(steps: 3))
        var scaler = LossScaler(initialScale: 1024)
        scaler.growthInterval = 5
        t.lossScaler = scaler
        try t.train()
        let checkpoint = try t.saveCheckpoint(to: directory)
        let fresh = try Trainer(model: try model(), examples: data(), arguments: arguments(steps: 3))
        fresh.lossScaler = LossScaler()
        try fresh.resume(from: checkpoint)
        XCTAssertEqual(fresh.lossScaler, t.lossScaler, "scale, growth settings and clean-step count")
        XCTAssertEqual(fresh.lossScaler?.cleanSteps, 3)
        XCTAssertEqual(fresh.stepsTaken, 3)
        let noScaler = try Trainer(model: try model(), examples: data(), arguments: arguments(steps: 3))
        XCTAssertThrowsError(try noScaler.resume(from: checkpoint)) { XCTAssertTrue("\($0)".contains("loss scaling"), "\($0)") }
    }
}
