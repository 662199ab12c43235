import ArgumentParser
import Foundation
import Swiftlet

/// Each conversation of a data file rendered with a chat template, exactly as training will feed
/// it to the model: how users check their template before spending GPU hours.
struct Template: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print each conversation of a data file rendered with a chat template.")

    @Option(help: "Folder with tokenizer_config.json (its chat_template, bos and eos tokens).") var tokenizer: String?
    @Option(help: "A built-in template (\(ChatTemplate.builtInNames.joined(separator: ", "))) or a .jinja file, instead of the tokenizer's.")
    var template: String?
    @Flag(help: "End with the assistant's header, as for generation.") var addGenerationPrompt = false
    @Option(help: "JSONL, JSON or CSV rows of {\"messages\": [...]} or {\"conversations\": [...]}.") var file: String

    func validate() throws {
        if tokenizer == nil && template == nil { throw ValidationError("give --tokenizer DIR or --template NAME") }
    }

    func run() throws {
        let tokenizer = try self.tokenizer.map { try Swiftlet.Tokenizer(directory: URL(fileURLWithPath: $0)) }
        let chatTemplate: ChatTemplate
        if let template {
            chatTemplate = template.hasSuffix(".jinja")
                ? try ChatTemplate(source: String(contentsOf: URL(fileURLWithPath: template), encoding: .utf8))
                : try ChatTemplate.named(template)
        } else if let source = tokenizer?.config.chatTemplate {
            chatTemplate = try ChatTemplate(source: source)
        } else {
            throw ValidationError("\(self.tokenizer!)/tokenizer_config.json has no chat_template; give --template NAME")
        }
        for (index, row) in try DatasetReader.read(URL(fileURLWithPath: file)).enumerated() {
            guard case let .conversation(messages) = try DatasetFormat.conversations.format(row) else { continue }
            let text = try chatTemplate.render(messages: messages, addGenerationPrompt: addGenerationPrompt,
                                               bosToken: tokenizer?.config.bosToken, eosToken: tokenizer?.config.eosToken)
            if index > 0 { print("\n----- \(row.file):\(row.line ?? index + 1)") } else { print("----- \(row.file):\(row.line ?? 1)") }
            print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
        }
    }
}
