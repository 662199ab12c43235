import RealModule

/// Gemma 2's tanh softcapping, c = cap·tanh(z / cap): attention scores (attn_logit_softcapping)
/// and final logits (final_logit_softcapping), computed as transformers does (divide, tanh,
/// multiply). The attention kernels and the cross-entropy call it; the backward multiplies by
/// dc/dz = 1 − tanh²(z / cap) = 1 − (c / cap)².
enum LogitSoftcap {
    @inline(__always)
    static func apply<T: Real & BinaryFloatingPoint>(_ z: T, cap: T) -> T {
        T.tanh(z / cap) * cap
    }

    @inline(__always)
    static func derivative<T: Real & BinaryFloatingPoint>(capped c: T, cap: T) -> T {
        let t = c / cap
        return 1 - t * t
    }

    /// Caps logits read back on the host (evaluation and generation's logits): the same formula.
    static func apply(_ values: inout [Float], cap: Float?) {
        guard let cap else { return }
        for i in values.indices { values[i] = apply(values[i], cap: cap) }
    }
}
