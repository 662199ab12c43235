import Foundation
import XCTest
import Swiftlet  // public API only, as a user would

/// The README's Swift example, run on a fixture model, so the documented API cannot rot.
final class ReadmeExampleTests: XCTestCase {
    func testReadmeSwiftExample() throws {
        let fixture = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
            .appendingPathComponent("llama_gqa")
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("readme-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let rows = (0..<8).map { i in "{\"input_ids\": [\((0..<10).map { String(($0 * 7 + i) % 128) }.joined(separator: ", "))]}" }
        try rows.joined(separator: "\n").write(to: work.appendingPathComponent("train.jsonl"), atomically: true, encoding: .utf8)

        // --- as in README.md ---
        let backend = CPUBackend()
        let model = try LlamaModel.load(directory: fixture, on: backend)
        try model.addLoRA(LoRAConfig(r: 16, alpha: 32), seed: 42)
        var arguments = TrainingArguments()
        arguments.maxSteps = 3
        let examples = try TokenizedDataset.load(work.appendingPathComponent("train.jsonl"))
        var steps: [Int] = []
        try Trainer(model: model, examples: examples, arguments: arguments).train { steps.append($0.step) }
        try PEFTAdapter.save(model, config: LoRAConfig(r: 16, alpha: 32), to: work.appendingPathComponent("adapter"))
        // ---

        XCTAssertEqual(steps, [1, 2, 3])
        XCTAssertTrue(FileManager.default.fileExists(atPath: work.appendingPathComponent("adapter/adapter_model.safetensors").path))
        XCTAssertEqual(try PEFTAdapter.config(directory: work.appendingPathComponent("adapter")), LoRAConfig(r: 16, alpha: 32))
    }
}
