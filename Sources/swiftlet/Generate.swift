import ArgumentParser
import Foundation
import Swiftlet

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue a prompt with the model (and adapter), streaming the text as it is generated.")

    @OptionGroup var options: GenerationOptions
    @Option(help: "The prompt text; repeat it for a batch (generated together, printed in order).") var prompt: [String]
    @Flag(help: "Wrap the prompt as a user message in the tokenizer's chat template.") var chat = false

    func validate() throws {
        if prompt.isEmpty { throw ValidationError("give --prompt TEXT (repeat it for a batch)") }
    }

    func run() throws {
        let (_, tokenizer, generator) = try options.load()
        let template = chat ? try tokenizer.chatTemplate(folder: options.model) : nil
        let prompts = try prompt.map { text in
            try template.map { try tokenizer.encodeChatPrompt([.user(text)], template: $0) } ?? tokenizer.encode(text)
        }
        var streams = prompts.map { _ in TextStream(tokenizer: tokenizer, stopStrings: options.stop) }
        var outputs = prompts.map { _ in [Int32]() }
        // One prompt streams as it is generated; a batch prints each row when all are done.
        let result = try generator.generate(
            prompts: prompts, maxNewTokens: options.maxNewTokens, options: options.sampling,
            onToken: { row, token in
                outputs[row].append(token)
                if prompts.count == 1 { writeOut(streams[0].advance(outputs[0], final: false)) }
            },
            shouldStop: { row, tokens in streams[row].reachedStop(tokens) })
        if prompts.count == 1 {
            writeOut(streams[0].advance(outputs[0], final: true) + "\n")
        } else {
            for row in prompts.indices { writeOut("[\(row + 1)] " + streams[row].advance(outputs[row], final: true) + "\n") }
        }
        writeError(result.speedLine)
    }
}
