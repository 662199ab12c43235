import Foundation
@testable import Swiftlet

/// The small model, preference pairs and training arguments that the DPO and ORPO trainer tests
/// train with (resume, checkpoints, learning).
enum PreferenceTrainingCase {
    static let config = LlamaConfig(vocabSize: 64, hiddenSize: 32, intermediateSize: 48, layers: 2, heads: 4, kvHeads: 2,
                                    rmsNormEps: 1e-5, maxPositionEmbeddings: 64)

    static func model(loraSeed: UInt64 = 11) throws -> LlamaModel {
        let m = try LlamaModel.random(config: config, seed: 3, on: CPUBackend())
        try m.addLoRA(LoRAConfig(r: 4, alpha: 8, dropout: 0.1), seed: loraSeed)
        return m
    }

    static func pairs(_ count: Int = 7) -> [PreferencePair] {
        var g = SplitMix64(seed: 5)
        let r = { (n: Int) in (0..<n).map { _ in Int32(1 + g.next() % 63) } }
        return (0..<count).map { i in PreferencePair(promptIds: r(3 + i % 3), chosenIds: r(2 + i % 4), rejectedIds: r(3 + i % 2)) }
    }

    static func arguments(steps: Int) -> TrainingArguments {
        var a = TrainingArguments()
        a.batchSize = 2
        a.gradientAccumulation = 2
        a.maxSteps = steps
        a.learningRate = 1e-2
        a.scheduler = .cosine
        a.warmupSteps = 2
        a.saveSteps = 3
        return a
    }

    static func weights(_ m: LlamaModel) -> [[Float]] { m.adapters.flatMap { [m.backend.download($0.a), m.backend.download($0.b)] } }

    /// Conversational pairs of the demo task as JSONL at `url`: chosen the right count, rejected
    /// counting by one more (for the demo model's tokenizer and template; `DemoTask.write`).
    static func writeDemoPairs(to url: URL, count: Int = 16, seed: UInt64 = 3) throws {
        var rows = ""
        for (instruction, answer) in DemoTask.pairs(count: count, seed: seed) {
            let numbers = answer.split(separator: " ").compactMap { Int($0) }
            let wrong = (0..<8).map { String(numbers[0] + $0 * (numbers[1] - numbers[0] + 1)) }.joined(separator: " ")
            let row: [String: Any] = ["prompt": [["role": "user", "content": instruction]],
                                      "chosen": [["role": "assistant", "content": answer]],
                                      "rejected": [["role": "assistant", "content": wrong]]]
            rows += String(decoding: try JSONSerialization.data(withJSONObject: row, options: [.sortedKeys]), as: UTF8.self) + "\n"
        }
        try rows.write(to: url, atomically: true, encoding: .utf8)
    }
}
