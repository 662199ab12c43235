import Foundation
import XCTest
@testable import Swiftlet

/// DPO end to end: preference rows tokenized as TRL 1.16's DPOTrainer does
/// (scripts/make_dpo_dataset_fixtures.py), bad rows named, checkpoints resumed bit-identically on the
/// CPU, and the demo model learning a preference.
final class DPOTrainerTests: XCTestCase {
    struct Expected: Decodable {
        struct Pair: Decodable { var prompt_ids: [Int32]; var chosen_ids: [Int32]; var rejected_ids: [Int32] }
        struct Case: Decodable { var name: String; var tokenizer: String; var data: String; var template: String?; var max_length: Int?; var expected: [Pair] }
        var trl: String; var cases: [Case]
    }

    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("swiftlet-dpo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: directory) }

    static func fixtures() throws -> URL { try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)) }

    func testTokenizationMatchesTRL() throws {
        let root = try Self.fixtures()
        let fixture = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: root.appendingPathComponent("dpo/tokenized.json")))
        XCTAssertEqual(fixture.trl, "1.16.0")
        XCTAssertEqual(fixture.cases.count, 8)
        for c in fixture.cases {
            let tokenizer = try Tokenizer(directory: root.appendingPathComponent("tokenizers/\(c.tokenizer)"))
            let template = try c.template.map {
                try ChatTemplate(source: String(contentsOf: root.appendingPathComponent("datasets/\($0)"), encoding: .utf8))
            }
            let result = try PreferenceDataset.load(url: root.appendingPathComponent("dpo/\(c.data)"), tokenizer: tokenizer,
                                                    template: template, maxLength: c.max_length)
            XCTAssertEqual(result.pairs.count, c.expected.count, c.name)
            let rows = try DatasetReader.read(root.appendingPathComponent("dpo/\(c.data)")).count
            XCTAssertEqual(result.droppedLongPrompts, rows - c.expected.count, "\(c.name): TRL drops pairs whose prompt fills max_length")
            for (i, (got, want)) in zip(result.pairs, c.expected).enumerated() {
                XCTAssertEqual(got.promptIds, want.prompt_ids, "\(c.name) pair \(i) prompt_ids")
                XCTAssertEqual(got.chosenIds, want.chosen_ids, "\(c.name) pair \(i) chosen_ids")
                XCTAssertEqual(got.rejectedIds, want.rejected_ids, "\(c.name) pair \(i) rejected_ids")
            }
        }
    }

    func testBadRowsNameFileLineAndField() throws {
        let tokenizer = try Tokenizer(directory: Self.fixtures().appendingPathComponent("tokenizers/byte_bpe"))
        let good = #"{"prompt": "a", "chosen": "b", "rejected": "c"}"#
        let cases: [(String, String)] = [
            (#"{"prompt": "a", "chosen": "b"}"#, "field 'rejected' is missing"),
            (#"{"prompt": "a", "chosen": 3, "rejected": "c"}"#, "field 'chosen' must be a string or a list of messages"),
            (#"{"prompt": "a", "chosen": "b", "rejected": [{"role": "assistant", "content": "c"}]}"#, "field 'rejected' must be a string"),
            (#"{"prompt": [{"role": "user", "content": "a"}], "chosen": [{"role": "assistant", "content": "b"}], "rejected": [{"role": "bot", "content": "c"}]}"#,
             "field 'rejected[0].role' is an unknown role 'bot'"),
        ]
        for (i, (bad, message)) in cases.enumerated() {
            let url = directory.appendingPathComponent("bad\(i).jsonl")
            try (good + "\n" + bad + "\n").write(to: url, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try PreferenceDataset.load(url: url, tokenizer: tokenizer)) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains("bad\(i).jsonl:2"), text)
                XCTAssertTrue(text.contains(message), text)
            }
        }
    }

    // MARK: - Training

    // The small model, pairs and arguments both preference trainers' tests train with.
    static let config = PreferenceTrainingCase.config
    func model(loraSeed: UInt64 = 11) throws -> LlamaModel { try PreferenceTrainingCase.model(loraSeed: loraSeed) }
    func pairs(_ count: Int = 7) -> [PreferencePair] { PreferenceTrainingCase.pairs(count) }
    func arguments(steps: Int) -> TrainingArguments { PreferenceTrainingCase.arguments(steps: steps) }
    func weights(_ m: LlamaModel) -> [[Float]] { PreferenceTrainingCase.weights(m) }

    func testResumeIsBitIdenticalToTrainingStraight() throws {
        let loss = DPOLoss(kind: .sigmoid, beta: 0.1)
        let straight = try model()
        let t1 = try Trainer(model: straight, objective: DPOObjective(pairs: pairs(), loss: loss, maxLength: 9), arguments: arguments(steps: 6))
        t1.checkpointDirectory = directory
        try t1.train()
        let expected = weights(straight)
        XCTAssertNotNil(t1.logHistory.last?.metrics?["rewards/accuracies"])

        // 3 steps, a new process (other LoRA init) resumes checkpoint-3 and runs 3 more.
        let checkpoint = directory.appendingPathComponent("checkpoint-3")
        let resumed = try model(loraSeed: 99)
        let t2 = try Trainer(model: resumed, objective: DPOObjective(pairs: pairs(), loss: loss, maxLength: 9), arguments: arguments(steps: 6))
        try t2.resume(from: checkpoint)
        XCTAssertEqual(t2.globalStep, 3)
        try t2.train()
        XCTAssertEqual(weights(resumed), expected, "3 + resume + 3 is bit-identical to 6 straight")
        func timeless(_ h: [Trainer.StepLog]) -> [Trainer.StepLog] { h.map { var l = $0; l.seconds = 0; return l } }
        XCTAssertEqual(timeless(t2.logHistory), timeless(t1.logHistory), "the same losses and metrics, restored and continued")

        // Another beta is another objective: resuming is an error that names it.
        let t3 = try Trainer(model: try model(), objective: DPOObjective(pairs: pairs(), loss: DPOLoss(beta: 0.5), maxLength: 9),
                             arguments: arguments(steps: 6))
        XCTAssertThrowsError(try t3.resume(from: checkpoint)) { XCTAssertTrue("\($0)".contains("beta=0.1"), "\($0)") }
    }

    /// `precompute_ref_log_probs`: the reference scored once before training gives the adapters of
    /// in-step reference forwards (bit for bit: the same batches), and the steps really use the
    /// stored values (a reference from another base model changes the result).
    func testPrecomputedReferenceTrainsAsInStep() throws {
        let loss = DPOLoss(kind: .sigmoid, beta: 0.1)
        var a = arguments(steps: 3)
        a.shuffle = false
        a.saveSteps = 0
        func train(precomputeFrom reference: LlamaModel?) throws -> [[Float]] {
            let m = try model()
            let objective = DPOObjective(pairs: pairs(), loss: loss, maxLength: 9)
            if let reference { try objective.precomputeReference(model: reference, batchSize: a.batchSize) }
            if reference != nil { XCTAssertEqual(objective.referenceLogProbs?.count, pairs().count) }
            try Trainer(model: m, objective: objective, arguments: a).train()
            return weights(m)
        }
        let inStep = try train(precomputeFrom: nil)
        XCTAssertEqual(try train(precomputeFrom: try model()), inStep)
        let otherBase = try LlamaModel.random(config: Self.config, seed: 4, on: CPUBackend())
        try otherBase.addLoRA(LoRAConfig(r: 4, alpha: 8), seed: 11)
        XCTAssertNotEqual(try train(precomputeFrom: otherBase), inStep)
    }

    /// The demo model and tokenizer with pairs from the demo task (chosen: the right count; rejected:
    /// counting by one more): the loss falls and rewards/accuracies rises, and metrics.jsonl has TRL's names.
    func testDemoLearnsThePreference() throws {
        try DemoTask.write(to: directory)
        let data = directory.appendingPathComponent("pairs.jsonl")
        try PreferenceTrainingCase.writeDemoPairs(to: data)
        let modelDirectory = directory.appendingPathComponent("model")
        let model = try LlamaModel.load(directory: modelDirectory, on: CPUBackend())
        try model.addLoRA(DemoTask.lora, seed: 42)
        var arguments = TrainingArguments()
        arguments.batchSize = 4
        arguments.maxSteps = 24
        arguments.learningRate = 3e-3
        arguments.maxSeqLength = 96
        let dpo = try DPOTrainer(model: model, tokenizer: try Tokenizer(directory: modelDirectory), dataset: data.path,
                                 evalDataset: data.path, arguments: arguments, beta: 0.1, lossType: .sigmoid)
        XCTAssertEqual(dpo.objective.pairs.count, 16)
        let metrics = try MetricsLog(url: directory.appendingPathComponent("metrics.jsonl"))
        let eval = try XCTUnwrap(try dpo.train { try metrics.log($0) })
        let history = dpo.trainer.logHistory
        func mean(_ steps: ArraySlice<Trainer.StepLog>, _ key: String?) -> Double {
            steps.map { s in key.map { s.metrics![$0]! } ?? s.loss }.reduce(0, +) / Double(steps.count)
        }
        XCTAssertEqual(history.first!.loss, log(2), accuracy: 1e-9, "the policy starts as the reference")
        XCTAssertLessThan(mean(history.suffix(4), nil), mean(history.prefix(4), nil) * 0.7)
        XCTAssertGreaterThan(mean(history.suffix(4), "rewards/accuracies"), mean(history.prefix(4), "rewards/accuracies"))
        XCTAssertLessThan(eval.loss, log(2))
        XCTAssertGreaterThan(eval.metrics["rewards/accuracies"]!, 0.5)
        let logged = try MetricsLog.read(url: metrics.url)
        XCTAssertEqual(logged.count, 24)
        for key in ["loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"] {
            XCTAssertNotNil(logged.last?[key], key)
        }
    }
}
