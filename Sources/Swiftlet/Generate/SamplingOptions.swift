/// How the next token is chosen, with the meanings of transformers' GenerationConfig.
/// Temperature 0 (or nil) is greedy: the argmax after the repetition penalty.
public struct SamplingOptions: Sendable {
    public var temperature: Float = 0
    /// Keep the k most likely tokens (0: off).
    public var topK = 0
    /// Keep the smallest set of tokens whose probability reaches p (1: off).
    public var topP: Float = 1
    /// Drop tokens less likely than minP × the top token's probability (0: off).
    public var minP: Float = 0
    /// > 1 discourages tokens already in the prompt or the output (1: off).
    public var repetitionPenalty: Float = 1
    public var seed: UInt64 = 0

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, minP: Float = 0,
                repetitionPenalty: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature; self.topK = topK; self.topP = topP; self.minP = minP
        self.repetitionPenalty = repetitionPenalty; self.seed = seed
    }

    public var isGreedy: Bool { temperature <= 0 }

    public func validate() throws {
        if temperature < 0 { throw GenerationError.invalidOption("temperature must be ≥ 0, got \(temperature)") }
        if topK < 0 { throw GenerationError.invalidOption("top-k must be ≥ 0, got \(topK)") }
        if !(topP > 0 && topP <= 1) { throw GenerationError.invalidOption("top-p must be in (0, 1], got \(topP)") }
        if !(minP >= 0 && minP <= 1) { throw GenerationError.invalidOption("min-p must be in [0, 1], got \(minP)") }
        if !(repetitionPenalty > 0) {
            throw GenerationError.invalidOption("repetition penalty must be > 0, got \(repetitionPenalty)")
        }
    }
}
