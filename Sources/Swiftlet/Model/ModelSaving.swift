import Foundation

/// Writes a model as a Hugging Face folder: config.json and model.safetensors (f32), which
/// transformers and Swiftlet both load.
extension LlamaModel {
    /// Every base weight with its Hugging Face name (the LM head only when not tied).
    public var namedWeights: [(name: String, weight: FrozenWeight)] {
        var weights: [(String, FrozenWeight)] = [("model.embed_tokens.weight", .dense(embedding))]
        for (i, layer) in layers.enumerated() {
            let p = "model.layers.\(i)."
            let norms = config.layerNormNames
            weights += [(p + "input_layernorm.weight", .dense(layer.inputNorm)),
                        (p + norms.preMLP, .dense(layer.postAttentionNorm))]
            if let name = norms.attentionOutput, let norm = layer.attentionOutputNorm { weights.append((p + name, .dense(norm))) }
            if let name = norms.mlpOutput, let norm = layer.mlpOutputNorm { weights.append((p + name, .dense(norm))) }
            if let qNorm = layer.qNorm { weights.append((p + "self_attn.q_norm.weight", .dense(qNorm))) }
            if let kNorm = layer.kNorm { weights.append((p + "self_attn.k_norm.weight", .dense(kNorm))) }
            for target in LoRAConfig.Target.allCases where target != .router {
                guard let linear = layer[target] else { continue }
                let module = Self.modulePath(layer: i, target)
                weights.append((module + ".weight", linear.weight))
                if let bias = linear.bias { weights.append((module + ".bias", .dense(bias))) }
            }
            if let moe = layer.mixture { weights += Self.expertWeights(moe, config, layer: i) }
        }
        weights.append(("model.norm.weight", .dense(finalNorm)))
        if !config.tieWordEmbeddings { weights.append(("lm_head.weight", .dense(lmHead))) }
        return weights
    }

    /// A mixture's router and experts under their checkpoint names, each expert's fused gate_up
    /// split back into its gate and up rows (views, or the NF4 parts as loaded).
    static func expertWeights(_ moe: MixtureOfExperts, _ c: LlamaConfig, layer i: Int) -> [(name: String, weight: FrozenWeight)] {
        let names = expertNames(c, layer: i), width = moe.config.intermediateSize
        var weights: [(name: String, weight: FrozenWeight)] = [(names.router, moe.router.weight)]
        for (e, expert) in moe.experts.enumerated() {
            let n = names.expert(e)
            let gateUp = expert.gateUp.linears[0].weight
            switch gateUp {
            case let .dense(t):
                weights += [(n.gate, .dense(t.rows(0..<width))), (n.up, .dense(t.rows(width..<(2 * width))))]
            case let .nf4Rows(parts):
                weights += [(n.gate, .nf4(parts[0])), (n.up, .nf4(parts[1]))]
            case .nf4:
                // quantizeLinearsToNF4 quantized the fused tensor whole; its halves are read dequantized.
                let t = try! gateUp.materialized()
                weights += [(n.gate, .dense(t.rows(0..<width))), (n.up, .dense(t.rows(width..<(2 * width))))]
            }
            weights.append((n.down, expert.down.weight))
        }
        return weights
    }

    /// For merged export: each checkpoint name of a mixture's router and experts with the whole
    /// linear it belongs to, that linear's adapter, and its rows in it (gate and up are halves of one
    /// fused gate_up, so the adapter is merged into the whole and the half taken after).
    var expertLinearParts: [String: (weight: FrozenWeight, adapter: LoRAAdapter?, rows: Range<Int>?)] {
        var parts: [String: (weight: FrozenWeight, adapter: LoRAAdapter?, rows: Range<Int>?)] = [:]
        for (i, layer) in layers.enumerated() {
            guard let moe = layer.mixture else { continue }
            let names = Self.expertNames(config, layer: i), width = moe.config.intermediateSize
            parts[names.router] = (moe.router.weight, moe.router.lora, nil)
            for (e, expert) in moe.experts.enumerated() {
                let n = names.expert(e), gateUp = expert.gateUp.linears[0]
                parts[n.gate] = (gateUp.weight, gateUp.lora, 0..<width)
                parts[n.up] = (gateUp.weight, gateUp.lora, width..<(2 * width))
                parts[n.down] = (expert.down.weight, expert.down.lora, nil)
            }
        }
        return parts
    }

    public func save(directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let entries = try namedWeights.map { SafetensorsWriter.Entry(name: $0.name, floats: try $0.weight.floats(), shape: $0.weight.shape) }
        try SafetensorsWriter.write(entries, metadata: ["format": "pt"], to: directory.appendingPathComponent("model.safetensors"))
        let json = try HFConfig.serialized(HFConfig.json(config))
        try AtomicFile.write(json, to: directory.appendingPathComponent("config.json"))
    }
}

extension HFConfig {
    /// config.json for a `LlamaConfig`, in transformers' keys.
    public static func json(_ c: LlamaConfig) -> [String: Any] {
        var rope = ropeParameters(c.rope)
        var json: [String: Any] = [
            "model_type": c.modelType.rawValue, "architectures": [Self.architecture(c.modelType)],
            "vocab_size": c.vocabSize, "hidden_size": c.hiddenSize, "intermediate_size": c.intermediateSize,
            "num_hidden_layers": c.layers, "num_attention_heads": c.heads, "num_key_value_heads": c.kvHeads,
            "head_dim": c.headDim, "rms_norm_eps": Double(c.rmsNormEps), "max_position_embeddings": c.maxPositionEmbeddings,
            "tie_word_embeddings": c.tieWordEmbeddings, "hidden_act": "silu", "rope_parameters": rope,
            "rope_theta": Double(c.rope.theta), "torch_dtype": "float32",
        ]
        switch c.modelType {
        case .qwen2, .mixtral: break
        case .llama, .mistral, .qwen3, .qwen3Moe: json["attention_bias"] = c.oBias
        case .gemma2, .gemma3Text:
            json["attention_bias"] = c.oBias
            json.removeValue(forKey: "hidden_act")
            json["hidden_activation"] = c.activation.rawValue
            json["query_pre_attn_scalar"] = c.queryPreAttentionScalar.map(Double.init) ?? Double(c.headDim)
            // null, not absent: absent would mean Gemma 2's defaults (50, 30).
            json["attn_logit_softcapping"] = c.attentionSoftcap.map { Double($0) as Any } ?? NSNull()
            json["final_logit_softcapping"] = c.finalLogitSoftcap.map { Double($0) as Any } ?? NSNull()
            json["layer_types"] = (0..<c.layers).map { c.isSliding(layer: $0) ? "sliding_attention" : "full_attention" }
            if c.modelType == .gemma3Text {
                // transformers 5's Gemma 3 form: one rope_parameters per layer type.
                json.removeValue(forKey: "rope_theta")
                json["rope_parameters"] = ["full_attention": rope,
                                           "sliding_attention": ropeParameters(c.localRope ?? c.rope)]
            }
        case .phi3:
            // Phi-3 reads rope from rope_parameters with its partial_rotary_factor (always 1 here).
            rope["partial_rotary_factor"] = 1.0
            json["rope_parameters"] = rope
            // Phi3Config takes the original context from this top-level field (over rope_parameters').
            if case let .longrope(l) = c.rope.kind {
                json["original_max_position_embeddings"] = l.originalMaxPositions
            } else {
                json["original_max_position_embeddings"] = c.maxPositionEmbeddings
            }
            json["resid_pdrop"] = 0.0
            json["embd_pdrop"] = 0.0
            // Phi3Config's default pad_token_id (32000) is outside a small vocabulary; Phi-3's is its EOS.
            if let e = c.eosTokenId { json["pad_token_id"] = e }
        }
        if c.modelType == .qwen3 {
            json["use_sliding_window"] = false
            json["layer_types"] = Array(repeating: "full_attention", count: c.layers)
        }
        if let moe = c.moe {
            json["num_experts_per_tok"] = moe.topK
            // (an integral coefficient would be written as an int, which transformers' float field refuses)
            if moe.auxLossCoefficient != moe.auxLossCoefficient.rounded() {
                json["router_aux_loss_coef"] = Double(moe.auxLossCoefficient)
            }
            json["output_router_logits"] = moe.auxLossEnabled
            if c.modelType == .mixtral {
                json["num_local_experts"] = moe.experts
                json["intermediate_size"] = moe.intermediateSize
            } else {
                json["num_experts"] = moe.experts
                json["moe_intermediate_size"] = moe.intermediateSize
                json["norm_topk_prob"] = moe.normalizeTopK
                json["decoder_sparse_step"] = 1
                json["mlp_only_layers"] = [Int]()
                json["use_sliding_window"] = false
            }
        }
        if let w = c.slidingWindow { json["sliding_window"] = w }
        if let b = c.bosTokenId { json["bos_token_id"] = b }
        if let e = c.eosTokenId { json["eos_token_id"] = e }
        return json
    }

    /// Fields that transformers' strict config classes type as float: a whole number must be written
    /// as 3.0, not 3 (Gemma2Config rejects final_logit_softcapping 3 as an int, BitsAndBytesConfig an
    /// llm_int8_threshold of 6). Matched at any depth of the JSON text.
    static let floatFields = ["attn_logit_softcapping", "final_logit_softcapping", "rms_norm_eps", "llm_int8_threshold"]

    /// config.json's bytes (pretty, sorted keys), with `floatFields` that hold whole numbers written
    /// with a ".0" (JSONSerialization writes 3.0 as 3).
    public static func serialized(_ json: [String: Any]) throws -> Data {
        var text = String(decoding: try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys]),
                          as: UTF8.self)
        for field in floatFields {
            text = text.replacingOccurrences(of: "(\"\(field)\" : -?[0-9]+)(?=[,\n])", with: "$1.0", options: .regularExpression)
        }
        return Data(text.utf8)
    }

    /// transformers 5's rope_parameters of one RoPE.
    static func ropeParameters(_ r: RoPEScaling) -> [String: Any] {
        var rope: [String: Any] = ["rope_theta": Double(r.theta)]
        switch r.kind {
        case .none: rope["rope_type"] = "default"
        case let .linear(f): rope["rope_type"] = "linear"; rope["factor"] = Double(f)
        case let .dynamic(f): rope["rope_type"] = "dynamic"; rope["factor"] = Double(f)
        case let .llama3(f, low, high, original):
            rope.merge(["rope_type": "llama3", "factor": Double(f), "low_freq_factor": Double(low),
                        "high_freq_factor": Double(high), "original_max_position_embeddings": original]) { $1 }
        case let .longrope(l):
            // Written as read: factor and attention_factor only where config.json had them ("su" is
            // written as transformers 5 does, "longrope").
            rope.merge(["rope_type": "longrope", "short_factor": l.shortFactor,
                        "long_factor": l.longFactor,
                        "original_max_position_embeddings": l.originalMaxPositions]) { $1 }
            if let f = l.factor { rope["factor"] = f }
            if let a = l.attentionFactor { rope["attention_factor"] = a }
        }
        return rope
    }

    static func architecture(_ type: LlamaConfig.ModelType) -> String {
        switch type {
        case .llama: return "LlamaForCausalLM"
        case .mistral: return "MistralForCausalLM"
        case .qwen2: return "Qwen2ForCausalLM"
        case .qwen3: return "Qwen3ForCausalLM"
        case .phi3: return "Phi3ForCausalLM"
        case .gemma2: return "Gemma2ForCausalLM"
        case .gemma3Text: return "Gemma3ForCausalLM"
        case .mixtral: return "MixtralForCausalLM"
        case .qwen3Moe: return "Qwen3MoeForCausalLM"
        }
    }
}
