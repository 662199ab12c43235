import Foundation
import XCTest
import Swiftlet  // public API only, as a user would

/// The README's Swift example, run on the demo's files (model, tokenizer, chat data), so the
/// documented API cannot rot. Keep the marked block identical to README.md.
final class ReadmeExampleTests: XCTestCase {
    func testReadmeSwiftExample() throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("readme-\(UUID().uuidString)")
        try DemoTask.write(to: work)
        let cwd = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(work.path))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(cwd) }
        try FileManager.default.moveItem(atPath: "model", toPath: "my-model")
        var steps: [Int] = []

        // --- as in README.md (with 3 steps instead of 100, and the steps recorded) ---
        let (model, tokenizer) = try FastLanguageModel.fromPretrained("my-model", maxSeqLength: 2048)  // GPU if there is one
        try model.addLoRA(r: 16, targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                          alpha: 32, dropout: 0, seed: 3407)
        var arguments = TrainingArguments()
        arguments.maxSteps = 3
        arguments.learningRate = 2e-4
        let trainer = try SFTTrainer(model: model, tokenizer: tokenizer, dataset: "chat.jsonl", arguments: arguments,
                                     options: DatasetOptions(trainOnResponsesOnly: true))
        try trainer.train { print($0.step, $0.loss); steps.append($0.step) }
        try model.saveAdapter(to: "adapter")
        // ---

        XCTAssertEqual(steps, [1, 2, 3])
        XCTAssertTrue(FileManager.default.fileExists(atPath: work.appendingPathComponent("adapter/adapter_model.safetensors").path))
        // target_modules lists the seven linears the adapters are on (all of a Llama's).
        XCTAssertEqual(try PEFTAdapter.config(directory: work.appendingPathComponent("adapter")),
                       LoRAConfig(r: 16, alpha: 32, targets: [.q, .k, .v, .o, .gate, .up, .down]))
        // QLoRA: the same folder with 4-bit NF4 base weights
        XCTAssertTrue(try FastLanguageModel.fromPretrained("my-model", loadIn4bit: true).0.isQuantized4bit)
        XCTAssertFalse(try FastLanguageModel.fromPretrained("my-model").0.isQuantized4bit)
    }
}
