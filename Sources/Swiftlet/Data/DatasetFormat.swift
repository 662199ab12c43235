import Foundation

/// How the rows of a text data set are laid out.
public enum DatasetFormat: String, Sendable, CaseIterable {
    /// One string field (`DatasetOptions.textField`, default "text") per row: language modeling.
    case text
    /// `instruction`, optional `input`, `output`: the Stanford Alpaca prompt, trained as prompt-completion.
    case alpaca
    /// OpenAI `{"messages": [{"role", "content"}]}` or ShareGPT `{"conversations": [{"from", "value"}]}`.
    case conversations
    /// Pre-tokenized `input_ids` (+ optional `labels`, `attention_mask`), as `TokenizedDataset` reads.
    case tokenized

    /// The format implied by a row's keys: `input_ids` → tokenized; `messages`/`conversations` →
    /// conversations; `instruction` + `output` → alpaca; the text field → text.
    public static func detect(_ row: DatasetRow, textField: String = "text") throws -> DatasetFormat {
        let keys = row.fields.keys
        if keys.contains("input_ids") { return .tokenized }
        if keys.contains("messages") || keys.contains("conversations") { return .conversations }
        if keys.contains("instruction") && keys.contains("output") { return .alpaca }
        if keys.contains(textField) { return .text }
        throw row.error(nil, "has keys (\(keys.sorted().joined(separator: ", "))) that match no data set format: expected "
            + "'\(textField)' (text), 'instruction'+'output' (alpaca), 'messages' or 'conversations' (chat), or 'input_ids' (tokenized)")
    }
}

/// A row turned into what gets tokenized.
public enum FormattedExample: Sendable {
    case text(String)
    /// Prompt and completion (no EOS yet), as TRL's prompt-completion data sets.
    case promptCompletion(prompt: String, completion: String)
    case conversation([ChatMessage])
    case tokenized(Example)
}

public enum AlpacaPrompt {
    public static let withoutInput = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
    public static let withInput = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"

    public static func prompt(instruction: String, input: String?) -> String {
        if let input {
            return withInput.replacingOccurrences(of: "{instruction}", with: instruction).replacingOccurrences(of: "{input}", with: input)
        }
        return withoutInput.replacingOccurrences(of: "{instruction}", with: instruction)
    }
}

extension DatasetFormat {
    /// ShareGPT speaker names → chat roles (TRL's `maybe_convert_to_chatml` only renames the keys;
    /// we also map the ShareGPT speakers, then the row is exactly an OpenAI messages row).
    public static let shareGPTRoles: [String: String] = [
        "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
        "tool": "tool", "function_call": "assistant", "observation": "tool",
    ]
    public static let chatRoles: Set<String> = ["system", "user", "assistant", "tool"]

    /// Checks the row and turns it into a `FormattedExample`; problems name the row and field.
    public func format(_ row: DatasetRow, textField: String = "text") throws -> FormattedExample {
        switch self {
        case .text:
            let s = try row.string(textField)
            guard !s.isEmpty else { throw row.error(textField, "is empty") }
            return .text(s)
        case .alpaca:
            let instruction = try row.string("instruction")
            let input = try row.optionalString("input")
            let output = try row.string("output")
            return .promptCompletion(prompt: AlpacaPrompt.prompt(instruction: instruction, input: input), completion: output)
        case .conversations:
            let shareGPT = row.fields["messages"] == nil
            let key = shareGPT ? "conversations" : "messages"
            guard let v = row[key], v != .null else { throw row.error(key, "is missing") }
            let messages = try DatasetFormat.messages(v, of: row, field: key, shareGPT: shareGPT)
            guard !messages.isEmpty else { throw row.error(key, "is an empty conversation") }
            return .conversation(messages)
        case .tokenized:
            func ints(_ key: String) throws -> [Int64]? {
                guard let v = row[key], v != .null else { return nil }
                guard case .array(let a) = v else { throw row.error(key, "must be a list of integers") }
                return try a.map { guard case .int(let n) = $0 else { throw row.error(key, "must be a list of integers") }; return n }
            }
            // Re-use TokenizedDataset's checks on the same numbers.
            var o: [String] = []
            for key in ["input_ids", "labels", "attention_mask"] {
                if let list = try ints(key) { o.append("\"\(key)\":[\(list.map(String.init).joined(separator: ","))]") }
            }
            return .tokenized(try TokenizedDataset.parse(row: "{\(o.joined(separator: ","))}", file: row.file, line: row.line))
        }
    }

    /// A list of `{"role", "content"}` (ShareGPT: `{"from", "value"}`) objects as chat messages;
    /// problems name the row and the field (`chosen[1].role`).
    public static func messages(_ v: DataValue, of row: DatasetRow, field key: String, shareGPT: Bool = false) throws -> [ChatMessage] {
        let (roleKey, contentKey) = shareGPT ? ("from", "value") : ("role", "content")
        guard case .array(let turns) = v else { throw row.error(key, "must be a list of messages, not \(v.typeName)") }
        var messages: [ChatMessage] = []
        for (i, turn) in turns.enumerated() {
            let f = "\(key)[\(i)]"
            guard case .object(let m) = turn else { throw row.error(f, "must be an object, not \(turn.typeName)") }
            guard let r = m[roleKey], r != .null else { throw row.error("\(f).\(roleKey)", "is missing") }
            guard case .string(let rawRole) = r else { throw row.error("\(f).\(roleKey)", "must be a string, not \(r.typeName)") }
            let role = shareGPT ? DatasetFormat.shareGPTRoles[rawRole] : (DatasetFormat.chatRoles.contains(rawRole) ? rawRole : nil)
            guard let role else {
                let known = shareGPT ? DatasetFormat.shareGPTRoles.keys.sorted() : DatasetFormat.chatRoles.sorted()
                throw row.error("\(f).\(roleKey)", "is an unknown role '\(rawRole)' (known: \(known.joined(separator: ", ")))")
            }
            guard let c = m[contentKey], c != .null else { throw row.error("\(f).\(contentKey)", "is missing") }
            guard case .string(let content) = c else { throw row.error("\(f).\(contentKey)", "must be a string, not \(c.typeName)") }
            messages.append(ChatMessage(role: role, content: content))
        }
        return messages
    }
}
