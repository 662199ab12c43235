/// A frozen linear layer y = x Wᵀ (+ b), with an optional LoRA path
/// y += scaling · dropout(x) Aᵀ Bᵀ. Forward and backward side by side; the backward yields the
/// input gradient and the LoRA gradients, never a gradient of W.
public struct Linear {
    /// [out, in], as Hugging Face stores it.
    public var weight: Tensor
    public var bias: Tensor?
    public var lora: LoRAAdapter?

    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    /// What the backward needs from the forward.
    public struct Saved {
        var input: Tensor
        /// dropout(x) when dropout is on (else the input itself).
        var loraInput: Tensor?
        var dropoutMask: Tensor?
        /// x Aᵀ, [tokens, r]
        var lowRank: Tensor?
    }

    /// y = forward(x); `dropoutSeed` draws the dropout mask (training only).
    public func forward(_ x: Tensor, dropoutSeed: UInt64? = nil) throws -> (Tensor, Saved) {
        let backend = x.backend
        let tokens = x.shape[0]
        let y = try backend.zeros([tokens, outFeatures], backend.computeType)
        backend.matmul(x, transposeA: false, weight, transposeB: true, into: y, alpha: 1, beta: 0)
        if let bias { backend.addBias(bias, into: y) }
        var saved = Saved(input: x)
        if let lora {
            var loraInput = x
            if let seed = dropoutSeed, lora.dropout > 0 {
                loraInput = try backend.zeros(x.shape, x.dtype)
                backend.copy(x, into: loraInput)
                let mask = try backend.zeros(x.shape, x.dtype)
                backend.dropout(loraInput, probability: lora.dropout, seed: seed, mask: mask)
                saved.dropoutMask = mask
                saved.loraInput = loraInput
            }
            let z = try backend.zeros([tokens, lora.rank], backend.computeType)
            backend.matmul(loraInput, transposeA: false, lora.aCompute, transposeB: true, into: z, alpha: 1, beta: 0)
            backend.matmul(z, transposeA: false, lora.bCompute, transposeB: true, into: y, alpha: lora.scaling, beta: 1)
            saved.lowRank = z
        }
        return (y, saved)
    }

    /// Accumulates the LoRA gradients and adds dL/dx into `dX` (or returns a new tensor).
    @discardableResult
    public func backward(_ dY: Tensor, saved: Saved, accumulateInto dX: Tensor?) throws -> Tensor {
        let backend = dY.backend
        let tokens = dY.shape[0]
        let dInput = try dX ?? backend.zeros([tokens, inFeatures], backend.computeType)
        backend.matmul(dY, transposeA: false, weight, transposeB: false, into: dInput, alpha: 1, beta: 1)
        if let lora, let z = saved.lowRank {
            let x = saved.loraInput ?? saved.input
            // dB += s · dYᵀ z ;  dz = s · dY B ;  dA += dzᵀ x ;  dx += (dz A) ⊙ mask
            backend.matmul(dY, transposeA: true, z, transposeB: false, into: lora.gradB, alpha: lora.scaling, beta: 1)
            let dz = try backend.zeros([tokens, lora.rank], backend.computeType)
            backend.matmul(dY, transposeA: false, lora.bCompute, transposeB: false, into: dz, alpha: lora.scaling, beta: 0)
            backend.matmul(dz, transposeA: true, x, transposeB: false, into: lora.gradA, alpha: 1, beta: 1)
            if let mask = saved.dropoutMask {
                let dLoRAInput = try backend.zeros([tokens, inFeatures], backend.computeType)
                backend.matmul(dz, transposeA: false, lora.aCompute, transposeB: false, into: dLoRAInput, alpha: 1, beta: 0)
                backend.multiply(dLoRAInput, by: mask)
                backend.add(dLoRAInput, into: dInput, alpha: 1)
            } else {
                backend.matmul(dz, transposeA: false, lora.aCompute, transposeB: false, into: dInput, alpha: 1, beta: 1)
            }
        }
        return dInput
    }
}
