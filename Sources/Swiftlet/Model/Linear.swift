/// A frozen linear layer y = x Wᵀ (+ b), with an optional LoRA path
/// y += scaling · dropout(x) Aᵀ Bᵀ. Forward and backward side by side; the backward yields the
/// input gradient and the LoRA gradients, never a gradient of W.
///
/// The LoRA path runs in Float32 whatever the compute type, as PEFT does (it casts x to the
/// adapters' fp32 and adds the result before rounding once): on a bf16 backend x and dY are
/// widened to f32 for the low-rank products, so the adapter gradients carry no bf16 rounding of
/// their own.
public struct Linear {
    /// [out, in], as Hugging Face stores it; dense or NF4.
    public var weight: FrozenWeight
    public var bias: Tensor?
    public var lora: LoRAAdapter?

    public init(weight: FrozenWeight, bias: Tensor? = nil, lora: LoRAAdapter? = nil) {
        self.weight = weight
        self.bias = bias
        self.lora = lora
    }

    public init(weight: Tensor, bias: Tensor? = nil, lora: LoRAAdapter? = nil) {
        self.init(weight: .dense(weight), bias: bias, lora: lora)
    }

    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    /// What the backward needs from the forward.
    public struct Saved {
        /// x; nil while the owner holds it elsewhere or recomputes it (the decoder's input norm output,
        /// `ProjectionGroup.Saved.dropInput`), set again before the backward.
        var input: Tensor?
        /// f32 dropout mask scaled by 1/(1-p), when dropout is on.
        var dropoutMask: Tensor?
        /// dropout(x) Aᵀ, [tokens, r], f32
        var lowRank: Tensor?
    }

    /// y = forward(x); `dropoutSeed` draws the dropout mask (training only).
    public func forward(_ x: Tensor, dropoutSeed: UInt64? = nil) throws -> (Tensor, Saved) {
        let backend = x.backend
        if fusedAdapter(dropoutSeed: dropoutSeed) != nil {
            // z = x Aᵀ and y += s · z Bᵀ straight from x's storage type: no f32 copy of x.
            return try forward(x, lowRank: try saved(for: x, dropoutSeed: dropoutSeed).lowRank!)
        }
        let y = try baseForward(x)
        let saved = try saved(for: x, dropoutSeed: dropoutSeed)
        if let lora, let z = saved.lowRank {
            if y.dtype == .f32 {
                backend.matmul(z, transposeA: false, lora.b, transposeB: true, into: y, alpha: lora.scaling, beta: 1)
            } else {
                let delta = try backend.empty(y.shape, .f32)
                backend.matmul(z, transposeA: false, lora.b, transposeB: true, into: delta, alpha: 1, beta: 0)
                backend.add(delta, into: y, alpha: lora.scaling)
            }
        }
        return (y, saved)
    }

    /// What the backward of `forward(x, dropoutSeed:)` needs, without its output: x, and with an
    /// adapter z = dropout(x) Aᵀ (f32) and the dropout mask. Gradient checkpointing's recompute of a
    /// layer's last linear, whose output nothing reads, takes this instead of the forward.
    func saved(for x: Tensor, dropoutSeed: UInt64?) throws -> Saved {
        let backend = x.backend
        guard let lora else { return Saved(input: x) }
        let z = try backend.empty([x.shape[0], lora.rank], .f32)
        if fusedAdapter(dropoutSeed: dropoutSeed) != nil {
            backend.loraDown(x, lora.a, weightTransposed: false, into: z, alpha: 1)
            return Saved(input: x, lowRank: z)
        }
        var mask: Tensor?
        var loraInput = try Self.widened(x, mask: nil)
        if let seed = dropoutSeed, lora.dropout > 0 {
            // dropout(x) in a copy of x in f32; the mask is kept for the backward.
            if loraInput.buffer === x.buffer {
                loraInput = try backend.empty(x.shape, .f32)
                backend.copy(x, into: loraInput)
            }
            let m = try backend.empty(x.shape, .f32)
            backend.dropout(loraInput, probability: lora.dropout, seed: seed, mask: m)
            mask = m
        }
        backend.matmul(loraInput, transposeA: false, lora.a, transposeB: true, into: z, alpha: 1, beta: 0)
        return Saved(input: x, dropoutMask: mask, lowRank: z)
    }

    /// The fused path's forward with z = x Aᵀ already computed (`ProjectionGroup` computes the z of
    /// linears sharing x at once): the base GEMM, then y += s · z Bᵀ while y is still in the GPU's
    /// L2 cache.
    func forward(_ x: Tensor, lowRank z: Tensor) throws -> (Tensor, Saved) {
        guard let lora else { preconditionFailure("Linear.forward(lowRank:) without an adapter") }
        let y = try baseForward(x)
        x.backend.loraUpAdd(z, lora.b, weightTransposed: false, scale: lora.scaling, into: y)
        return (y, Saved(input: x, lowRank: z))
    }

    /// The frozen weight's part of y, x Wᵀ (+ b), in a new tensor (beta 0: the GEMM writes every
    /// element without reading it).
    func baseForward(_ x: Tensor) throws -> Tensor {
        let backend = x.backend
        let y = try backend.empty([x.shape[0], outFeatures], backend.computeType)
        backend.matmul(x, transposeA: false, try weight.materialized(), transposeB: true, into: y, alpha: 1, beta: 0)
        if let bias { backend.addBias(bias, into: y) }
        return y
    }

    /// Whether the LoRA path runs on the fused low-rank ops (`Backend.loraDown` / `loraUpAdd` /
    /// `loraGradient`): without a dropout mask and up to their largest rank. Otherwise x and dY are
    /// widened to f32 copies and the products go through the GEMM (the same sums, another order).
    /// `SWIFTLET_LORA=gemm` keeps the GEMM path everywhere (for comparisons).
    static func usesFusedLoRA(_ lora: LoRAAdapter) -> Bool {
        lora.rank <= LoRAShapes.maxRank && !forceGEMMLoRA
    }

    /// Whether `lora` takes the fused low-rank ops in training as well as in evaluation: no dropout
    /// (its mask sends the products through the GEMM path) and a rank they take.
    static func takesFusedOps(_ lora: LoRAAdapter) -> Bool { lora.dropout == 0 && usesFusedLoRA(lora) }

    /// The adapter when this forward takes the fused low-rank ops: no dropout mask to draw, and a
    /// rank they take.
    func fusedAdapter(dropoutSeed: UInt64?) -> LoRAAdapter? {
        guard let lora, dropoutSeed == nil || lora.dropout == 0, Self.usesFusedLoRA(lora) else { return nil }
        return lora
    }

    /// Whether the backward of this forward takes the fused low-rank ops.
    func runsFused(_ saved: Saved) -> Bool {
        guard let lora else { return false }
        return saved.lowRank != nil && saved.dropoutMask == nil && Self.usesFusedLoRA(lora)
    }

    /// Set from the environment once; tests flip it to compare the two paths.
    nonisolated(unsafe) static var forceGEMMLoRA = CUDALibrarySearch.processEnvironment["SWIFTLET_LORA"] == "gemm"

    /// Accumulates the LoRA gradients and adds dL/dx into `dX` (or returns a new tensor).
    /// `overwritingInput`: the forward's input is dead after this call (the decoder's down_proj
    /// input), so a new dL/dx may take its storage: the fused LoRA path's terms that read the input
    /// run before the GEMM in any case.
    @discardableResult
    public func backward(_ dY: Tensor, saved: Saved, accumulateInto dX: Tensor?, overwritingInput: Bool = false) throws -> Tensor {
        let backend = dY.backend
        let tokens = dY.shape[0]
        guard let input = saved.input else { preconditionFailure("Linear.backward: the saved input was dropped and not restored") }
        let fused = runsFused(saved)
        let reusing = overwritingInput && dX == nil && (lora == nil || fused) && input.dtype == backend.computeType
        // The fused path's terms that read the input, before the GEMM (which may take the input's
        // storage) so that the up product adds into dL/dx while the GPU's L2 cache still holds it:
        // dB += s · dYᵀ z ;  dz = s · dY B ;  dA += dzᵀ x  (all f32).
        var fusedDz: Tensor?
        if fused, let lora {
            let dz = try outputTerms(dY, saved: saved)
            backend.loraGradient(input, dz, into: lora.gradA, gradientTransposed: true, alpha: 1)
            fusedDz = dz
        }
        // A new input gradient (in the input's storage when reusing) is written whole; an existing one accumulates.
        let dInput = try baseBackward(dY, into: dX ?? (reusing ? input : nil), accumulate: dX != nil)
        if let lora, let z = saved.lowRank {
            // dB += s · dYᵀ z ;  dz = s · dY B ;  dA += dzᵀ x̃ ;  dx += (dz A) ⊙ mask   (all f32)
            if let dz = fusedDz {
                backend.loraUpAdd(dz, lora.a, weightTransposed: true, scale: 1, into: dInput)
                return dInput
            }
            let dYWide = try Self.widened(dY, mask: nil)
            backend.matmul(dYWide, transposeA: true, z, transposeB: false, into: lora.gradB, alpha: lora.scaling, beta: 1)
            let dz = try backend.empty([tokens, lora.rank], .f32)
            backend.matmul(dYWide, transposeA: false, lora.b, transposeB: false, into: dz, alpha: lora.scaling, beta: 0)
            let loraInput = try Self.widened(input, mask: saved.dropoutMask)
            backend.matmul(dz, transposeA: true, loraInput, transposeB: false, into: lora.gradA, alpha: 1, beta: 1)
            if dInput.dtype == .f32 && saved.dropoutMask == nil {
                backend.matmul(dz, transposeA: false, lora.a, transposeB: false, into: dInput, alpha: 1, beta: 1)
            } else {
                let dLoRAInput = try backend.empty([tokens, inFeatures], .f32)
                backend.matmul(dz, transposeA: false, lora.a, transposeB: false, into: dLoRAInput, alpha: 1, beta: 0)
                if let mask = saved.dropoutMask { backend.multiply(dLoRAInput, by: mask) }
                backend.add(dLoRAInput, into: dInput, alpha: 1)
            }
        }
        return dInput
    }

    /// The fused path's terms that read dY: dB += s · dYᵀ z, and dz = s · dY B (returned), all in f32.
    func outputTerms(_ dY: Tensor, saved: Saved) throws -> Tensor {
        guard let lora, let z = saved.lowRank else { preconditionFailure("Linear.outputTerms without a fused adapter") }
        let backend = dY.backend
        backend.loraGradient(dY, z, into: lora.gradB, gradientTransposed: false, alpha: lora.scaling)
        let dz = try backend.empty([dY.shape[0], lora.rank], .f32)
        backend.loraDown(dY, lora.b, weightTransposed: true, into: dz, alpha: lora.scaling)
        return dz
    }

    /// The frozen weight's part of dL/dx, dY W: added into `dX` (`accumulate`) or written over it
    /// (beta 0: a new tensor when `dX` is nil, or a dead input's storage).
    func baseBackward(_ dY: Tensor, into dX: Tensor?, accumulate: Bool) throws -> Tensor {
        let backend = dY.backend
        let dInput = try dX ?? backend.empty([dY.shape[0], inFeatures], backend.computeType)
        backend.matmul(dY, transposeA: false, try weight.materialized(), transposeB: false, into: dInput,
                       alpha: 1, beta: accumulate ? 1 : 0)
        return dInput
    }

    /// x in f32 (itself when it already is and no mask applies), times the dropout mask.
    static func widened(_ x: Tensor, mask: Tensor?) throws -> Tensor {
        if x.dtype == .f32 && mask == nil { return x }
        let wide = try x.backend.empty(x.shape, .f32)
        x.backend.copy(x, into: wide)
        if let mask { x.backend.multiply(wide, by: mask) }
        return wide
    }
}
