/// Model shapes by name, the same as the baseline script ../shared/bench/hf_peft.py uses.
extension LlamaConfig {
    public static let presetNames = ["tiny", "tinyllama", "llama2-7b", "mistral-7b", "llama3-8b", "qwen3-8b", "phi3-mini",
                                     "gemma2-9b", "gemma3-4b", "mixtral-8x7b", "qwen3-30b-a3b"]

    public static func preset(_ name: String) throws -> LlamaConfig {
        switch name {
        case "tiny":
            return LlamaConfig(vocabSize: 32000, hiddenSize: 256, intermediateSize: 688, layers: 4, heads: 8, kvHeads: 4,
                               rmsNormEps: 1e-6, maxPositionEmbeddings: 4096)
        case "tinyllama":
            return LlamaConfig(vocabSize: 32000, hiddenSize: 2048, intermediateSize: 5632, layers: 22, heads: 32, kvHeads: 4,
                               rmsNormEps: 1e-6, maxPositionEmbeddings: 4096)
        case "llama2-7b":
            return LlamaConfig(vocabSize: 32000, hiddenSize: 4096, intermediateSize: 11008, layers: 32, heads: 32, kvHeads: 32,
                               rmsNormEps: 1e-6, maxPositionEmbeddings: 4096)
        case "mistral-7b":
            return LlamaConfig(vocabSize: 32000, hiddenSize: 4096, intermediateSize: 14336, layers: 32, heads: 32, kvHeads: 8,
                               rmsNormEps: 1e-6, maxPositionEmbeddings: 4096)
        case "llama3-8b":
            return LlamaConfig(vocabSize: 128_256, hiddenSize: 4096, intermediateSize: 14336, layers: 32, heads: 32, kvHeads: 8,
                               rmsNormEps: 1e-6, rope: RoPEScaling(theta: 500_000), maxPositionEmbeddings: 4096)
        case "qwen3-8b":   // Qwen/Qwen3-8B (bench/hf_peft_family.py builds the same)
            return LlamaConfig(modelType: .qwen3, vocabSize: 151_936, hiddenSize: 4096, intermediateSize: 12288, layers: 36,
                               heads: 32, kvHeads: 8, headDim: 128, rmsNormEps: 1e-6, rope: RoPEScaling(theta: 1_000_000),
                               maxPositionEmbeddings: 40960, qkNorm: true)
        case "phi3-mini":  // microsoft/Phi-3-mini-4k-instruct: fused qkv and gate_up, head dim 96
            return LlamaConfig(modelType: .phi3, vocabSize: 32064, hiddenSize: 3072, intermediateSize: 8192, layers: 32,
                               heads: 32, kvHeads: 32, rmsNormEps: 1e-5, maxPositionEmbeddings: 4096, slidingWindow: 2047,
                               fusedProjections: true)
        case "gemma2-9b":  // google/gemma-2-9b: GeGLU, (1 + w) sandwich norms, head dim 256 (q 4096 wide from hidden
                           // 3584), every other layer a 4096 window, softcaps 50 / 30, tied 256k embeddings
            var c = LlamaConfig(modelType: .gemma2, vocabSize: 256_000, hiddenSize: 3584, intermediateSize: 14336, layers: 42,
                                heads: 16, kvHeads: 8, headDim: 256, rmsNormEps: 1e-6, maxPositionEmbeddings: 8192,
                                tieWordEmbeddings: true, slidingWindow: 4096, bosTokenId: 2, eosTokenId: 1)
            c.activation = .geluTanh
            c.normWeightOffset = 1
            c.scalesEmbeddings = true
            c.sandwichNorms = true
            c.queryPreAttentionScalar = 256
            c.attentionSoftcap = 50
            c.finalLogitSoftcap = 30
            c.slidingLayers = (0..<42).map { $0 % 2 == 0 }
            return c
        case "gemma3-4b":  // google/gemma-3-4b-pt's text model: Gemma 2's layer without softcaps, q/k norms, five of six
                           // layers a 1024 window with their own RoPE (10000), the others 1e6 with linear 8; 262k embeddings
            var c = LlamaConfig(modelType: .gemma3Text, vocabSize: 262_208, hiddenSize: 2560, intermediateSize: 10240,
                                layers: 34, heads: 8, kvHeads: 4, headDim: 256, rmsNormEps: 1e-6,
                                rope: RoPEScaling(theta: 1_000_000, kind: .linear(factor: 8)), maxPositionEmbeddings: 131_072,
                                tieWordEmbeddings: true, slidingWindow: 1024, qkNorm: true, bosTokenId: 2, eosTokenId: 1)
            c.activation = .geluTanh
            c.normWeightOffset = 1
            c.scalesEmbeddings = true
            c.sandwichNorms = true
            c.queryPreAttentionScalar = 256
            c.slidingLayers = (0..<34).map { ($0 + 1) % 6 != 0 }
            c.localRope = RoPEScaling(theta: 10000)
            return c
        case "mixtral-8x7b":  // mistralai/Mixtral-8x7B-v0.1: 8 experts, top-2 (47B parameters, 13B active)
            return LlamaConfig(modelType: .mixtral, vocabSize: 32000, hiddenSize: 4096, intermediateSize: 14336, layers: 32,
                               heads: 32, kvHeads: 8, rmsNormEps: 1e-5, rope: RoPEScaling(theta: 1_000_000),
                               maxPositionEmbeddings: 32768,
                               moe: MixtureOfExpertsConfig(experts: 8, topK: 2, intermediateSize: 14336, normalizeTopK: true,
                                                           auxLossEnabled: false, auxLossCoefficient: 0.02))
        case "qwen3-30b-a3b":  // Qwen/Qwen3-30B-A3B: 128 experts of 768, top-8 renormalised (norm_topk_prob true)
            return LlamaConfig(modelType: .qwen3Moe, vocabSize: 151_936, hiddenSize: 2048, intermediateSize: 6144, layers: 48,
                               heads: 32, kvHeads: 4, headDim: 128, rmsNormEps: 1e-6, rope: RoPEScaling(theta: 1_000_000),
                               maxPositionEmbeddings: 40960, qkNorm: true,
                               moe: MixtureOfExpertsConfig(experts: 128, topK: 8, intermediateSize: 768, normalizeTopK: true,
                                                           auxLossEnabled: false, auxLossCoefficient: 0.001))
        default:
            throw ConfigError(file: "--arch", field: nil,
                              problem: "'\(name)' is not a known shape; choose from " + presetNames.joined(separator: ", "))
        }
    }
}
