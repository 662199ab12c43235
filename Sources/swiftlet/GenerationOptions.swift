import ArgumentParser
import Foundation
import Swiftlet

/// The flags `generate` and `chat` share: the model, the adapter, how tokens are chosen and when
/// generation stops, and where it runs.
struct GenerationOptions: ParsableArguments {
    @Option(help: "Hugging Face model folder (with its tokenizer).") var model: String
    @Option(help: "PEFT adapter folder to apply (unmerged, as in training).") var adapter: String?
    @Flag(help: "Merge the adapter into the base weights on load (PEFT's merge_and_unload): faster decode, and an NF4 base becomes 16-bit.")
    var mergeAdapter = false
    @Flag(name: .customLong("load-in-4bit"), help: "4-bit NF4 base weights (double quantization), quantized while loading, as for QLoRA training.")
    var loadIn4bit = false
    @Option(help: "Most tokens to generate (per reply).") var maxNewTokens = 256
    @Option(help: "0 is greedy.") var temperature: Float = 0
    @Option(help: "Keep the k most likely tokens (0: off).") var topK = 0
    @Option(help: "Nucleus sampling threshold (1: off).") var topP: Float = 1
    @Option(help: "Drop tokens below min-p × the top probability (0: off).") var minP: Float = 0
    @Option(help: "transformers' repetition_penalty (1: off).") var repetitionPenalty: Float = 1
    @Option(help: "Seed of the sampling RNG.") var seed: UInt64 = 0
    @Option(help: "Stop when the output contains this text (repeatable).") var stop: [String] = []
    @Option(help: "cpu, cuda or auto.") var device: Device = .auto
    @Option(help: "GPU storage: auto (bf16 where supported, else fp16), bf16 or fp16.") var precision: Precision = .auto

    var sampling: SamplingOptions {
        SamplingOptions(temperature: temperature, topK: topK, topP: topP, minP: minP,
                        repetitionPenalty: repetitionPenalty, seed: seed)
    }

    var modelDirectory: URL { URL(fileURLWithPath: model) }

    /// The model (with the adapter), its tokenizer, and a generator that stops on the model's EOS ids
    /// (generation_config.json, else config.json, else the tokenizer's EOS token).
    func load() throws -> (model: LlamaModel, tokenizer: Swiftlet.Tokenizer, generator: Generator) {
        try sampling.validate()
        if mergeAdapter && adapter == nil { throw ValidationError("--merge-adapter needs --adapter") }
        let backend = try device.makeBackend(precision: precision) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        let model = try LlamaModel.load(directory: modelDirectory, on: backend, loadIn4bit: loadIn4bit)
        if let adapter { try PEFTAdapter.load(directory: URL(fileURLWithPath: adapter), into: model) }
        if mergeAdapter { try model.mergeAdapters() }
        let tokenizer = try Swiftlet.Tokenizer(directory: modelDirectory)
        var eos = Generator.eosTokenIds(modelDirectory: modelDirectory)
        if eos.isEmpty, let id = tokenizer.eosTokenId { eos = [id] }
        return (model, tokenizer, Generator(model: model, eosTokenIds: eos))
    }
}

extension Generator.Result {
    /// "prefill N tokens, X tokens/s; decode M tokens, Y tokens/s", the speeds of this generation.
    var speedLine: String {
        let prefill = Double(prefillTokens) / max(prefillSeconds, 1e-9)
        let decode = Double(decodeTokens) / max(decodeSeconds, 1e-9)
        return String(format: "prefill %d tokens, %.1f tokens/s; decode %d tokens, %.1f tokens/s",
                      prefillTokens, prefill, decodeTokens, decode)
    }
}

/// Writes to stdout at once (replies stream token by token; stdout is line-buffered).
func writeOut(_ text: String) {
    guard !text.isEmpty else { return }
    FileHandle.standardOutput.write(Data(text.utf8))
}

func writeError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
