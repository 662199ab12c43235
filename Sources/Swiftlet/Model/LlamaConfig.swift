/// The shape and numerics of a Llama-family decoder. Llama, Mistral, Qwen2, Qwen3, Phi-3, Mixtral and
/// Qwen3-MoE are variations of it (GQA, sliding window, q/k/v biases, tied embeddings, per-head q/k
/// norms, fused projections, a mixture of experts in place of the MLP), not separate models.
public struct LlamaConfig: Equatable, Sendable {
    /// config.json's `model_type` values Swiftlet runs.
    public enum ModelType: String, CaseIterable, Sendable { case llama, mistral, qwen2, qwen3, phi3, mixtral, qwen3Moe = "qwen3_moe" }

    public var modelType: ModelType
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var rmsNormEps: Float
    public var rope: RoPEScaling
    public var maxPositionEmbeddings: Int
    public var tieWordEmbeddings: Bool
    /// Biases on q_proj, k_proj and v_proj (Qwen2; Llama's attention_bias also puts one on o_proj).
    public var qkvBias: Bool
    public var oBias: Bool
    /// Mistral, Phi-3: a query sees at most this many keys (itself included).
    public var slidingWindow: Int?
    /// Qwen3: RMSNorm over head_dim on every head of q and k before RoPE (q_norm, k_norm).
    public var qkNorm: Bool
    /// Phi-3: q, k, v in one linear (qkv_proj) and gate, up in one (gate_up_proj).
    public var fusedProjections: Bool
    /// Mixtral, Qwen3-MoE: every layer's MLP is a routed mixture of experts.
    public var moe: MixtureOfExpertsConfig?
    public var bosTokenId: Int?
    public var eosTokenId: Int?

    public init(modelType: ModelType = .llama, vocabSize: Int, hiddenSize: Int, intermediateSize: Int,
                layers: Int, heads: Int, kvHeads: Int? = nil, headDim: Int? = nil,
                rmsNormEps: Float = 1e-5, rope: RoPEScaling = RoPEScaling(theta: 10000),
                maxPositionEmbeddings: Int = 2048, tieWordEmbeddings: Bool = false,
                qkvBias: Bool = false, oBias: Bool = false, slidingWindow: Int? = nil,
                qkNorm: Bool = false, fusedProjections: Bool = false, moe: MixtureOfExpertsConfig? = nil,
                bosTokenId: Int? = 1, eosTokenId: Int? = 2) {
        self.modelType = modelType
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads ?? heads
        self.headDim = headDim ?? hiddenSize / heads
        self.rmsNormEps = rmsNormEps
        self.rope = rope
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.tieWordEmbeddings = tieWordEmbeddings
        self.qkvBias = qkvBias
        self.oBias = oBias
        self.slidingWindow = slidingWindow
        self.qkNorm = qkNorm
        self.fusedProjections = fusedProjections
        self.moe = moe
        self.bosTokenId = bosTokenId
        self.eosTokenId = eosTokenId
    }

    public var qWidth: Int { heads * headDim }
    public var kvWidth: Int { kvHeads * headDim }

    /// Number of parameters of the base model.
    public var parameterCount: Int {
        let attention = hiddenSize * qWidth * 2 + hiddenSize * kvWidth * 2
        let biases = (qkvBias ? qWidth + 2 * kvWidth : 0) + (oBias ? hiddenSize : 0)
        let mlp = moe?.parameterCount(hidden: hiddenSize) ?? 3 * hiddenSize * intermediateSize
        let perLayer = attention + biases + mlp + 2 * hiddenSize + (qkNorm ? 2 * headDim : 0)
        return layers * perLayer + vocabSize * hiddenSize * (tieWordEmbeddings ? 1 : 2) + hiddenSize
    }
}

/// Rotary embedding frequencies: base theta and the scaling variants of Hugging Face's
/// `rope_scaling` (`rope_parameters` in transformers 5).
public struct RoPEScaling: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case none
        /// Positions divided by the factor.
        case linear(factor: Float)
        /// NTK-aware: theta grows once a batch runs past the trained context.
        case dynamic(factor: Float)
        /// Llama 3.1: low frequencies scaled, high kept, a smooth blend between.
        case llama3(factor: Float, lowFreqFactor: Float, highFreqFactor: Float, originalMaxPositions: Int)
        /// Phi-3 128k: per-frequency factors, short or long by sequence length, and cos/sin scaled.
        case longrope(LongRoPE)
    }

    public var theta: Float
    public var kind: Kind

    public init(theta: Float, kind: Kind = .none) {
        self.theta = theta
        self.kind = kind
    }
}
