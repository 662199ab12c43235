/// Putting LoRA adapters on a model's linear layers, fresh or from saved weights.
extension LlamaModel {
    /// The Hugging Face module path of a layer's linear.
    static func modulePath(layer: Int, _ target: LoRAConfig.Target) -> String {
        switch target {
        case .q, .k, .v, .o: return "model.layers.\(layer).self_attn.\(target.rawValue)"
        case .gate, .up, .down: return "model.layers.\(layer).mlp.\(target.rawValue)"
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
        loraConfig = config
        for i in layers.indices {
            for target in LoRAConfig.Target.allCases.sorted() where config.targets.contains(target) {
                let keyPath = Self.linearKeyPath(target)
                let linear = layers[i][keyPath: keyPath]
                layers[i][keyPath: keyPath].lora = try make(Self.modulePath(layer: i, target),
                                                            linear.inFeatures, linear.outFeatures)
            }
        }
    }

    /// Removes all adapters (the base model again; DPO's reference model).
    public func removeLoRA() {
        loraConfig = nil
        for i in layers.indices {
            for target in LoRAConfig.Target.allCases { layers[i][keyPath: Self.linearKeyPath(target)].lora = nil }
        }
    }

    static func linearKeyPath(_ target: LoRAConfig.Target) -> WritableKeyPath<DecoderLayer, Linear> {
        switch target {
        case .q: return \.q
        case .k: return \.k
        case .v: return \.v
        case .o: return \.o
        case .gate: return \.gate
        case .up: return \.up
        case .down: return \.down
        }
    }
}
