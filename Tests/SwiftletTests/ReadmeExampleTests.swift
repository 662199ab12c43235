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
        FileManager.default.changeCurrentDirectoryPath(work.path)
        defer { FileManager.default.changeCurrentDirectoryPath(cwd) }
        try FileManager.default.moveItem(atPath: "model", toPath: "my-model")
        var steps: [Int] = []

        // --- as in README.md (with 3 steps instead of 100, and the steps recorded) ---
        let backend = try Device.auto.makeBackend()      // the GPU when there is one, else the CPU
        let model = try LlamaModel.load(directory: URL(fileURLWithPath: "my-model"), on: backend)
        try model.addLoRA(LoRAConfig(r: 16, alpha: 32), seed: 42)
        var arguments = TrainingArguments()
        arguments.maxSteps = 3
        let tokenizer = try Tokenizer(directory: URL(fileURLWithPath: "my-model"))
        let examples = try TextDataset.load(url: URL(fileURLWithPath: "chat.jsonl"), tokenizer: tokenizer,
                                            options: DatasetOptions(trainOnResponsesOnly: true, maxSeqLength: 2048)).examples
        try Trainer(model: model, examples: examples, arguments: arguments).train { print($0.step, $0.loss); steps.append($0.step) }
        try PEFTAdapter.save(model, config: LoRAConfig(r: 16, alpha: 32), to: URL(fileURLWithPath: "adapter"))
        // ---

        XCTAssertEqual(steps, [1, 2, 3])
        XCTAssertEqual(examples.count, 512)
        XCTAssertTrue(FileManager.default.fileExists(atPath: work.appendingPathComponent("adapter/adapter_model.safetensors").path))
        XCTAssertEqual(try PEFTAdapter.config(directory: work.appendingPathComponent("adapter")), LoRAConfig(r: 16, alpha: 32))
    }
}
