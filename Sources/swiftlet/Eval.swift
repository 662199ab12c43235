import ArgumentParser
import Foundation
import Swiftlet

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mean loss over every target token of a data file, and its perplexity.")

    @Option(help: "Hugging Face model folder.") var model: String
    @Option(help: "PEFT adapter folder to apply.") var adapter: String?
    @Option(help: "Data file or folder (as train reads it).") var data: String
    @OptionGroup var dataOptions: DataOptions
    @Option(help: "Examples are truncated to this many tokens.") var maxSeqLength: Int?
    @Option(help: "Rows per batch.") var batchSize = 8
    @Flag(help: "Print one JSON line {\"loss\", \"perplexity\", \"tokens\"}.") var json = false
    @Option(help: "cpu, cuda or auto.") var device: Device = .auto
    @Option(help: "GPU storage: auto (bf16 where supported, else fp16), bf16 or fp16.") var precision: Precision = .auto

    func run() throws {
        let backend = try device.makeBackend(precision: precision) { if !json { print($0) } }
        let model = try LlamaModel.load(directory: URL(fileURLWithPath: self.model), on: backend)
        if let adapter { try PEFTAdapter.load(directory: URL(fileURLWithPath: adapter), into: model) }
        let examples = try dataOptions.examples(data, modelDirectory: self.model, vocabSize: model.config.vocabSize,
                                                maxSeqLength: maxSeqLength, packing: false) { if !json { print($0) } }
        let result = try Evaluation.run(model: model, examples: examples, batchSize: batchSize)
        if json {
            print("{\"loss\": \(result.loss), \"perplexity\": \(result.perplexity), \"tokens\": \(result.tokens)}")
        } else {
            print(String(format: "loss %.6f  perplexity %.4f  over %d tokens", result.loss, result.perplexity, result.tokens))
        }
    }
}
