import Foundation

/// Inverse frequencies of rotary embeddings, computed in Float32 in the same order as
/// transformers' `ROPE_INIT_FUNCTIONS`, so cos/sin match PyTorch to the last bits.
public enum RoPEFrequencies {
    /// inv_freq[i] = 1 / theta^(2i/d), then the scaling variant. `sequenceLength` is the longest
    /// position + 1 of the batch (dynamic scaling depends on it).
    public static func inverse(_ config: LlamaConfig, sequenceLength: Int) -> [Float] {
        let dim = config.headDim
        var theta = config.rope.theta
        if case let .dynamic(factor) = config.rope.kind, sequenceLength > config.maxPositionEmbeddings {
            // NTK-aware: theta · ((factor · len / max) − (factor − 1))^(d / (d − 2))
            let ratio = factor * Float(sequenceLength) / Float(config.maxPositionEmbeddings) - (factor - 1)
            theta *= powf(ratio, Float(dim) / Float(dim - 2))
        }
        var inv = stride(from: 0, to: dim, by: 2).map { 1 / powf(theta, Float($0) / Float(dim)) }
        switch config.rope.kind {
        case .none, .dynamic: break
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

    /// cos and sin tables for positions 0..<positions.
    public static func table(_ config: LlamaConfig, positions: Int, sequenceLength: Int,
                             on backend: any Backend) throws -> RoPETable {
        let inv = inverse(config, sequenceLength: sequenceLength)
        let half = inv.count
        var cosines = [Float](repeating: 0, count: positions * half)
        var sines = cosines
        for p in 0..<positions {
            for i in 0..<half {
                let angle = Float(p) * inv[i]
                cosines[p * half + i] = cosf(angle)
                sines[p * half + i] = sinf(angle)
            }
        }
        return RoPETable(cos: try backend.upload(cosines, [positions, half], .f32),
                         sin: try backend.upload(sines, [positions, half], .f32),
                         headDim: config.headDim)
    }
}
