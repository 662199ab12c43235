import Foundation

/// A JSONL file of pre-tokenized examples: one object per line with `input_ids`, and optionally
/// `labels` (-100 = not trained on) and `attention_mask` (1s then 0s: right padding).
public enum TokenizedDataset {
    /// Reads every row; with `vocabSize`, token ids and labels must lie inside the vocabulary.
    public static func load(_ url: URL, vocabSize: Int? = nil) throws -> [Example] {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw DataError(file: url.path, line: nil, field: nil, problem: "cannot be read (\(error.localizedDescription))")
        }
        var examples: [Example] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            examples.append(try parse(row: trimmed, file: url.path, line: index + 1, vocabSize: vocabSize))
        }
        guard !examples.isEmpty else {
            throw DataError(file: url.path, line: nil, field: nil, problem: "holds no examples")
        }
        return examples
    }

    static func parse(row: String, file: String, line: Int?, vocabSize: Int? = nil) throws -> Example {
        func fail(_ field: String?, _ problem: String) -> DataError {
            DataError(file: file, line: line, field: field, problem: problem)
        }
        struct Row: Decodable {
            var input_ids: [Int64]?
            var labels: [Int64]?
            var attention_mask: [Int64]?
        }
        let decoded: Row
        do {
            decoded = try JSONDecoder().decode(Row.self, from: Data(row.utf8))
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let field = context.codingPath.first?.stringValue
            throw fail(field, field == nil ? "is not a JSON object" : "must be a list of integers")
        } catch {
            throw fail(nil, "is not a JSON object")
        }
        func ints(_ field: String) throws -> [Int32]? {
            let values: [Int64]?
            switch field {
            case "input_ids": values = decoded.input_ids
            case "labels": values = decoded.labels
            default: values = decoded.attention_mask
            }
            return try values.map { list in
                try list.map { v in
                    guard let n = Int32(exactly: v) else { throw fail(field, "holds \(v), outside 32-bit range") }
                    return n
                }
            }
        }
        guard let ids = try ints("input_ids") else {
            throw fail("input_ids", "is missing (rows must hold pre-tokenized \"input_ids\")")
        }
        guard !ids.isEmpty else { throw fail("input_ids", "is empty") }
        if let bad = ids.first(where: { $0 < 0 }) { throw fail("input_ids", "holds a negative id \(bad)") }
        let labels = try ints("labels")
        if let labels, labels.count != ids.count {
            throw fail("labels", "has \(labels.count) entries for \(ids.count) input_ids")
        }
        if let bad = labels?.first(where: { $0 < 0 && $0 != Batch.ignoreIndex }) {
            throw fail("labels", "holds \(bad); labels are token ids or -100")
        }
        if let vocabSize {
            if let bad = ids.first(where: { Int($0) >= vocabSize }) {
                throw fail("input_ids", "holds \(bad), outside the model's vocabulary (vocab_size \(vocabSize))")
            }
            if let bad = labels?.first(where: { Int($0) >= vocabSize }) {
                throw fail("labels", "holds \(bad), outside the model's vocabulary (vocab_size \(vocabSize))")
            }
        }
        let mask = try ints("attention_mask")
        if let mask {
            guard mask.count == ids.count else {
                throw fail("attention_mask", "has \(mask.count) entries for \(ids.count) input_ids")
            }
            guard mask.allSatisfy({ $0 == 0 || $0 == 1 }) else { throw fail("attention_mask", "must hold only 0 and 1") }
            let ones = mask.prefix { $0 == 1 }.count
            guard mask.dropFirst(ones).allSatisfy({ $0 == 0 }) else {
                throw fail("attention_mask", "must be 1s followed by 0s (right padding)")
            }
        }
        return Example(inputIds: ids, labels: labels, attentionMask: mask)
    }
}

/// A data row we cannot use, naming the file, line and field.
public struct DataError: Error, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var field: String?
    public var problem: String
    public var description: String {
        var place = file
        if let line { place += ":\(line)" }
        if let field { return "\(place): field '\(field)' \(problem)" }
        return "\(place): \(problem)"
    }
}
