import ArgumentParser
import Foundation
import Swiftlet

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue a prompt with the model (and adapter), streaming the text as it is generated.")

    @OptionGroup var options: GenerationOptions
    @Option(help: "The prompt text.") var prompt: String
    @Flag(help: "Wrap the prompt as a user message in the tokenizer's chat template.") var chat = false

    func run() throws {
        let (_, tokenizer, generator) = try options.load()
        let ids = chat
            ? try tokenizer.encodeChatPrompt([.user(prompt)], template: try tokenizer.chatTemplate(folder: options.model))
            : tokenizer.encode(prompt)
        var stream = TextStream(tokenizer: tokenizer, stopStrings: options.stop)
        var output: [Int32] = []
        let result = try generator.generate(
            prompts: [ids], maxNewTokens: options.maxNewTokens, options: options.sampling,
            onToken: { _, token in output.append(token); writeOut(stream.advance(output, final: false)) },
            shouldStop: { _, tokens in stream.reachedStop(tokens) })
        writeOut(stream.advance(output, final: true) + "\n")
        writeError(result.speedLine)
    }
}
