/// Putting LoRA adapters on a model's linear layers, fresh or from saved weights.
extension LlamaModel {
    /// The Hugging Face module path of a layer's linear.
    static func modulePath(layer: Int, _ target: LoRAConfig.Target) -> String {
        switch target {
        case .q, .k, .v, .qkv, .o: return "model.layers.\(layer).self_attn.\(target.rawValue)"
        case .gate, .up, .gateUp, .down, .router: return "model.layers.\(layer).mlp.\(target.rawValue)"
        }
    }

    /// PEFT's module of a mixture's expert parameter. PEFT wraps gate_up_proj first and down_proj
    /// around it, so with both targeted gate_up's adapter sits on `experts.base_layer`.
    static func expertModulePath(layer: Int, gateUp: Bool, bothTargeted: Bool) -> String {
        "model.layers.\(layer).mlp.experts" + (gateUp && bothTargeted ? ".base_layer" : "")
    }

    /// Attaches freshly initialised adapters (PEFT's init: A kaiming-uniform, B zero) from `seed`.
    public func addLoRA(_ config: LoRAConfig, seed: UInt64) throws {
        var generator = SplitMix64(seed: seed)
        try attachLoRA(config) { site in
            try LoRAAdapter.initialized(site, config: config, generator: &generator, on: backend)
        }
    }

    /// Attaches adapters made by `make(site)` to every targeted linear layer. In a mixture, gate and
    /// up (Mixtral's w1, w3) together put one adapter on each expert's fused gate_up with rank 2r and
    /// alpha 2α, and down (w2) one of rank r on each expert's down, as PEFT converts those targets to
    /// target_parameters on transformers 5's 3-D expert tensors; `router` (PEFT's `gate`) adapts the router.
    public func attachLoRA(_ config: LoRAConfig, make: (LoRASite) throws -> LoRAAdapter) throws {
        guard config.r > 0 else { throw LoRAError.invalid("LoRA rank r must be positive, got \(config.r)") }
        guard config.dropout >= 0 && config.dropout < 1 else {
            throw LoRAError.invalid("lora_dropout must be in [0, 1), got \(config.dropout)")
        }
        // "All" means every linear this family has; a named target must exist.
        let available = layers.first?.loraTargets ?? []
        var config = config
        if config.targets == Set(LoRAConfig.Target.allCases) {
            config.targets = available
        } else if let missing = config.targets.subtracting(available).sorted().first {
            throw LoRAError.targetNotInModel(missing.rawValue, modelType: self.config.modelType.rawValue,
                                             available: available.sorted().map(\.rawValue))
        }
        if self.config.moe != nil {
            // PEFT: the experts' gate and up are one tensor, so one cannot be adapted without the other;
            // its parameter adapters (experts, router) take no dropout.
            if config.targets.contains(.gate) != config.targets.contains(.up) {
                throw LoRAError.invalid("LoRA on a mixture's experts needs both gate_proj and up_proj (Mixtral: w1 and w3): "
                    + "they are one fused tensor per expert (PEFT refuses one without the other)")
            }
            if config.dropout > 0 && !config.targets.isDisjoint(with: [.gate, .up, .down, .router]) {
                throw LoRAError.invalid("lora_dropout \(config.dropout) on a mixture's experts or router is not supported "
                    + "(PEFT's parameter adapters refuse dropout); use 0 or target only the attention")
            }
        }
        loraConfig = config
        func site(_ module: String, _ linear: Linear, rankFactor: Int = 1, expert: (Int, Int)? = nil) -> LoRASite {
            let rank = config.r * rankFactor, alpha = config.alpha * Float(rankFactor)
            return LoRASite(module: module, inFeatures: linear.inFeatures, outFeatures: linear.outFeatures, rank: rank,
                            scaling: config.useRSLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank), expert: expert)
        }
        for i in layers.indices {
            for target in config.targets.sorted() {
                guard let linear = layers[i][target] else { continue }
                layers[i][target]!.lora = try make(site(Self.modulePath(layer: i, target), linear))
            }
            guard case var .mixture(moe) = layers[i].feedForward else { continue }
            let gateUp = config.targets.contains(.gate), down = config.targets.contains(.down)
            let count = moe.experts.count
            for e in moe.experts.indices {
                if gateUp, case .fused(var linear, let widths) = moe.experts[e].gateUp {
                    let module = Self.expertModulePath(layer: i, gateUp: true, bothTargeted: down)
                    linear.lora = try make(site(module, linear, rankFactor: 2, expert: (e, count)))
                    moe.experts[e].gateUp = .fused(linear, widths: widths)
                }
                if down {
                    let module = Self.expertModulePath(layer: i, gateUp: false, bothTargeted: gateUp)
                    moe.experts[e].down.lora = try make(site(module, moe.experts[e].down, expert: (e, count)))
                }
            }
            layers[i].feedForward = .mixture(moe)
        }
    }

    /// Removes all adapters (the base model again; DPO's reference model).
    public func removeLoRA() {
        loraConfig = nil
        for i in layers.indices { layers[i].updateLinears { $0.lora = nil } }
    }
}
