import Foundation

/// Writes a model with its LoRA adapters merged (`MergedExport.mergedWeight`: W + scaling·B·A in
/// f32, an NF4 base dequantized first) as one GGUF v3 file that llama.cpp loads, named and laid
/// out as `convert_hf_to_gguf.py` writes it:
///
/// - architecture "llama" for Llama, Mistral and Mixtral (llama.cpp runs them as llama), "qwen2" for Qwen2,
///   "qwen3moe" for Qwen3-MoE (a mixture's router as `ffn_gate_inp`, its experts stacked per layer into
///   `ffn_gate_exps`, `ffn_up_exps`, `ffn_down_exps` [experts, out, in]),
///   "qwen3" for Qwen3 (with `attn_q_norm` / `attn_k_norm`), "phi3" for Phi-3 (the fused qkv_proj and
///   gate_up_proj as `attn_qkv` and `ffn_up`, which llama.cpp splits itself; `attention.sliding_window`),
///   "gemma2" / "gemma3" for Gemma (its four norms as `attn_norm`, `post_attention_norm`, `ffn_norm`,
///   `post_ffw_norm`, every norm weight written as 1 + w as the converter does, the softcaps and the
///   sliding window in the metadata);
/// - `token_embd`, `blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate,
///   ffn_up, ffn_down}`, `output_norm`, `output` (absent when the embeddings are tied), the
///   q/k/v/o biases where the model has them, and `rope_freqs` for Llama 3.1 rope scaling;
/// - for "llama", the rows of q_proj and k_proj (and their biases) permuted within each head
///   from HF's half-split rotary layout to llama.cpp's interleaved one (`LlamaModel.permute`);
/// - norms, biases and rope factors in f32; every 2-D weight in f16, or Q8_0 with `.q8_0` (a
///   weight whose rows are not a multiple of 32 long stays f16, as the converter falls back), or
///   with `.q4_k_m` the types `llama-quantize … Q4_K_M` picks (`q4KMType`), quantized as
///   llama.cpp's reference quantizer does without an importance matrix (`GGMLQ4K`, `GGMLQ6K`), from
///   the f16-rounded weights (the bytes of `llama-quantize` run on the f16 export).
public enum GGUFExport {
    public enum Quant: String, CaseIterable, Sendable {
        case f16, q8_0, q4_k_m
        /// `general.file_type` (llama.cpp's `llama_ftype`).
        var fileType: UInt32 {
            switch self {
            case .f16: return 1
            case .q8_0: return 7
            case .q4_k_m: return 15
            }
        }
    }

    public struct Summary: Sendable {
        public var tensors: Int
        public var mergedModules: Int
        public var bytes: Int
        public var hasTokenizer: Bool
    }

    /// The GGUF tensor name of a Hugging Face weight name, nil for one GGUF has no place for.
    /// `sandwichNorms` (Gemma): post_attention_layernorm is the attention output's norm
    /// (`post_attention_norm`), pre_feedforward_layernorm the MLP's input norm (`ffn_norm`).
    public static func tensorName(_ hf: String, sandwichNorms: Bool = false) -> String? {
        let fixed = ["model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                     "lm_head.weight": "output.weight"]
        if let n = fixed[hf] { return n }
        let parts = hf.split(separator: ".")
        guard parts.count >= 5, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]) else { return nil }
        let rest = parts[3...].joined(separator: ".")
        if sandwichNorms {
            let gemma = ["post_attention_layernorm.weight": "post_attention_norm.weight",
                         "pre_feedforward_layernorm.weight": "ffn_norm.weight",
                         "post_feedforward_layernorm.weight": "post_ffw_norm.weight"]
            if let n = gemma[rest] { return "blk.\(layer).\(n)" }
        }
        let map = ["input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
                   "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
                   "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
                   "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
                   "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
                   "self_attn.v_proj.bias": "attn_v.bias", "self_attn.o_proj.bias": "attn_output.bias",
                   "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
                   "mlp.down_proj.weight": "ffn_down.weight",
                   "self_attn.qkv_proj.weight": "attn_qkv.weight", "mlp.gate_up_proj.weight": "ffn_up.weight",
                   "mlp.gate.weight": "ffn_gate_inp.weight", "block_sparse_moe.gate.weight": "ffn_gate_inp.weight"]
        return map[rest].map { "blk.\(layer).\($0)" } ?? expertTensor(hf)?.name
    }

    /// A mixture's per-expert weight (Mixtral's block_sparse_moe.experts.E.w1/w3/w2, Qwen3-MoE's
    /// mlp.experts.E.gate_proj/up_proj/down_proj): the GGUF tensor that stacks every expert's
    /// (`blk.N.ffn_{gate,up,down}_exps`, [experts, out, in]) and its expert index.
    static func expertTensor(_ hf: String) -> (name: String, expert: Int)? {
        let parts = hf.split(separator: ".")
        guard parts.count == 8, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]),
              parts[3] == "block_sparse_moe" || parts[3] == "mlp", parts[4] == "experts", let expert = Int(parts[5]),
              parts[7] == "weight" else { return nil }
        let kinds = ["w1": "gate", "gate_proj": "gate", "w3": "up", "up_proj": "up", "w2": "down", "down_proj": "down"]
        return kinds[String(parts[6])].map { ("blk.\(layer).ffn_\($0)_exps.weight", expert) }
    }

    /// The architecture name llama.cpp knows the model type by.
    public static func architecture(_ config: LlamaConfig) throws -> String {
        switch config.modelType {
        case .llama, .mistral: return "llama"
        case .qwen2: return "qwen2"
        case .qwen3: return "qwen3"
        case .phi3: return "phi3"
        case .gemma2: return "gemma2"
        case .gemma3Text: return "gemma3"
        case .mixtral: return "llama"  // llama.cpp runs Mixtral as llama with expert tensors
        case .qwen3Moe:
            guard config.moe?.normalizeTopK == true else {
                throw GGUFError.unsupported(field: "config.json norm_topk_prob", value: "false",
                                            reason: "llama.cpp's qwen3moe always renormalises the top-k weights; export --format merged instead")
            }
            return "qwen3moe"
        }
    }

    /// llama.cpp's rotary layout: within each head of `headDim` rows, row 2i + j comes from HF
    /// row j·headDim/2 + i (j ∈ {0, 1}), i.e. `reshape(heads, 2, hd/2, …).swapaxes(1, 2)`.
    public static func permuteRows(_ w: [Float], heads: Int, rowLength: Int) -> [Float] {
        let rows = w.count / rowLength
        precondition(rows % (2 * heads) == 0, "cannot permute \(rows) rows into \(heads) heads")
        let headDim = rows / heads, half = headDim / 2
        var out = [Float](repeating: 0, count: w.count)
        for h in 0..<heads {
            for i in 0..<half {
                for j in 0..<2 {
                    let src = (h * headDim + j * half + i) * rowLength
                    let dst = (h * headDim + 2 * i + j) * rowLength
                    out[dst..<(dst + rowLength)] = w[src..<(src + rowLength)]
                }
            }
        }
        return out
    }

    /// Llama 3.1 rope factors per frequency, as the converter computes its `rope_freqs` tensor.
    static func llama3RopeFactors(_ config: LlamaConfig, factor: Float, low: Float, high: Float, original: Int) -> [Float] {
        let dim = config.headDim
        let base = Double(config.rope.theta)
        let lowWavelen = Double(original) / Double(low), highWavelen = Double(original) / Double(high)
        return stride(from: 0, to: dim, by: 2).map { i -> Float in
            // torch computes the frequencies in f32: 1 / base^(i/dim).
            let freq = Float(1) / Float(pow(Float(base), Float(i) / Float(dim)))
            let wavelen = 2 * Double.pi / Double(freq)
            if wavelen < highWavelen { return 1 }
            if wavelen > lowWavelen { return factor }
            let smooth = (Double(original) / wavelen - Double(low)) / Double(high - low)
            return Float(1 / ((1 - smooth) / Double(factor) + smooth))
        }
    }

    /// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third between.
    static func useMoreBits(_ i: Int, _ n: Int) -> Bool {
        i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
    }

    /// The type llama.cpp's `llama_tensor_get_type` gives a 2-D GGUF tensor under Q4_K_M (no
    /// importance matrix, default parameters): Q6_K for `output.weight` (for `token_embd.weight`
    /// when the embeddings are tied and there is no output tensor), and for `attn_v` / `ffn_down`
    /// of the layers `useMoreBits` picks; Q4_K otherwise. Rows that are not a multiple of 256 long
    /// (llama.cpp then falls back to Q5_0 / Q8_0 types not built here) and Llama 70B's layout
    /// (80 layers: attn_v in Q5_K) are refused.
    public static func q4KMType(_ name: String, rowLength: Int, layers: Int, hasOutput: Bool, arch: String) throws -> GGMLType {
        var type = GGMLType.q4_K
        if name == "output.weight" || (!hasOutput && name == "token_embd.weight") {
            type = .q6_K
        } else if name.hasPrefix("blk."), let layer = Int(name.split(separator: ".")[1]) {
            if name.hasSuffix(".attn_v.weight") {
                if arch == "llama" && layers == 80 {
                    throw GGUFError.unsupported(field: "--quant", value: "q4_k_m",
                                                reason: "llama.cpp gives a 70B Llama's attn_v Q5_K, which is not built here")
                }
                if useMoreBits(layer, layers) { type = .q6_K }
            } else if name.hasSuffix(".ffn_down.weight") && useMoreBits(layer, layers) {
                type = .q6_K
            }
        }
        if arch == "phi3" {
            throw GGUFError.unsupported(field: "--quant", value: "q4_k_m",
                                        reason: "llama.cpp gives Phi-3's fused attn_qkv Q5_K, which is not built here; "
                                            + "use --quant q8_0 or f16")
        }
        if rowLength % GGMLQ4K.blockSize != 0 {
            throw GGUFError.unsupported(field: "--quant", value: "q4_k_m",
                                        reason: "\(name) has rows of \(rowLength) values, not a multiple of 256 "
                                            + "(llama.cpp falls back to other types there); use --quant q8_0 or f16")
        }
        return type
    }

    /// The `general.*` and `<arch>.*` metadata.
    public static func modelMetadata(_ config: LlamaConfig, name: String, quant: Quant) throws -> [(String, GGUFValue)] {
        let arch = try architecture(config)
        var kv: [(String, GGUFValue)] = [
            ("general.architecture", .string(arch)), ("general.type", .string("model")), ("general.name", .string(name)),
            ("\(arch).block_count", .uint32(UInt32(config.layers))),
            ("\(arch).context_length", .uint32(UInt32(config.maxPositionEmbeddings))),
            ("\(arch).embedding_length", .uint32(UInt32(config.hiddenSize))),
            ("\(arch).feed_forward_length", .uint32(UInt32(config.intermediateSize))),
            ("\(arch).attention.head_count", .uint32(UInt32(config.heads))),
            ("\(arch).attention.head_count_kv", .uint32(UInt32(config.kvHeads))),
            ("\(arch).rope.freq_base", .float32(config.rope.theta)),
            ("\(arch).attention.layer_norm_rms_epsilon", .float32(config.rmsNormEps)),
            ("\(arch).attention.key_length", .uint32(UInt32(config.headDim))),
            ("\(arch).attention.value_length", .uint32(UInt32(config.headDim))),
            ("\(arch).rope.dimension_count", .uint32(UInt32(config.headDim))),
            ("\(arch).vocab_size", .uint32(UInt32(config.vocabSize))),
            ("general.file_type", .uint32(quant.fileType)),
            ("general.quantization_version", .uint32(2)),
        ]
        switch config.rope.kind {
        case .none: break
        case let .linear(factor):
            kv += [("\(arch).rope.scaling.type", .string("linear")), ("\(arch).rope.scaling.factor", .float32(factor))]
        case .llama3: break  // carried by the rope_freqs tensor, as the converter does
        case let .longrope(l):
            // As convert_hf_to_gguf.py's Phi3MiniModel: the factors go in rope_factors_long/short
            // tensors and the cos/sin scale in attn_factor. We write the scale transformers uses (a
            // given attention_factor included; the converter recomputes it from max / original,
            // the same number when config.json gives neither factor nor attention_factor).
            guard config.modelType == .phi3 else {
                throw GGUFError.unsupported(field: "config.json rope_scaling", value: "longrope (\(config.modelType.rawValue))",
                                            reason: "llama.cpp reads longrope factors only for phi3; export --format merged instead")
            }
            kv += [("\(arch).rope.scaling.attn_factor",
                    .float32(l.attentionScale(maxPositionEmbeddings: config.maxPositionEmbeddings)))]
        case let .dynamic(factor):
            throw GGUFError.unsupported(field: "config.json rope_scaling", value: "dynamic (factor \(factor))",
                                        reason: "llama.cpp has no dynamic NTK rope scaling; export --format merged instead")
        }
        if config.modelType == .phi3 {
            // As convert_hf_to_gguf.py's Phi3MiniModel: the original context (longrope's, else
            // the context itself), and the window (0: none).
            var original = config.maxPositionEmbeddings
            if case let .longrope(l) = config.rope.kind { original = l.originalMaxPositions }
            kv += [("\(arch).rope.scaling.original_context_length", .uint32(UInt32(original))),
                   ("\(arch).attention.sliding_window", .uint32(UInt32(config.slidingWindow ?? 0)))]
        }
        if config.modelType == .gemma2 || config.modelType == .gemma3Text { kv += try gemmaMetadata(config, arch: arch) }
        if let moe = config.moe {
            kv += [("\(arch).expert_count", .uint32(UInt32(moe.experts))),
                   ("\(arch).expert_used_count", .uint32(UInt32(moe.topK)))]
            if config.modelType == .qwen3Moe {
                kv.append(("\(arch).expert_feed_forward_length", .uint32(UInt32(moe.intermediateSize))))
            }
            if quant == .q4_k_m {
                throw GGUFError.unsupported(field: "--quant", value: "q4_k_m",
                                            reason: "llama.cpp's Q4_K_M choices for expert tensors are not built; use q8_0 or f16")
            }
        }
        if config.modelType == .llama, config.oBias != config.qkvBias {
            throw GGUFError.unsupported(field: "config.json attention_bias", value: "\(config.oBias)",
                                        reason: "mixed q/k/v and o biases have no GGUF layout")
        }
        return kv
    }

    /// Gemma's keys, as convert_hf_to_gguf.py's Gemma2Model / Gemma3Model write them. llama.cpp fixes
    /// what config.json can vary here (which layers slide: every other one from layer 0 for gemma2,
    /// five of every six for gemma3; the sliding layers' RoPE base 10000 for gemma3; the attention
    /// scale, head_dim^-½ or, for the 27B models it knows by their layer count (46, 62),
    /// (hidden/heads)^-½, whatever query_pre_attn_scalar says) and Gemma 3 has no attention softcap
    /// there, so other configurations are refused rather than run wrongly.
    static func gemmaMetadata(_ config: LlamaConfig, arch: String) throws -> [(String, GGUFValue)] {
        let is27B = config.layers == (config.modelType == .gemma2 ? 46 : 62)
        let llamaCppScalar = is27B ? config.hiddenSize / config.heads : config.headDim
        if let scalar = config.queryPreAttentionScalar, scalar != Float(llamaCppScalar) {
            throw GGUFError.unsupported(field: "config.json query_pre_attn_scalar", value: "\(scalar)",
                                        reason: "llama.cpp's \(arch) scales attention by \(llamaCppScalar)^-1/2 for this "
                                            + "shape; export --format merged instead")
        }
        let pattern = config.modelType == .gemma2 ? 2 : 6
        let llamaCppLayers = (0..<config.layers).map { ($0 + 1) % pattern != 0 }
        if (0..<config.layers).map({ config.isSliding(layer: $0) }) != llamaCppLayers {
            throw GGUFError.unsupported(field: "config.json layer_types", value: "\(config.slidingLayers ?? [])",
                                        reason: "llama.cpp's \(arch) slides on \(pattern - 1) of every \(pattern) layers "
                                            + "from layer 0, whatever the file says; export --format merged instead")
        }
        if let local = config.localRope, local != RoPEScaling(theta: 10_000) {
            throw GGUFError.unsupported(field: "config.json rope_local_base_freq", value: "\(local.theta)",
                                        reason: "llama.cpp's gemma3 uses 10000 (unscaled) on its sliding layers")
        }
        var kv: [(String, GGUFValue)] = []
        if let cap = config.attentionSoftcap {
            guard config.modelType == .gemma2 else {
                throw GGUFError.unsupported(field: "config.json attn_logit_softcapping", value: "\(cap)",
                                            reason: "llama.cpp's gemma3 has no attention softcapping")
            }
            kv.append(("\(arch).attn_logit_softcapping", .float32(cap)))
        }
        if let cap = config.finalLogitSoftcap { kv.append(("\(arch).final_logit_softcapping", .float32(cap))) }
        if let window = config.slidingWindow { kv.append(("\(arch).attention.sliding_window", .uint32(UInt32(window)))) }
        return kv
    }

    /// Writes `model` (adapters merged) to the GGUF file `url`. The tokenizer metadata comes from
    /// `tokenizerDirectory` when it holds a tokenizer.json; without one the file has no vocabulary
    /// (gguf-py reads it, llama.cpp will not run it).
    @discardableResult
    public static func write(model: LlamaModel, to url: URL, quant: Quant = .f16, name: String,
                             tokenizerDirectory: URL?) throws -> Summary {
        let config = model.config
        var metadata = try modelMetadata(config, name: name, quant: quant)
        var hasTokenizer = false
        if let dir = tokenizerDirectory, FileManager.default.fileExists(atPath: dir.appendingPathComponent("tokenizer.json").path) {
            metadata += try GGUFVocabulary(directory: dir, vocabSize: config.vocabSize).metadata
            hasTokenizer = true
        }

        let adapters = MergedExport.AdapterLookup(model)
        let arch = try architecture(config)
        typealias Source = (hf: String, weight: FrozenWeight?)
        var sources: [Source] = []
        var infos: [GGUFWriter.TensorInfo] = []
        // Rope factor tensors (f32, head_dim / 2 each), in the converter's order, before the weights.
        var ropeTensors: [(name: String, values: [Float])] = []
        switch config.rope.kind {
        case let .llama3(factor, low, high, original):
            ropeTensors = [("rope_freqs.weight", llama3RopeFactors(config, factor: factor, low: low, high: high, original: original))]
        case let .longrope(l):
            ropeTensors = [("rope_factors_long.weight", l.longFactor.map { Float($0) }),
                           ("rope_factors_short.weight", l.shortFactor.map { Float($0) })]
        case .none, .linear, .dynamic: break
        }
        for tensor in ropeTensors {
            infos.append(.init(name: tensor.name, dims: [tensor.values.count], type: .f32))
            sources.append((tensor.name, nil))
        }
        let ggufNames = Set(model.namedWeights.compactMap { tensorName($0.0, sandwichNorms: config.sandwichNorms) })
        // A mixture's experts: one 3-D tensor per layer and projection, every expert's weight in order.
        var experts: [Int: [(hf: String, weight: FrozenWeight)]] = [:], expertInfo: [String: Int] = [:]
        for (hf, weight) in model.namedWeights {
            guard let gguf = tensorName(hf, sandwichNorms: config.sandwichNorms) else {
                throw GGUFError.invalidTensor(name: hf, reason: "has no GGUF name")
            }
            if let (_, e) = expertTensor(hf) {
                if let i = expertInfo[gguf] {
                    precondition(experts[i]!.count == e, "experts of \(gguf) out of order")
                    experts[i]!.append((hf, weight))
                    continue
                }
                let count = config.moe!.experts
                let dims = Array(weight.shape.dims.reversed()) + [count]
                expertInfo[gguf] = infos.count
                experts[infos.count] = [(hf, weight)]
                infos.append(.init(name: gguf, dims: dims, type: quant == .q8_0 && dims[0] % GGMLQ8_0.blockSize == 0 ? .q8_0 : .f16))
                sources.append((gguf, nil))
                continue
            }
            let dims = Array(weight.shape.dims.reversed())
            let type: GGMLType
            if dims.count == 1 { type = .f32 }
            else if quant == .q4_k_m {
                type = try q4KMType(gguf, rowLength: dims[0], layers: config.layers,
                                    hasOutput: ggufNames.contains("output.weight"), arch: arch)
            }
            else if quant == .q8_0 && dims[0] % GGMLQ8_0.blockSize == 0 { type = .q8_0 }
            else { type = .f16 }
            infos.append(.init(name: gguf, dims: dims, type: type))
            sources.append((hf, weight))
        }
        var merged = 0
        try GGUFWriter.write(metadata: metadata, tensors: infos, to: url) { i in
            let info = infos[i]
            if let parts = experts[i] {
                var floats: [Float] = []
                for (hf, weight) in parts {
                    let (values, adapted) = try adapters.merged(hf, weight)
                    if adapted { merged += 1 }
                    floats += values
                }
                return encode(floats, as: info.type)
            }
            guard let weight = sources[i].weight else { return encode(ropeTensors[i].values, as: .f32) }
            let hf = sources[i].hf
            var (floats, adapted) = try adapters.merged(hf, weight)
            if adapted { merged += 1 }
            // Gemma: llama.cpp multiplies by the norm weight itself, so the converter stores 1 + w (f32).
            if config.normWeightOffset != 0, hf.hasSuffix("norm.weight") {
                floats = floats.map { $0 + config.normWeightOffset }
            }
            if arch == "llama" {
                let rowLength = info.dims.count == 2 ? info.dims[0] : 1
                if hf.contains("self_attn.q_proj.") {
                    floats = permuteRows(floats, heads: config.heads, rowLength: rowLength)
                } else if hf.contains("self_attn.k_proj.") {
                    floats = permuteRows(floats, heads: config.kvHeads, rowLength: rowLength)
                }
            }
            return encode(floats, as: info.type)
        }
        let bytes = ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? Int) ?? 0
        return Summary(tensors: infos.count, mergedModules: merged, bytes: bytes, hasTokenizer: hasTokenizer)
    }

    static func encode(_ floats: [Float], as type: GGMLType) -> [UInt8] {
        switch type {
        case .f32: return SafetensorsWriter.Entry(name: "", floats: floats, shape: [floats.count], dtype: .f32).bytes
        case .f16: return SafetensorsWriter.Entry(name: "", floats: floats, shape: [floats.count], dtype: .f16).bytes
        case .q8_0: return GGMLQ8_0.quantize(floats)
        // Q4_K_M quantizes the f16-rounded weights: the values llama-quantize reads from the f16
        // GGUF of the usual convert → quantize pipeline, so the bytes equal that pipeline's.
        case .q4_K: return GGMLQ4K.quantize(floats.map { Half.float(Half.bits($0)) })
        case .q6_K: return GGMLQ6K.quantize(floats.map { Half.float(Half.bits($0)) })
        }
    }
}
