import ArgumentParser
import Foundation
import Swiftlet

/// How `train` and `eval` read a data file: text (with the model's tokenizer and chat template) or
/// pre-tokenized rows.
struct DataOptions: ParsableArguments {
    @Option(help: "Data format: auto, text, alpaca, conversations or tokenized.") var format = "auto"
    @Option(help: "The field of text rows.") var textField = "text"
    @Option(help: "Folder with tokenizer.json (default: the model folder).") var tokenizer: String?
    @Option(help: "Chat template: a built-in name (\(ChatTemplate.builtInNames.joined(separator: ", "))) or a .jinja file; default: the tokenizer's own.")
    var chatTemplate: String?
    @Flag(help: "Train only on assistant turns / Alpaca responses (labels -100 elsewhere), as TRL's assistant_only_loss.")
    var trainOnResponsesOnly = false
    @Flag(help: "Count and skip malformed rows instead of stopping at the first.") var skipBadRows = false

    func datasetFormat() throws -> DatasetFormat? {
        if format == "auto" { return nil }
        guard let f = DatasetFormat(rawValue: format) else {
            throw ValidationError("--format \(format): choose auto, " + DatasetFormat.allCases.map(\.rawValue).joined(separator: ", "))
        }
        return f
    }

    func template() throws -> ChatTemplate? {
        try chatTemplate.map(ChatTemplate.fromArgument)
    }

    /// Examples of `path`, tokenized with the tokenizer of `modelDirectory` (or --tokenizer) when the
    /// rows are text; pre-tokenized rows need no tokenizer.
    func examples(_ path: String, modelDirectory: String?, vocabSize: Int, maxSeqLength: Int?, packing: Bool,
                  say: (String) -> Void = { print($0) }) throws -> [Example] {
        let url = URL(fileURLWithPath: path)
        let tokenizerDirectory = tokenizer ?? modelDirectory
        let hasTokenizer = tokenizerDirectory.map {
            FileManager.default.fileExists(atPath: URL(fileURLWithPath: $0).appendingPathComponent("tokenizer.json").path)
        } ?? false
        guard hasTokenizer, let tokenizerDirectory else {
            guard try datasetFormat() ?? .tokenized == .tokenized else {
                throw ValidationError("\(format) data needs a tokenizer: no tokenizer.json in \(tokenizerDirectory ?? "the model folder"); give --tokenizer DIR")
            }
            return try TokenizedDataset.load(url, vocabSize: vocabSize)
        }
        let tokenizer = try Swiftlet.Tokenizer(directory: URL(fileURLWithPath: tokenizerDirectory))
        let options = DatasetOptions(textField: textField, trainOnResponsesOnly: trainOnResponsesOnly,
                                     maxSeqLength: maxSeqLength, packing: packing, skipBadRows: skipBadRows)
        let result = try TextDataset.load(url: url, format: datasetFormat(), tokenizer: tokenizer, template: template(),
                                          options: options)
        if result.skipped > 0 {
            say("skipped \(result.skipped) bad rows of \(path), for example:")
            result.skipMessages.forEach { say("  \($0)") }
        }
        if result.droppedFullyMasked > 0 {
            say("dropped \(result.droppedFullyMasked) examples with no trained token left after truncation")
        }
        if let bad = result.examples.lazy.flatMap(\.inputIds).first(where: { Int($0) >= vocabSize }) {
            throw ValidationError("\(path): token id \(bad) is outside the model's vocabulary (vocab_size \(vocabSize))")
        }
        say("\(result.examples.count) examples (\(result.format.rawValue)) from \(path)")
        return result.examples
    }
}
