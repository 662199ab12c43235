import Foundation
import XCTest
@testable import Swiftlet

/// ORPO end to end: preference rows tokenized as TRL 1.16's ORPOTrainer does
/// (scripts/make_orpo_fixtures.py), resume bit-identical on the CPU, and the demo model learning a preference.
final class ORPOTrainerTests: XCTestCase {
    struct Expected: Decodable {
        struct Row: Decodable {
            var chosen_input_ids: [Int32]; var chosen_labels: [Int32]; var rejected_input_ids: [Int32]; var rejected_labels: [Int32]
        }
        struct Case: Decodable { var name: String; var tokenizer: String; var data: String; var template: String?; var max_length: Int; var expected: [Row] }
        var trl: String; var cases: [Case]
    }

    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("swiftlet-orpo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: directory) }

    func testTokenizationMatchesTRL() throws {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let fixture = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: root.appendingPathComponent("orpo/tokenized.json")))
        XCTAssertEqual(fixture.trl, "1.16.0")
        XCTAssertEqual(fixture.cases.count, 8)
        for c in fixture.cases {
            let tokenizer = try Tokenizer(directory: root.appendingPathComponent("tokenizers/\(c.tokenizer)"))
            let template = try c.template.map {
                try ChatTemplate(source: String(contentsOf: root.appendingPathComponent("datasets/\($0)"), encoding: .utf8))
            }
            let result = try PreferenceDataset.load(url: root.appendingPathComponent("dpo/\(c.data)"), tokenizer: tokenizer,
                                                    template: template, maxLength: c.max_length, tokenization: .orpo)
            // TRL keeps pairs whose prompt fills max_length (no completion label left, a NaN loss); we drop them.
            let kept = c.expected.filter { row in
                row.chosen_labels.contains { $0 != -100 } && row.rejected_labels.contains { $0 != -100 }
            }
            XCTAssertEqual(result.pairs.count, kept.count, c.name)
            XCTAssertEqual(result.droppedLongPrompts, c.expected.count - kept.count, c.name)
            for (i, (got, want)) in zip(result.pairs, kept).enumerated() {
                let rejectedPrompt = got.rejectedPromptIds ?? got.promptIds
                XCTAssertEqual(got.promptIds + got.chosenIds, want.chosen_input_ids, "\(c.name) pair \(i) chosen_input_ids")
                XCTAssertEqual(rejectedPrompt + got.rejectedIds, want.rejected_input_ids, "\(c.name) pair \(i) rejected_input_ids")
                XCTAssertEqual([Int32](repeating: -100, count: got.promptIds.count) + got.chosenIds, want.chosen_labels,
                               "\(c.name) pair \(i) chosen_labels")
                XCTAssertEqual([Int32](repeating: -100, count: rejectedPrompt.count) + got.rejectedIds, want.rejected_labels,
                               "\(c.name) pair \(i) rejected_labels")
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
        let loss = ORPOLoss(beta: 0.1)
        let straight = try model()
        let t1 = try Trainer(model: straight, objective: ORPOObjective(pairs: pairs(), loss: loss), arguments: arguments(steps: 6))
        t1.checkpointDirectory = directory
        try t1.train()
        let expected = weights(straight)
        XCTAssertNotNil(t1.logHistory.last?.metrics?["log_odds_ratio"])

        let checkpoint = directory.appendingPathComponent("checkpoint-3")
        let resumed = try model(loraSeed: 99)
        let t2 = try Trainer(model: resumed, objective: ORPOObjective(pairs: pairs(), loss: loss), arguments: arguments(steps: 6))
        try t2.resume(from: checkpoint)
        XCTAssertEqual(t2.globalStep, 3)
        try t2.train()
        XCTAssertEqual(weights(resumed), expected, "3 + resume + 3 is bit-identical to 6 straight")

        // A DPO checkpoint is not an ORPO one, nor is another beta.
        let t3 = try Trainer(model: try model(), objective: ORPOObjective(pairs: pairs(), loss: ORPOLoss(beta: 0.5)),
                             arguments: arguments(steps: 6))
        XCTAssertThrowsError(try t3.resume(from: checkpoint)) { XCTAssertTrue("\($0)".contains("orpo beta=0.1"), "\($0)") }
        XCTAssertThrowsError(try ORPOObjective(pairs: [PreferencePair(promptIds: [1], chosenIds: [], rejectedIds: [2])], loss: loss))
    }

    /// The demo model and tokenizer with pairs from the demo task (chosen: the right count; rejected:
    /// counting by one more): the loss falls, the log odds of the chosen answers rise, and metrics.jsonl has TRL's names.
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
        let orpo = try ORPOTrainer(model: model, tokenizer: try Tokenizer(directory: modelDirectory), dataset: data.path,
                                   evalDataset: data.path, arguments: arguments, beta: 0.5)
        XCTAssertEqual(orpo.objective.pairs.count, 16)
        let metrics = try MetricsLog(url: directory.appendingPathComponent("metrics.jsonl"))
        let eval = try XCTUnwrap(try orpo.train { try metrics.log($0) })
        let history = orpo.trainer.logHistory
        func mean(_ steps: ArraySlice<Trainer.StepLog>, _ key: String?) -> Double {
            steps.map { s in key.map { s.metrics![$0]! } ?? s.loss }.reduce(0, +) / Double(steps.count)
        }
        XCTAssertLessThan(mean(history.suffix(4), nil), mean(history.prefix(4), nil) * 0.7)
        XCTAssertGreaterThan(mean(history.suffix(4), "log_odds_chosen"), mean(history.prefix(4), "log_odds_chosen"))
        XCTAssertGreaterThan(eval.metrics["rewards/accuracies"]!, 0.5)
        let logged = try MetricsLog.read(url: metrics.url)
        XCTAssertEqual(logged.count, 24)
        for key in ["loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
                    "logps/rejected", "nll_loss", "log_odds_ratio", "log_odds_chosen"] {
            XCTAssertNotNil(logged.last?[key], key)
        }
    }
}
