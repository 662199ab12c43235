/// The sparse MLP of Mixtral and Qwen3-MoE: each token's MLP is the routing-weighted sum of `topK`
/// of `experts` SwiGLU MLPs (hidden → `intermediateSize` → hidden), chosen by a linear router.
/// A configuration of the one decoder (LlamaConfig.moe), not a model of its own.
public struct MixtureOfExpertsConfig: Equatable, Sendable {
    public var experts: Int
    public var topK: Int
    /// Each expert's intermediate size (Mixtral: intermediate_size; Qwen3-MoE: moe_intermediate_size).
    public var intermediateSize: Int
    /// The top-k probabilities divided by their sum (Mixtral always; Qwen3-MoE's norm_topk_prob).
    public var normalizeTopK: Bool
    /// Whether the training loss adds `auxLossCoefficient` times the load-balancing loss
    /// (config.json's `output_router_logits`, as transformers decides it).
    public var auxLossEnabled: Bool
    /// `router_aux_loss_coef`.
    public var auxLossCoefficient: Float

    public init(experts: Int, topK: Int, intermediateSize: Int, normalizeTopK: Bool = true,
                auxLossEnabled: Bool = false, auxLossCoefficient: Float = 0.001) {
        self.experts = experts
        self.topK = topK
        self.intermediateSize = intermediateSize
        self.normalizeTopK = normalizeTopK
        self.auxLossEnabled = auxLossEnabled
        self.auxLossCoefficient = auxLossCoefficient
    }

    /// Parameters of one layer's router and experts.
    public func parameterCount(hidden: Int) -> Int { experts * hidden + experts * 3 * hidden * intermediateSize }
}
