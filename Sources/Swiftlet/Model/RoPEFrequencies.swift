import Foundation

/// Inverse frequencies of rotary embeddings, computed in Float32 in the same order as
/// transformers' `ROPE_INIT_FUNCTIONS`, so cos/sin match PyTorch to the last bits.
public enum RoPEFrequencies {
    /// inv_freq[i] = 1 / theta^(2i/d), then the scaling variant. `sequenceLength` is the longest
    /// position + 1 of the batch (dynamic scaling depends on it). `rope` is config.rope unless given
    /// (Gemma 3's sliding layers have their own).
    public static func inverse(_ config: LlamaConfig, rope: RoPEScaling? = nil, sequenceLength: Int) -> [Float] {
        let rope = rope ?? config.rope
        let dim = config.headDim
        var theta = rope.theta
        if case let .dynamic(factor) = rope.kind, sequenceLength > config.maxPositionEmbeddings {
            // NTK-aware: theta · ((factor · len / max) − (factor − 1))^(d / (d − 2))
            let ratio = factor * Float(sequenceLength) / Float(config.maxPositionEmbeddings) - (factor - 1)
            theta *= powf(ratio, Float(dim) / Float(dim - 2))
        }
        var inv = stride(from: 0, to: dim, by: 2).map { 1 / powf(theta, Float($0) / Float(dim)) }
        switch rope.kind {
        case .none, .dynamic: break
        case let .longrope(longrope):
            // 1 / (ext · theta^(2i/d)): the product first, as transformers does, for the same bits.
            let ext = longrope.factors(sequenceLength: sequenceLength)
            inv = stride(from: 0, to: dim, by: 2).enumerated().map { i, twice in
                1 / (ext[i] * powf(theta, Float(twice) / Float(dim)))
            }
        case let .linear(factor): inv = inv.map { $0 / factor }
        case let .llama3(factor, low, high, original):
            let lowWavelen = Float(original) / low, highWavelen = Float(original) / high
            inv = inv.map { f in
                let wavelen = 2 * Float.pi / f
                if wavelen < highWavelen { return f }
                if wavelen > lowWavelen { return f / factor }
                let smooth = (Float(original) / wavelen - low) / (high - low)
                return (1 - smooth) * f / factor + smooth * f
            }
        }
        return inv
    }

    /// What cos and sin are multiplied by (transformers' `attention_scaling`): 1 except longrope.
    /// Multiplying both scales q·k by its square, which is how longrope tempers attention.
    public static func attentionScale(_ config: LlamaConfig, rope: RoPEScaling? = nil) -> Float {
        if case let .longrope(longrope) = (rope ?? config.rope).kind {
            return longrope.attentionScale(maxPositionEmbeddings: config.maxPositionEmbeddings)
        }
        return 1
    }

    /// cos and sin tables for positions 0..<positions, scaled by `attentionScale`. The RoPE
    /// kernels (CPU and CUDA) multiply by these entries as they are, so the scale needs nothing
    /// there; their backward (sin negated) is the transpose, still right with the scale.
    public static func table(_ config: LlamaConfig, rope: RoPEScaling? = nil, positions: Int, sequenceLength: Int,
                             on backend: any Backend) throws -> RoPETable {
        let inv = inverse(config, rope: rope, sequenceLength: sequenceLength)
        let scale = attentionScale(config, rope: rope)
        let half = inv.count
        var cosines = [Float](repeating: 0, count: positions * half)
        var sines = cosines
        for p in 0..<positions {
            for i in 0..<half {
                let angle = Float(p) * inv[i]
                cosines[p * half + i] = cosf(angle) * scale
                sines[p * half + i] = sinf(angle) * scale
            }
        }
        return RoPETable(cos: try backend.upload(cosines, [positions, half], .f32),
                         sin: try backend.upload(sines, [positions, half], .f32),
                         headDim: config.headDim)
    }
}
