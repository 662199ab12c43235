import ArgumentParser
import Foundation
import Swiftlet

/// A conversation on the terminal (or through a pipe: one user message per line, one reply per
/// line on stdout, so scripts and tests can drive it).
struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Talk with the model turn by turn: chat template, history kept, the KV cache reused across turns.",
        discussion: "One message per line. /reset forgets the conversation, /exit (or end of input) leaves.")

    @OptionGroup var options: GenerationOptions
    @Option(help: "A system message opening the conversation.") var system: String?
    @Option(help: "Most tokens the conversation may hold (default: max_position_embeddings, at most 4096).")
    var maxContext: Int?

    func run() throws {
        let (model, tokenizer, generator) = try options.load()
        let capacity = maxContext ?? min(model.config.maxPositionEmbeddings, 4096)
        let session = try ChatSession(generator: generator, tokenizer: tokenizer,
                                      template: try tokenizer.chatTemplate(folder: options.model),
                                      system: system, capacity: capacity)
        let interactive = isatty(STDIN_FILENO) != 0
        if interactive { writeError("chat with \(options.model) (/reset starts over, /exit leaves)") }
        while true {
            if interactive { writeOut(">>> ") }
            guard let line = readLine() else { break }
            let text = line.trimmingCharacters(in: .whitespaces)
            switch text {
            case "": continue
            case "/exit", "/quit": return
            case "/reset":
                session.reset()
                writeError("(conversation forgotten)")
                continue
            case _ where text.hasPrefix("/"):
                writeError("unknown command \(text): /reset forgets the conversation, /exit leaves")
                continue
            default: break
            }
            do {
                let turn = try session.send(text, maxNewTokens: options.maxNewTokens, options: options.sampling,
                                            stop: options.stop, onText: writeOut)
                writeOut("\n")
                writeError("\(turn.reusedTokens) of \(turn.promptTokens.count) prompt tokens from the cache; "
                           + turn.result.speedLine)
            } catch GenerationError.cacheFull {
                writeError("the conversation no longer fits the \(capacity)-token context (--max-context): /reset starts over")
            }
        }
    }
}
