import Foundation

/// Unsloth's entry point, in Swift's idiom: load a Hugging Face model folder with its tokenizer,
/// on the GPU when there is one.
///
///     let (model, tokenizer) = try FastLanguageModel.fromPretrained("my-model", maxSeqLength: 2048)
///     try model.addLoRA(r: 16, alpha: 16)
///     try SFTTrainer(model: model, tokenizer: tokenizer, dataset: "chat.jsonl", arguments: arguments).train()
public enum FastLanguageModel {
    /// - Parameters:
    ///   - dtype: the GPU's storage type (`.bf16`, `.f16`; nil: bf16 where the GPU has it). The CPU
    ///     computes in f32 whatever is asked.
    ///   - loadIn4bit: 4-bit NF4 base weights with double quantization (QLoRA), quantized tensor
    ///     by tensor while loading. A pre-quantized bitsandbytes checkpoint loads in 4-bit either way.
    public static func fromPretrained(_ path: String, maxSeqLength: Int = 2048, dtype: DType? = nil,
                                      loadIn4bit: Bool = false, device: Device = .auto) throws -> (LlamaModel, Tokenizer) {
        let precision: Precision
        switch dtype {
        case nil: precision = .auto
        case .bf16?: precision = .bf16
        case .f16?: precision = .fp16
        case let other?: throw LoRAError.invalid("dtype \(other) is not a GPU storage type; use .bf16 or .f16")
        }
        let directory = URL(fileURLWithPath: path)
        let model = try LlamaModel.load(directory: directory, on: device.makeBackend(precision: precision),
                                        loadIn4bit: loadIn4bit)
        model.maxSeqLength = maxSeqLength
        return (model, try Tokenizer(directory: directory))
    }
}

extension LlamaModel {
    /// Attaches fresh LoRA adapters (PEFT's initialisation from `seed`), with Unsloth's argument names.
    public func addLoRA(r: Int = 16, targetModules: [String] = LoRAConfig.Target.allCases.map(\.rawValue),
                        alpha: Float = 16, dropout: Float = 0, useRSLoRA: Bool = false,
                        gradientCheckpointing: GradientCheckpointing = .off, seed: UInt64 = 3407) throws {
        self.gradientCheckpointing = gradientCheckpointing
        let targets = try LoRAConfig.targets(parsing: targetModules.joined(separator: ","))
        try addLoRA(LoRAConfig(r: r, alpha: alpha, dropout: dropout, targets: targets, useRSLoRA: useRSLoRA), seed: seed)
    }

    /// Writes the adapters as a PEFT adapter folder.
    public func saveAdapter(to path: String) throws {
        guard let loraConfig else { throw TrainingError.noAdapters }
        try PEFTAdapter.save(self, config: loraConfig, to: URL(fileURLWithPath: path))
    }
}
