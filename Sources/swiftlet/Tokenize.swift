import ArgumentParser
import Foundation
import Swiftlet

/// Text to token ids and back, exactly as the model's tokenizer.json does it: how users debug
/// what their data turns into.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode text to token ids (or decode ids) with a model's tokenizer.json.")

    @Option(help: "Folder holding tokenizer.json (and tokenizer_config.json).") var tokenizer: String
    @Option(help: "Read inputs from this file, one per line.") var file: String?
    @Flag(help: "One JSON array of ids per input line (with --decode: one JSON string per line).") var json = false
    @Flag(help: "Leave out the special tokens the post-processor adds (BOS, ...).") var noSpecial = false
    @Flag(help: "Inputs are ids (a JSON array or space-separated numbers); print the text.") var decode = false
    @Flag(help: "With --decode, drop special tokens from the text.") var skipSpecial = false
    @Argument(help: "The text (or ids) to process, when no --file is given.") var text: String?

    func validate() throws {
        if (file == nil) == (text == nil) { throw ValidationError("give either --file F or a TEXT argument") }
    }

    func run() throws {
        let tokenizer = try Swiftlet.Tokenizer(directory: URL(fileURLWithPath: self.tokenizer))
        let inputs: [String]
        if let file {
            let contents = try String(contentsOf: URL(fileURLWithPath: file), encoding: .utf8)
            inputs = contents.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                .dropLast(contents.hasSuffix("\n") ? 1 : 0)
        } else {
            inputs = [text!]
        }
        for (index, input) in inputs.enumerated() {
            if decode {
                let ids = try Self.parseIds(input, place: file.map { "\($0):\(index + 1)" } ?? "argument")
                let decoded = tokenizer.decode(ids, skipSpecialTokens: skipSpecial)
                if json {
                    let data = try JSONSerialization.data(withJSONObject: [decoded], options: [.withoutEscapingSlashes])
                    print(String(decoding: data.dropFirst().dropLast(), as: UTF8.self))
                } else {
                    print(decoded)
                }
                continue
            }
            let ids = tokenizer.encode(input, addSpecialTokens: !noSpecial)
            if json {
                print("[" + ids.map(String.init).joined(separator: ", ") + "]")
            } else {
                print(ids.map { id in "\(id)\t\(tokenizer.idToToken(id).map(Self.visible) ?? "?")" }.joined(separator: "\n"))
                if inputs.count > 1 { print("") }
            }
        }
    }

    /// Ids from "[1, 2, 3]" or "1 2 3".
    static func parseIds(_ line: String, place: String) throws -> [Int32] {
        let cleaned = line.trimmingCharacters(in: CharacterSet(charactersIn: "[] \t"))
        guard !cleaned.isEmpty else { return [] }
        return try cleaned.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }).map { piece in
            guard let id = Int32(piece.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("\(place): '\(piece)' is not a token id")
            }
            return id
        }
    }

    /// Tokens with their whitespace made visible.
    static func visible(_ token: String) -> String {
        token.replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\t", with: "\\t")
    }
}
