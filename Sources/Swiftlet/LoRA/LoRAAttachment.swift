/// Putting LoRA adapters on a model's linear layers, fresh or from saved weights.
extension LlamaModel {
    /// The Hugging Face module path of a layer's linear.
    static func modulePath(layer: Int, _ target: LoRAConfig.Target) -> String {
        switch target {
        case .q, .k, .v, .qkv, .o: return "model.layers.\(layer).self_attn.\(target.rawValue)"
        case .gate, .up, .gateUp, .down: return "model.layers.\(layer).mlp.\(target.rawValue)"
        }
    }

    /// Attaches freshly initialised adapters (PEFT's init: A kaiming-uniform, B zero) from `seed`.
    public func addLoRA(_ config: LoRAConfig, seed: UInt64) throws {
        var generator = SplitMix64(seed: seed)
        try attachLoRA(config) { module, inFeatures, outFeatures in
            try LoRAAdapter.initialized(module: module, inFeatures: inFeatures, outFeatures: outFeatures,
                                        config: config, generator: &generator, on: backend)
        }
    }

    /// Attaches adapters made by `make(module, in, out)` to every targeted linear layer.
    public func attachLoRA(_ config: LoRAConfig,
                           make: (String, Int, Int) throws -> LoRAAdapter) throws {
        guard config.r > 0 else { throw LoRAError.invalid("LoRA rank r must be positive, got \(config.r)") }
        guard config.dropout >= 0 && config.dropout < 1 else {
            throw LoRAError.invalid("lora_dropout must be in [0, 1), got \(config.dropout)")
        }
        // "All" means every linear this family has; a named target must exist.
        let available = Set(LoRAConfig.Target.allCases.filter { layers.first?[$0] != nil })
        var config = config
        if config.targets == Set(LoRAConfig.Target.allCases) {
            config.targets = available
        } else if let missing = config.targets.subtracting(available).sorted().first {
            throw LoRAError.targetNotInModel(missing.rawValue, modelType: self.config.modelType.rawValue,
                                             available: available.sorted().map(\.rawValue))
        }
        loraConfig = config
        for i in layers.indices {
            for target in config.targets.sorted() {
                guard let linear = layers[i][target] else { continue }
                layers[i][target]!.lora = try make(Self.modulePath(layer: i, target), linear.inFeatures, linear.outFeatures)
            }
        }
    }

    /// Removes all adapters (the base model again; DPO's reference model).
    public func removeLoRA() {
        loraConfig = nil
        for i in layers.indices {
            for target in LoRAConfig.Target.allCases { layers[i][target]?.lora = nil }
        }
    }
}
