import Foundation

/// The shape and numerics of a Llama-family decoder. Llama, Mistral, Qwen2, Qwen3, Phi-3, Gemma 2,
/// Gemma 3, Mixtral and Qwen3-MoE are variations of it (GQA, sliding window, q/k/v biases, tied
/// embeddings, per-head q/k norms, fused projections, GeGLU, (1 + w) norms around both sublayers,
/// softcapping, a mixture of experts in place of the MLP), not separate models.
public struct LlamaConfig: Equatable, Sendable {
    /// config.json's `model_type` values Swiftlet runs.
    public enum ModelType: String, CaseIterable, Sendable {
        case llama, mistral, qwen2, qwen3, phi3, gemma2
        case gemma3Text = "gemma3_text"
        case mixtral
        case qwen3Moe = "qwen3_moe"
    }

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

    /// The MLP's gate activation: SiLU (SwiGLU) or Gemma's tanh-approximated GELU (GeGLU).
    public var activation: GatedActivation = .silu
    /// Gemma: every RMSNorm scales by (offset + w) = (1 + w), added in f32 inside the op.
    public var normWeightOffset: Float = 0
    /// Gemma: the embeddings are multiplied by √hidden, rounded to the compute type first (as
    /// transformers casts the normalizer to the hidden states' dtype).
    public var scalesEmbeddings = false
    /// Gemma: RMSNorms on the attention output and on the MLP output, before each residual add
    /// (post_attention_layernorm and post_feedforward_layernorm; the pre-MLP norm is then
    /// pre_feedforward_layernorm).
    public var sandwichNorms = false
    /// Gemma: query_pre_attn_scalar; attention scores are scaled by its −½ power instead of head_dim's.
    public var queryPreAttentionScalar: Float?
    /// Gemma 2: attention scores become cap·tanh(s / cap) before the mask and softmax.
    public var attentionSoftcap: Float?
    /// Gemma 2: logits become cap·tanh(z / cap) before the loss and sampling.
    public var finalLogitSoftcap: Float?
    /// Gemma 2/3 (`layer_types`): which layers use `slidingWindow`; nil: every layer does.
    public var slidingLayers: [Bool]?
    /// Gemma 3: the sliding layers' own RoPE (rope_local_base_freq); nil: every layer uses `rope`.
    public var localRope: RoPEScaling?

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

    /// Whether layer `i` attends within `slidingWindow` (every layer when `slidingLayers` is nil).
    public func isSliding(layer i: Int) -> Bool {
        slidingWindow != nil && (slidingLayers?[i] ?? true)
    }

    /// The RoPE of layer `i`: Gemma 3's local one on sliding layers, else `rope`.
    public func rope(layer i: Int) -> RoPEScaling {
        if let localRope, isSliding(layer: i) { return localRope }
        return rope
    }

    /// The factor of q·k before the softmax: head_dim^−½, or Gemma's query_pre_attn_scalar^−½
    /// (taken in Double and rounded once, as Python's `x**-0.5` then torch's f32 multiply).
    public var attentionScale: Float {
        guard let scalar = queryPreAttentionScalar else { return 1 / Float(headDim).squareRoot() }
        return Float(Foundation.pow(Double(scalar), -0.5))
    }

    /// Gemma's embedding normalizer √hidden, rounded to the activations' type (transformers casts
    /// it to the embedding dtype: 2304^½ = 48 exactly, but 3584^½ becomes 59.75 in bf16, not 59.866).
    public func embeddingScale(_ dtype: DType) -> Float {
        let scale = Float(Double(hiddenSize).squareRoot())
        switch dtype {
        case .bf16: return BFloat16.round(scale)
        case .f16: return Half.float(Half.bits(scale))
        default: return scale
        }
    }

    public var qWidth: Int { heads * headDim }
    public var kvWidth: Int { kvHeads * headDim }

    /// Number of parameters of the base model.
    public var parameterCount: Int {
        let attention = hiddenSize * qWidth * 2 + hiddenSize * kvWidth * 2
        let biases = (qkvBias ? qWidth + 2 * kvWidth : 0) + (oBias ? hiddenSize : 0)
        let mlp = moe?.parameterCount(hidden: hiddenSize) ?? 3 * hiddenSize * intermediateSize
        let norms = (sandwichNorms ? 4 : 2) * hiddenSize + (qkNorm ? 2 * headDim : 0)
        let perLayer = attention + biases + mlp + norms
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
