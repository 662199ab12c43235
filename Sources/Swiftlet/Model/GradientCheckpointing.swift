/// What the forward keeps for the backward.
public enum GradientCheckpointing: String, CaseIterable, Sendable, Codable {
    /// Every layer's activations (fastest, most memory).
    case off
    /// Only each layer's input; the backward recomputes the layer from it (HF's
    /// gradient_checkpointing_enable): activation memory of one layer plus one input per layer.
    case on
    /// As `on`, with the layer inputs moved to pinned host memory until the backward needs them
    /// (Unsloth's "unsloth" mode): device memory no longer grows with depth.
    case offload

    /// Whether layers are recomputed in the backward.
    public var recomputes: Bool { self != .off }
}

/// `gradientCheckpointing: true` reads as in Unsloth's `use_gradient_checkpointing=True`.
extension GradientCheckpointing: ExpressibleByBooleanLiteral {
    public init(booleanLiteral value: Bool) { self = value ? .on : .off }
}
