import Foundation

/// Phi-3's `longrope` rope scaling (`su` in older configs), as transformers 5's
/// `_compute_longrope_parameters` computes it: every frequency is divided by its own factor, from
/// `longFactor` once a forward's sequence runs past `originalMaxPositions`, from `shortFactor`
/// otherwise; cos and sin are multiplied by an attention factor whatever the length.
/// `factor` and `attentionFactor` are kept as config.json gave them (nil: absent), so that the
/// config is written back as it was read.
public struct LongRoPE: Equatable, Sendable {
    /// One divisor per frequency (head_dim / 2 each), in double as config.json has them (written
    /// back digit for digit); used in float32, as transformers' tensors of them are.
    public var shortFactor: [Double]
    public var longFactor: [Double]
    /// The pretraining context: longer sequences use `longFactor`.
    public var originalMaxPositions: Int
    /// rope_parameters.factor as given; absent, transformers uses max_position_embeddings / original.
    public var factor: Double?
    /// rope_parameters.attention_factor as given; absent, it follows from the factor.
    public var attentionFactor: Double?

    public init(shortFactor: [Double], longFactor: [Double], originalMaxPositions: Int,
                factor: Double? = nil, attentionFactor: Double? = nil) {
        self.shortFactor = shortFactor
        self.longFactor = longFactor
        self.originalMaxPositions = originalMaxPositions
        self.factor = factor
        self.attentionFactor = attentionFactor
    }

    /// The factors a forward over positions 0..<sequenceLength uses. transformers decides on
    /// max(position_ids) + 1 of the whole batch (`longrope_frequency_update`), strictly greater
    /// than the original length for the long ones.
    public func factors(sequenceLength: Int) -> [Float] {
        (sequenceLength > originalMaxPositions ? longFactor : shortFactor).map { Float($0) }
    }

    /// What cos and sin are multiplied by: attention_factor if given, else
    /// sqrt(1 + ln(factor) / ln(original)) for factor > 1 and 1 otherwise, computed in double as
    /// Python does, then used in float32 as the cos/sin tensors are.
    public func attentionScale(maxPositionEmbeddings: Int) -> Float {
        if let attentionFactor { return Float(attentionFactor) }
        let factor = self.factor ?? Double(maxPositionEmbeddings) / Double(originalMaxPositions)
        guard factor > 1 else { return 1 }
        return Float((1 + log(factor) / log(Double(originalMaxPositions))).squareRoot())
    }
}
