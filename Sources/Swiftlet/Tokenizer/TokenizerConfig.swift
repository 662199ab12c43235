import Foundation

/// The parts of transformers' `tokenizer_config.json` Swiftlet reads.
public struct TokenizerConfig: Sendable {
    public var addBosToken: Bool?
    public var addEosToken: Bool?
    public var bosToken: String?
    public var eosToken: String?
    public var padToken: String?
    public var unkToken: String?
    /// The Jinja chat template, kept for later use (a list of named templates yields the "default" one).
    public var chatTemplate: String?

    public init() {}

    init(json: TokenizerJSON, file: String) throws {
        guard json.objectValue != nil else {
            throw TokenizerError.invalidField(file: file, field: "(root)", reason: "expected an object")
        }
        addBosToken = json["add_bos_token"]?.boolValue
        addEosToken = json["add_eos_token"]?.boolValue
        bosToken = json["bos_token"]?.tokenContent
        eosToken = json["eos_token"]?.tokenContent
        padToken = json["pad_token"]?.tokenContent
        unkToken = json["unk_token"]?.tokenContent
        if let t = json["chat_template"] {
            if let s = t.stringValue {
                chatTemplate = s
            } else if let list = t.arrayValue {
                chatTemplate = list.first(where: { $0["name"]?.stringValue == "default" })?["template"]?.stringValue
                    ?? list.first?["template"]?.stringValue
            }
        }
    }
}
