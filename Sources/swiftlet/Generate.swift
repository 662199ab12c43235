import ArgumentParser
import Foundation
import Swiftlet

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue a prompt with the model (and adapter), streaming the text as it is generated.")

    @Option(help: "Hugging Face model folder (with its tokenizer).") var model: String
    @Option(help: "PEFT adapter folder to apply (unmerged, as in training).") var adapter: String?
    @Option(help: "The prompt text.") var prompt: String
    @Flag(help: "Wrap the prompt as a user message in the tokenizer's chat template.") var chat = false
    @Option(help: "Most tokens to generate.") var maxNewTokens = 256
    @Option(help: "0 is greedy.") var temperature: Float = 0
    @Option(help: "Keep the k most likely tokens (0: off).") var topK = 0
    @Option(help: "Nucleus sampling threshold (1: off).") var topP: Float = 1
    @Option(help: "Drop tokens below min-p × the top probability (0: off).") var minP: Float = 0
    @Option(help: "transformers' repetition_penalty (1: off).") var repetitionPenalty: Float = 1
    @Option(help: "Seed of the sampling RNG.") var seed: UInt64 = 0
    @Option(help: "Stop when the output contains this text (repeatable).") var stop: [String] = []
    @Option(help: "cpu, cuda or auto.") var device: Device = .auto
    @Option(help: "GPU storage: auto (bf16 where supported, else fp16), bf16 or fp16.") var precision: Precision = .auto

    func run() throws {
        let backend = try device.makeBackend(precision: precision) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        let directory = URL(fileURLWithPath: self.model)
        let model = try LlamaModel.load(directory: directory, on: backend)
        if let adapter { try PEFTAdapter.load(directory: URL(fileURLWithPath: adapter), into: model) }
        let tokenizer = try Swiftlet.Tokenizer(directory: directory)
        let ids: [Int32]
        if chat {
            guard let source = tokenizer.config.chatTemplate else {
                throw ValidationError("the tokenizer of \(self.model) has no chat template")
            }
            let text = try ChatTemplate(source: source).render(messages: [.user(prompt)], addGenerationPrompt: true,
                                                               bosToken: tokenizer.config.bosToken,
                                                               eosToken: tokenizer.config.eosToken)
            ids = tokenizer.encode(text, addSpecialTokens: false)  // the template writes the specials
        } else {
            ids = tokenizer.encode(prompt)
        }
        var eos = Generator.eosTokenIds(modelDirectory: directory)
        if eos.isEmpty, let id = tokenizer.eosTokenId { eos = [id] }
        let options = SamplingOptions(temperature: temperature, topK: topK, topP: topP, minP: minP,
                                      repetitionPenalty: repetitionPenalty, seed: seed)

        // Streams the decoded text: the whole output is decoded again each token, and only what
        // extends the printed text is written (a partial UTF-8 or merged token may change the tail).
        var printed = ""
        func emit(_ tokens: [Int32], final: Bool) {
            var text = tokenizer.decode(tokens, skipSpecialTokens: true)
            if let cut = stop.compactMap({ text.range(of: $0)?.lowerBound }).min() { text = String(text[..<cut]) }
            if !final, text.hasSuffix("\u{FFFD}") { return }
            guard text.hasPrefix(printed) else { return }
            FileHandle.standardOutput.write(Data(text.dropFirst(printed.count).utf8))
            printed = text
        }
        var output: [Int32] = []
        let result = try Generator(model: model, eosTokenIds: eos).generate(
            prompts: [ids], maxNewTokens: maxNewTokens, options: options,
            onToken: { _, token in output.append(token); emit(output, final: false) },
            shouldStop: { _, tokens in
                let text = tokenizer.decode(tokens, skipSpecialTokens: true)
                return stop.contains { text.contains($0) }
            })
        emit(output, final: true)
        print("")
        let prefill = Double(result.prefillTokens) / max(result.prefillSeconds, 1e-9)
        let decode = Double(result.decodeTokens) / max(result.decodeSeconds, 1e-9)
        FileHandle.standardError.write(Data(String(format: "prefill %d tokens, %.1f tokens/s; decode %d tokens, %.1f tokens/s\n",
                                                   result.prefillTokens, prefill, result.decodeTokens, decode).utf8))
    }
}
