/// The trainable low-rank pair of one linear layer: A [r, in], B [out, r], Float32, with their
/// gradients. A reference type: the model's layer and the optimizer share the same parameters.
/// The low-rank path runs in Float32 on every backend (see `Linear`), as PEFT's does.
public final class LoRAAdapter {
    /// Hugging Face module path, e.g. "model.layers.0.self_attn.q_proj"; for an expert, the PEFT
    /// module of the whole 3-D parameter ("model.layers.0.mlp.experts" or ".experts.base_layer").
    public let module: String
    /// For one expert of a 3-D expert parameter: its index and the number of experts. PEFT keeps
    /// the experts' adapters as one pair, A [r·E, in] (expert-major rows) and B [out, r·E] (column
    /// j·E + e), which PEFTAdapter splits and joins.
    public let expert: (index: Int, count: Int)?
    public let scaling: Float
    public let dropout: Float
    public var a: Tensor
    public var b: Tensor
    public var gradA: Tensor
    public var gradB: Tensor

    public var rank: Int { a.shape[0] }
    public var inFeatures: Int { a.shape[1] }
    public var outFeatures: Int { b.shape[0] }

    public init(module: String, a: Tensor, b: Tensor, scaling: Float, dropout: Float,
                expert: (index: Int, count: Int)? = nil) throws {
        precondition(a.shape[0] == b.shape[1], "LoRA A \(a.shape) and B \(b.shape) disagree on r")
        self.module = module
        self.expert = expert
        self.a = a
        self.b = b
        self.scaling = scaling
        self.dropout = dropout
        gradA = try a.backend.zeros(a.shape, .f32)
        gradB = try b.backend.zeros(b.shape, .f32)
    }

    /// PEFT's initialisation: A ~ kaiming_uniform(a=√5) = U(−1/√in, 1/√in), B = 0.
    public static func initialized(module: String, inFeatures: Int, outFeatures: Int, config: LoRAConfig,
                                   generator: inout SplitMix64, on backend: any Backend) throws -> LoRAAdapter {
        try initialized(LoRASite(module: module, inFeatures: inFeatures, outFeatures: outFeatures, rank: config.r,
                                 scaling: config.scaling, expert: nil),
                        config: config, generator: &generator, on: backend)
    }

    public static func initialized(_ site: LoRASite, config: LoRAConfig,
                                   generator: inout SplitMix64, on backend: any Backend) throws -> LoRAAdapter {
        let bound = 1 / Float(site.inFeatures).squareRoot()
        let a = (0..<(site.rank * site.inFeatures)).map { _ in generator.uniform(in: -bound..<bound) }
        return try LoRAAdapter(module: site.module,
                               a: backend.upload(a, [site.rank, site.inFeatures], .f32),
                               b: backend.zeros([site.outFeatures, site.rank], .f32),
                               scaling: site.scaling, dropout: config.dropout, expert: site.expert)
    }

    /// PEFT's tensor names in adapter_model.safetensors.
    public var peftNameA: String { "base_model.model.\(module).lora_A.weight" }
    public var peftNameB: String { "base_model.model.\(module).lora_B.weight" }

    public func zeroGradients() {
        gradA.backend.zero([gradA, gradB])
    }
}

/// Where an adapter goes: its PEFT module, shape, rank and scaling (an expert's fused gate_up gets
/// PEFT's doubled rank and alpha), and the expert it belongs to.
public struct LoRASite {
    public var module: String
    public var inFeatures: Int
    public var outFeatures: Int
    public var rank: Int
    public var scaling: Float
    public var expert: (index: Int, count: Int)?
}

/// A small, fast, seedable generator (SplitMix64): the same seed gives the same stream on every
/// platform, so initialisation and shuffling are reproducible.
public struct SplitMix64: RandomNumberGenerator, Sendable, Codable, Equatable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform Float in the range, from 24 random bits.
    public mutating func uniform(in range: Range<Float>) -> Float {
        let u = Float(next() >> 40) * 0x1p-24
        return range.lowerBound + u * (range.upperBound - range.lowerBound)
    }
}
