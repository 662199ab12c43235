import Foundation

/// The built-in demo: a small Llama made deterministically in code, a byte-level tokenizer, a chat
/// template, and a data set of conversations it can visibly learn in about a minute on two CPU
/// cores: "Count by 3 from 14." → "14 17 20 23 26 29 32 35". `write(to:)` lays them out as a Hugging
/// Face model folder and data files, so the demo runs through the same code as a real model.
public enum DemoTask {
    public static let specialTokens = ["<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"]

    public static let config = LlamaConfig(
        modelType: .llama, vocabSize: 256 + specialTokens.count, hiddenSize: 128, intermediateSize: 344, layers: 4,
        heads: 4, kvHeads: 2, rmsNormEps: 1e-5, rope: RoPEScaling(theta: 10000),
        maxPositionEmbeddings: 512, bosTokenId: 256, eosTokenId: 257)

    /// Standard deviation of the demo model's random weights: large enough that the frozen
    /// output layer can express confident predictions.
    public static let weightScale: Float = 0.08

    public static let lora = LoRAConfig(r: 16, alpha: 32, dropout: 0, targets: Set(LoRAConfig.Target.allCases))

    /// ChatML, with {% generation %} around the assistant's words so train-on-responses-only knows them.
    public static let chatTemplate = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
        + "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
        + "{{ '\\n' }}{% else %}{{ message['content'] + '<|im_end|>' + '\\n' }}{% endif %}{% endfor %}"
        + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

    /// The task: `count` (instruction, answer) pairs from `seed`.
    public static func pairs(count: Int = 512, seed: UInt64 = 7) -> [(instruction: String, answer: String)] {
        var generator = SplitMix64(seed: seed)
        return (0..<count).map { _ in
            let start = Int(generator.next() % 100), stride = 1 + Int(generator.next() % 3)
            return ("Count by \(stride) from \(start).", (0..<8).map { String(start + $0 * stride) }.joined(separator: " "))
        }
    }

    public static var arguments: TrainingArguments {
        var a = TrainingArguments()
        a.batchSize = 8
        a.maxSteps = 300
        a.learningRate = 3e-3
        a.warmupSteps = 10
        a.scheduler = .cosine
        a.maxGradNorm = 1
        a.maxSeqLength = 96
        return a
    }

    /// Writes `model/` (config.json, model.safetensors, tokenizer.json, tokenizer_config.json),
    /// `chat.jsonl` (OpenAI messages) and `alpaca.jsonl` under `directory`.
    public static func write(to directory: URL) throws {
        let modelDirectory = directory.appendingPathComponent("model")
        try LlamaModel.random(config: config, seed: 1, std: weightScale, on: CPUBackend()).save(directory: modelDirectory)
        try AtomicFile.write(Data(tokenizerJSON.utf8), to: modelDirectory.appendingPathComponent("tokenizer.json"))
        let tokenizerConfig: [String: Any] = ["bos_token": specialTokens[0], "eos_token": specialTokens[1],
                                              "chat_template": chatTemplate, "model_max_length": config.maxPositionEmbeddings]
        try AtomicFile.write(JSONSerialization.data(withJSONObject: tokenizerConfig, options: [.prettyPrinted, .sortedKeys]),
                             to: modelDirectory.appendingPathComponent("tokenizer_config.json"))
        var chat = "", alpaca = ""
        for (instruction, answer) in pairs() {
            let messages: [String: Any] = ["messages": [["role": "user", "content": instruction], ["role": "assistant", "content": answer]]]
            chat += String(decoding: try JSONSerialization.data(withJSONObject: messages, options: [.sortedKeys]), as: UTF8.self) + "\n"
            let row: [String: Any] = ["instruction": instruction, "input": "", "output": answer]
            alpaca += String(decoding: try JSONSerialization.data(withJSONObject: row, options: [.sortedKeys]), as: UTF8.self) + "\n"
        }
        try AtomicFile.write(Data(chat.utf8), to: directory.appendingPathComponent("chat.jsonl"))
        try AtomicFile.write(Data(alpaca.utf8), to: directory.appendingPathComponent("alpaca.jsonl"))
    }

    /// A byte-level BPE tokenizer.json with no merges: one token per byte (GPT-2's byte characters),
    /// then the special tokens; BOS added by the post-processor.
    public static var tokenizerJSON: String {
        var vocab: [String: Int] = [:]
        for byte in 0..<256 { vocab[String(Unicode.Scalar(ByteLevelMap.byteToChar[byte])!)] = byte }
        let added = specialTokens.enumerated().map { i, t -> [String: Any] in
            ["id": 256 + i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true]
        }
        let bos = specialTokens[0]
        let json: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": added, "normalizer": NSNull(),
            "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false],
            "post_processor": ["type": "TemplateProcessing",
                               "single": [["SpecialToken": ["id": bos, "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
                               "pair": [["SpecialToken": ["id": bos, "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                                        ["Sequence": ["id": "B", "type_id": 1]]],
                               "special_tokens": [bos: ["id": bos, "ids": [256], "tokens": [bos]]]],
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                      "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": [String]()],
        ]
        return String(decoding: try! JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]), as: UTF8.self)
    }
}
