import RealModule

/// RMSNorm as Llama defines it: y = w ⊙ (x · rstd), rstd = 1/√(mean(x²) + ε), per row; with
/// `offset` 1, Gemma's y = (1 + w) ⊙ (x · rstd) (1 + w formed in the math type, as Gemma does in f32).
enum RMSNormKernel {
    static func forward<T: Real & BinaryFloatingPoint>(
        x: UnsafeBufferPointer<T>, weight: UnsafeBufferPointer<T>, offset: T = 0, eps: T,
        out: UnsafeMutableBufferPointer<T>, rstd: UnsafeMutableBufferPointer<T>
    ) {
        let width = weight.count
        parallelFor(x.count / width, grain: 16) { rows in
            for r in rows {
                let base = r * width
                var sum: T = 0
                for j in 0..<width { sum += x[base + j] * x[base + j] }
                let s = 1 / (sum / T(width) + eps).squareRoot()
                rstd[r] = s
                for j in 0..<width { out[base + j] = (offset + weight[j]) * (x[base + j] * s) }
            }
        }
    }

    /// dx += rstd·(w⊙dy) − x·rstd³/width · Σ(w⊙dy⊙x), w standing for offset + w.
    static func backward<T: Real & BinaryFloatingPoint>(
        dOut: UnsafeBufferPointer<T>, x: UnsafeBufferPointer<T>, weight: UnsafeBufferPointer<T>, offset: T = 0,
        rstd: UnsafeBufferPointer<T>, dX: UnsafeMutableBufferPointer<T>
    ) {
        let width = weight.count
        parallelFor(x.count / width, grain: 16) { rows in
            for r in rows {
                let base = r * width, s = rstd[r]
                var dot: T = 0
                for j in 0..<width { dot += (offset + weight[j]) * dOut[base + j] * x[base + j] }
                let c = dot * s * s * s / T(width)
                for j in 0..<width { dX[base + j] += s * (offset + weight[j]) * dOut[base + j] - c * x[base + j] }
            }
        }
    }
}

extension CPUBackend {
    public func rmsNorm(_ x: Tensor, weight: Tensor, weightOffset: Float, eps: Float, into out: Tensor, rstd: Tensor) {
        RMSNormKernel.forward(x: UnsafeBufferPointer(x.floats), weight: UnsafeBufferPointer(weight.floats),
                              offset: weightOffset, eps: eps, out: out.floats, rstd: rstd.floats)
    }

    public func rmsNormBackward(dOut: Tensor, x: Tensor, weight: Tensor, weightOffset: Float, rstd: Tensor,
                                accumulateInto dX: Tensor) {
        RMSNormKernel.backward(dOut: UnsafeBufferPointer(dOut.floats), x: UnsafeBufferPointer(x.floats),
                               weight: UnsafeBufferPointer(weight.floats), offset: weightOffset,
                               rstd: UnsafeBufferPointer(rstd.floats), dX: dX.floats)
    }
}
