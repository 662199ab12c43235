import Foundation

/// Reads a Hugging Face `config.json` into a `LlamaConfig`. Anything we would get silently wrong
/// is refused with an error naming the field.
public enum HFConfig {
    public static func load(_ url: URL) throws -> LlamaConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ConfigError(file: url.path, field: nil, problem: "cannot be read (\(error.localizedDescription))")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ConfigError(file: url.path, field: nil, problem: "is not a JSON object")
        }
        return try parse(object, file: url.path)
    }

    public static func parse(_ json: [String: Any], file: String) throws -> LlamaConfig {
        let fields = Fields(json: json, file: file)
        let typeName: String = try fields.required("model_type")
        if typeName == "gemma3" {
            // Gemma3ForConditionalGeneration: its text weights live under model.language_model.* beside a
            // vision tower; only the text-only checkpoints (Gemma 3 1B, or a text model saved from it) load.
            throw fields.error("model_type", "'gemma3' (the multimodal Gemma3ForConditionalGeneration) is not supported; "
                + "use a text-only checkpoint (model_type gemma3_text, Gemma3ForCausalLM, e.g. gemma-3-1b), "
                + "whose fields are what this config's text_config holds")
        }
        guard let modelType = LlamaConfig.ModelType(rawValue: typeName) else {
            throw fields.error("model_type", "'\(typeName)' is not supported; supported: "
                + LlamaConfig.ModelType.allCases.map(\.rawValue).joined(separator: ", "))
        }
        let hidden: Int = try fields.required("hidden_size")
        let heads: Int = try fields.required("num_attention_heads")
        let kvHeads: Int = try fields.optional("num_key_value_heads") ?? heads
        guard heads > 0, hidden > 0 else { throw fields.error("num_attention_heads", "must be positive") }
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw fields.error("num_key_value_heads", "\(kvHeads) does not divide num_attention_heads \(heads)")
        }
        let headDim: Int = try fields.optional("head_dim") ?? hidden / heads
        guard headDim > 0, headDim % 2 == 0 else { throw fields.error("head_dim", "\(headDim) must be a positive even number") }

        let isGemma = modelType == .gemma2 || modelType == .gemma3Text
        // Gemma names its activation hidden_activation (gelu_pytorch_tanh); the others hidden_act (silu).
        let activationField = isGemma ? "hidden_activation" : "hidden_act"
        let activationName: String = try fields.optional(activationField) ?? (isGemma ? "gelu_pytorch_tanh" : "silu")
        guard let activation = GatedActivation(rawValue: activationName),
              isGemma ? activation == .geluTanh : activation == .silu else {
            throw fields.error(activationField, "'\(activationName)' is not supported (only \(isGemma ? "gelu_pytorch_tanh" : "silu"))")
        }
        if let dropout: Double = try fields.optional("attention_dropout"), dropout != 0 {
            throw fields.error("attention_dropout", "\(dropout) is not supported (only 0)")
        }
        if let mlpBias: Bool = try fields.optional("mlp_bias"), mlpBias {
            throw fields.error("mlp_bias", "true is not supported")
        }

        var qkvBias = false, oBias = false
        switch modelType {
        case .qwen2: qkvBias = true
        case .llama, .mistral, .qwen3, .gemma2, .gemma3Text, .qwen3Moe:
            let bias: Bool = try fields.optional("attention_bias") ?? false
            qkvBias = bias; oBias = bias
        case .phi3, .mixtral: break  // no biases on their linears
        }

        var slidingWindow: Int?
        switch modelType {
        case .mistral, .phi3, .mixtral: slidingWindow = try fields.optional("sliding_window")
        case .qwen2, .qwen3, .qwen3Moe:
            if let use: Bool = try fields.optional("use_sliding_window"), use {
                throw fields.error("use_sliding_window", "\(typeName)'s per-layer sliding window is not supported yet")
            }
            if let types: [String] = try fields.optional("layer_types"),
               let other = types.first(where: { $0 != "full_attention" }) {
                throw fields.error("layer_types", "'\(other)' layers are not supported (only full_attention)")
            }
        case .llama: break
        case .gemma2, .gemma3Text: slidingWindow = try fields.optional("sliding_window")
        }
        if let w = slidingWindow, w <= 0 { throw fields.error("sliding_window", "\(w) must be positive") }
        let layerCount: Int = try fields.required("num_hidden_layers")
        let gemma = isGemma ? try gemmaFields(fields, modelType: modelType, layers: layerCount, slidingWindow: slidingWindow) : nil

        if modelType == .phi3 {
            // Dropout on the residual branches and the embeddings would change the training loss.
            for field in ["resid_pdrop", "embd_pdrop"] {
                if let p: Double = try fields.optional(field), p != 0 {
                    throw fields.error(field, "\(p) is not supported (only 0; set it to 0 in config.json to train "
                                       + "without that dropout)")
                }
            }
        }
        // Partial rotary embeddings (Phi-4-mini's 0.75) rotate only part of each head: not built.
        let rotaryFraction: Double = try fields.optional("partial_rotary_factor")
            ?? (fields.json["rope_parameters"] as? [String: Any])?["partial_rotary_factor"] as? Double ?? 1
        if rotaryFraction != 1 {
            throw fields.error("partial_rotary_factor", "\(rotaryFraction) is not supported (only 1: RoPE over the whole head)")
        }

        let moe = try mixtureOfExperts(fields, modelType: modelType)
        let maxPositions: Int = try fields.optional("max_position_embeddings") ?? 2048
        var config = LlamaConfig(
            modelType: modelType,
            vocabSize: try fields.required("vocab_size"),
            hiddenSize: hidden,
            intermediateSize: try fields.required("intermediate_size"),
            layers: layerCount,
            heads: heads, kvHeads: kvHeads, headDim: headDim,
            rmsNormEps: Float(try fields.optional("rms_norm_eps") ?? 1e-6 as Double),
            rope: try gemma?.rope ?? rope(fields, maxPositions: maxPositions, headDim: headDim),
            maxPositionEmbeddings: maxPositions,
            // Gemma ties its embeddings unless config.json says otherwise (Gemma2Config's default is True).
            tieWordEmbeddings: try fields.optional("tie_word_embeddings") ?? isGemma,
            qkvBias: qkvBias, oBias: oBias, slidingWindow: slidingWindow,
            qkNorm: modelType == .qwen3 || modelType == .gemma3Text || modelType == .qwen3Moe,
            fusedProjections: modelType == .phi3, moe: moe,
            bosTokenId: try fields.optional("bos_token_id"),
            eosTokenId: try fields.firstInt("eos_token_id"))
        config.activation = activation
        if let gemma {
            config.normWeightOffset = 1
            config.scalesEmbeddings = true
            config.sandwichNorms = true
            config.queryPreAttentionScalar = gemma.queryPreAttentionScalar
            config.attentionSoftcap = gemma.attentionSoftcap
            config.finalLogitSoftcap = gemma.finalLogitSoftcap
            config.slidingLayers = gemma.slidingLayers
            config.localRope = gemma.localRope
        }
        return config
    }

    /// What Gemma 2 and Gemma 3 (text) add, as transformers 5's Gemma2Config / Gemma3TextConfig read it:
    /// layer_types (default: Gemma 2 alternates sliding, full, ...; Gemma 3 has 5 sliding layers then a
    /// full one, `sliding_window_pattern` 6), query_pre_attn_scalar, the two softcaps (Gemma 2's
    /// defaults 50 and 30 when absent; Gemma 3 has none by default), and Gemma 3's two RoPEs: the
    /// global layers' (rope_theta, default 1e6, with rope_scaling) and the sliding layers'
    /// (rope_local_base_freq, default 10000), or transformers 5's rope_parameters per layer type.
    private static func gemmaFields(_ fields: Fields, modelType: LlamaConfig.ModelType, layers: Int,
                                    slidingWindow: Int?) throws
        -> (queryPreAttentionScalar: Float, attentionSoftcap: Float?, finalLogitSoftcap: Float?,
            slidingLayers: [Bool], rope: RoPEScaling, localRope: RoPEScaling?) {
        let isGemma2 = modelType == .gemma2
        if let bidirectional: Bool = try fields.optional("use_bidirectional_attention"), bidirectional {
            throw fields.error("use_bidirectional_attention", "true (an embedding model's attention) is not supported")
        }
        let types: [String]
        if let given: [String] = try fields.optional("layer_types") {
            types = given
        } else {
            let pattern: Int = try fields.optional("sliding_window_pattern") ?? (isGemma2 ? 2 : 6)
            guard pattern > 0 else { throw fields.error("sliding_window_pattern", "\(pattern) must be positive") }
            types = (0..<layers).map { ($0 + 1) % pattern != 0 ? "sliding_attention" : "full_attention" }
        }
        guard types.count == layers else {
            throw fields.error("layer_types", "has \(types.count) entries for num_hidden_layers \(layers)")
        }
        if let other = types.first(where: { $0 != "sliding_attention" && $0 != "full_attention" }) {
            throw fields.error("layer_types", "'\(other)' is not supported (only sliding_attention, full_attention)")
        }
        let slidingLayers = types.map { $0 == "sliding_attention" }
        if slidingLayers.contains(true) && slidingWindow == nil {
            throw fields.error("sliding_window", "is missing (layer_types has sliding_attention layers)")
        }
        // Absent from config.json means the config class's default; present as null means none.
        func softcap(_ name: String, default value: Double?) throws -> Float? {
            let cap: Double? = fields.json.keys.contains(name) ? try fields.optional(name) : value
            if let cap, !(cap > 0) { throw fields.error(name, "\(cap) must be positive") }
            return cap.map(Float.init)
        }
        let scalar: Double = try fields.optional("query_pre_attn_scalar") ?? 256
        guard scalar > 0 else { throw fields.error("query_pre_attn_scalar", "\(scalar) must be positive") }

        var rope: RoPEScaling, localRope: RoPEScaling?
        if isGemma2 {
            rope = try Self.rope(fields, maxPositions: 0, headDim: 0)
        } else if let perType = fields.json["rope_parameters"] as? [String: Any], perType["full_attention"] != nil {
            // transformers 5: {"full_attention": {...}, "sliding_attention": {...}}, each a rope_parameters.
            func typed(_ name: String, theta: Double) throws -> RoPEScaling {
                let sub: [String: Any] = try Fields(json: perType, file: fields.file, prefix: "rope_parameters.").optional(name) ?? [:]
                let inner = Fields(json: ["rope_parameters": sub.merging(["rope_theta": sub["rope_theta"] ?? theta]) { a, _ in a }],
                                   file: fields.file)
                do { return try Self.rope(inner, maxPositions: 0, headDim: 0) } catch var error as ConfigError {
                    // name the layer type's entry: rope_parameters.full_attention.rope_type
                    error.field = error.field.map { "rope_parameters.\(name)." + $0.dropFirst("rope_parameters.".count) }
                    throw error
                }
            }
            rope = try typed("full_attention", theta: 1_000_000)
            localRope = try typed("sliding_attention", theta: 10_000)
        } else {
            // transformers 4's fields: rope_theta (+ rope_scaling) for global layers, rope_local_base_freq.
            var global = fields
            if fields.json["rope_theta"] == nil { global.json["rope_theta"] = 1_000_000.0 }
            rope = try Self.rope(global, maxPositions: 0, headDim: 0)
            localRope = RoPEScaling(theta: Float(try fields.optional("rope_local_base_freq") ?? 10_000 as Double))
        }
        for r in [rope] + (localRope.map { [$0] } ?? []) {
            if case .longrope = r.kind { throw fields.error("rope_parameters", "longrope is not supported for Gemma") }
        }
        return (Float(scalar),
                try softcap("attn_logit_softcapping", default: isGemma2 ? 50 : nil),
                try softcap("final_logit_softcapping", default: isGemma2 ? 30 : nil),
                slidingLayers, rope, localRope)
    }

    /// Mixtral's and Qwen3-MoE's experts and router (nil for the dense families). What transformers
    /// computes differently is refused: router jitter (training noise), and Qwen3-MoE's dense layers
    /// between sparse ones (`mlp_only_layers`, `decoder_sparse_step` other than 1).
    private static func mixtureOfExperts(_ fields: Fields, modelType: LlamaConfig.ModelType) throws -> MixtureOfExpertsConfig? {
        var expertsField: String, intermediateField: String
        switch modelType {
        case .mixtral: (expertsField, intermediateField) = ("num_local_experts", "intermediate_size")
        // Qwen3-MoE's own files say num_experts; transformers 5 writes it as num_local_experts.
        case .qwen3Moe:
            (expertsField, intermediateField) = ("num_experts", "moe_intermediate_size")
            if fields.json["num_experts"] == nil && fields.json["num_local_experts"] != nil { expertsField = "num_local_experts" }
        default: return nil
        }
        let experts: Int = try fields.required(expertsField)
        let topK: Int = try fields.required("num_experts_per_tok")
        guard experts > 0 else { throw fields.error(expertsField, "\(experts) must be positive") }
        guard topK > 0, topK <= experts else {
            throw fields.error("num_experts_per_tok", "\(topK) must be between 1 and \(expertsField) (\(experts))")
        }
        let intermediate: Int = try fields.required(intermediateField)
        guard intermediate > 0 else { throw fields.error(intermediateField, "\(intermediate) must be positive") }
        if let jitter: Double = try fields.optional("router_jitter_noise"), jitter != 0 {
            throw fields.error("router_jitter_noise", "\(jitter) is not supported (only 0: no noise on the router input)")
        }
        if modelType == .qwen3Moe {
            if let step: Int = try fields.optional("decoder_sparse_step"), step != 1 {
                throw fields.error("decoder_sparse_step", "\(step) is not supported (only 1: every layer sparse)")
            }
            if let dense: [Int] = try fields.optional("mlp_only_layers"), !dense.isEmpty {
                throw fields.error("mlp_only_layers", "dense layers among the sparse ones are not supported")
            }
        }
        return MixtureOfExpertsConfig(
            experts: experts, topK: topK, intermediateSize: intermediate,
            normalizeTopK: modelType == .mixtral ? true : try fields.optional("norm_topk_prob") ?? false,
            auxLossEnabled: try fields.optional("output_router_logits") ?? false,
            auxLossCoefficient: Float(try fields.optional("router_aux_loss_coef") ?? 0.001 as Double))
    }

    /// transformers 4 writes `rope_theta` + `rope_scaling`; transformers 5 writes
    /// `rope_parameters` holding both.
    private static func rope(_ fields: Fields, maxPositions: Int, headDim: Int) throws -> RoPEScaling {
        let parametersField = fields.json["rope_parameters"] != nil ? "rope_parameters" : "rope_scaling"
        let scaling: [String: Any]? = try fields.optional(parametersField)
        var theta: Double = try fields.optional("rope_theta") ?? 10000
        if let t = scaling?["rope_theta"] as? Double { theta = t }
        guard let scaling else { return RoPEScaling(theta: Float(theta)) }

        let sub = Fields(json: scaling, file: fields.file, prefix: parametersField + ".")
        let type: String = try sub.optional("rope_type") ?? sub.optional("type") ?? "default"
        func factor() throws -> Float {
            let f: Double = try sub.required("factor")
            guard f > 0 else { throw sub.error("factor", "\(f) must be positive") }
            return Float(f)
        }
        switch type {
        case "default": return RoPEScaling(theta: Float(theta))
        case "linear": return RoPEScaling(theta: Float(theta), kind: .linear(factor: try factor()))
        case "dynamic": return RoPEScaling(theta: Float(theta), kind: .dynamic(factor: try factor()))
        case "llama3":
            return RoPEScaling(theta: Float(theta), kind: .llama3(
                factor: try factor(),
                lowFreqFactor: Float(try sub.required("low_freq_factor") as Double),
                highFreqFactor: Float(try sub.required("high_freq_factor") as Double),
                originalMaxPositions: try sub.required("original_max_position_embeddings")))
        case "longrope", "su":
            return RoPEScaling(theta: Float(theta), kind: .longrope(try longrope(fields, sub, maxPositions: maxPositions, headDim: headDim)))
        case "yarn":
            // YaRN blends interpolated and extrapolated frequencies by wavelength: not built.
            throw sub.error("rope_type", "'yarn' is not supported yet; supported: default, linear, dynamic, llama3, longrope")
        default:
            throw sub.error("rope_type", "'\(type)' is not supported; supported: default, linear, dynamic, llama3, longrope")
        }
    }

    /// longrope (`su` before transformers 4.42). The original context is read as transformers 5's
    /// `standardize_rope_params` settles it: a top-level `original_max_position_embeddings` wins
    /// (Phi-3 writes it there, and Phi3Config has it even when absent: 4096); otherwise the one in
    /// the rope parameters, otherwise max_position_embeddings.
    private static func longrope(_ fields: Fields, _ sub: Fields, maxPositions: Int, headDim: Int) throws -> LongRoPE {
        let half = headDim / 2
        func factors(_ name: String) throws -> [Double] {
            guard let list = sub.json[name] else { throw sub.error(name, "is missing") }
            // Double first: a Swift dictionary holds Doubles, JSONSerialization NSNumbers.
            let numbers = (list as? [Any])?.map { ($0 as? Double) ?? ($0 as? NSNumber)?.doubleValue }
            guard let numbers, !numbers.contains(nil) else {
                throw sub.error(name, "expected a list of numbers, found \(list)")
            }
            guard numbers.count == half else {
                throw sub.error(name, "has \(numbers.count) entries; head_dim / 2 = \(half) needed (one per frequency)")
            }
            let values = numbers.map { $0! }
            if let bad = values.first(where: { !($0 > 0) || !$0.isFinite }) {
                throw sub.error(name, "\(bad) must be positive")
            }
            return values
        }
        let original: Int
        if let topLevel: Int = try fields.optional("original_max_position_embeddings") {
            original = topLevel
        } else if (try fields.optional("model_type") as String?) == "phi3" {
            original = 4096
        } else {
            original = try sub.optional("original_max_position_embeddings") ?? maxPositions
        }
        guard original > 0 else {
            throw fields.error("original_max_position_embeddings", "\(original) must be positive")
        }
        let factor: Double? = try sub.optional("factor")
        if let factor, !(factor > 0) { throw sub.error("factor", "\(factor) must be positive") }
        let attentionFactor: Double? = try sub.optional("attention_factor")
        if let attentionFactor, !(attentionFactor > 0) {
            throw sub.error("attention_factor", "\(attentionFactor) must be positive")
        }
        return LongRoPE(shortFactor: try factors("short_factor"), longFactor: try factors("long_factor"),
                        originalMaxPositions: original, factor: factor, attentionFactor: attentionFactor)
    }
}

/// A config.json field we cannot use, with the file and field named.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var field: String?
    public var problem: String
    public var description: String {
        if let field { return "\(file): field '\(field)': \(problem)" }
        return "\(file): \(problem)"
    }
}

/// Typed access to JSON fields with errors that name them.
private struct Fields {
    var json: [String: Any]
    var file: String
    var prefix = ""

    func error(_ field: String, _ problem: String) -> ConfigError {
        ConfigError(file: file, field: prefix + field, problem: problem)
    }

    func optional<T>(_ field: String) throws -> T? {
        guard let value = json[field], !(value is NSNull) else { return nil }
        if let v = value as? T { return v }
        // JSON numbers: accept 1 for 1.0 and 1.0 for 1 when exact.
        if T.self == Double.self, let n = value as? NSNumber, !(value is Bool) { return n.doubleValue as? T }
        if T.self == Int.self, let n = value as? NSNumber, !(value is Bool), n.doubleValue == n.doubleValue.rounded() {
            return n.intValue as? T
        }
        throw error(field, "expected \(T.self), found \(value)")
    }

    func required<T>(_ field: String) throws -> T {
        guard let v: T = try optional(field) else { throw error(field, "is missing") }
        return v
    }

    /// eos_token_id may be a list (Llama 3); the first one is the model's EOS.
    func firstInt(_ field: String) throws -> Int? {
        if let list = json[field] as? [Any] {
            return (list.first as? NSNumber)?.intValue
        }
        return try optional(field)
    }
}
