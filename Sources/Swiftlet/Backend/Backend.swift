import Foundation

/// A place where tensors live and ops run: `CPUBackend` (the exact reference) or the CUDA backend.
///
/// The model is written once against these ops. Each op has a forward and, where training needs
/// one, a backward; every backend implements the same semantics (Float32 math, whatever the
/// storage type), so the CPU twin of each op is the oracle its GPU version is tested against.
/// Tensors of activations are 2-D `[tokens, features]`, row-major; ids, labels, positions and
/// sequence ids are `i32`.
public protocol Backend: AnyObject, Sendable {
    var name: String { get }
    /// The storage type for activations and 16-bit weights on this backend (CPU: f32).
    var computeType: DType { get }

    /// Waits until all queued work is done (a no-op where ops run synchronously).
    func synchronize()

    // MARK: Memory
    var memory: MemoryCounter { get }
    /// A new tensor, zero-filled.
    func zeros(_ shape: Shape, _ dtype: DType) throws -> Tensor
    /// A new tensor whose contents are undefined until written: only for outputs an op writes
    /// completely (the GPU skips the fill).
    func empty(_ shape: Shape, _ dtype: DType) throws -> Tensor
    /// Returns a buffer's memory (called when the last view of it goes away).
    func release(_ buffer: Buffer)
    /// A new tensor holding `values`, converted (rounded) to `dtype`.
    func upload(_ values: [Float], _ shape: Shape, _ dtype: DType) throws -> Tensor
    func upload(_ values: [Int32], _ shape: Shape) throws -> Tensor
    /// The elements of a floating-point tensor as Float.
    func download(_ tensor: Tensor) -> [Float]
    func downloadInts(_ tensor: Tensor) -> [Int32]
    /// A new tensor of any dtype from its little-endian element bytes (e.g. u8 optimizer codes).
    func upload(bytes: [UInt8], _ shape: Shape, _ dtype: DType) throws -> Tensor
    /// A tensor's element bytes, whatever its dtype.
    func downloadBytes(_ tensor: Tensor) -> [UInt8]
    /// Copies elements (converting dtype if they differ).
    func copy(_ source: Tensor, into destination: Tensor)
    /// Moves a tensor's elements to host memory outside the backend's own (see OffloadedTensor).
    func offload(_ tensor: Tensor) throws -> OffloadedTensor
    /// Starts copying an offloaded tensor back into a new tensor of the backend (`OffloadedTensor.staged`),
    /// beside the work queued after it, for `reload` to take.
    func prefetch(_ offloaded: OffloadedTensor) throws
    /// Makes later work wait for every offload's copy still running and lets go of the tensors they
    /// read (an offload keeps its source until then, so that no new tensor takes its memory early).
    func settleOffloads() throws

    // MARK: Quantized weights
    /// out = the NF4 weight dequantized (bitsandbytes' dequantize_4bit: codebook[code] · absmax
    /// in f32, the nested absmax resolved first), rounded once to out's dtype.
    func dequantizeNF4(_ weight: NF4Weight, into out: Tensor)
    /// Each weight into its tensor, as the single op; a backend may run them all in one launch (a chunk of
    /// a mixture's experts).
    func dequantizeNF4(_ weights: [NF4Weight], into outs: [Tensor])
    /// The NF4 codes and block scales of a floating-point tensor (bitsandbytes' quantize_4bit, "nf4"):
    /// `packed` (u8, ceil(count / 2)) the codes, first element in the high nibble; `absmax` (f32, one
    /// per block of `blockSize`). Bit-identical to `NF4.quantize` of the downloaded values. The CUDA
    /// backend takes blocks of 8 to 256, a power of two (bitsandbytes' default is 64).
    func quantizeNF4(_ x: Tensor, blockSize: Int, into packed: Tensor, absmax: Tensor)

    // MARK: Linear algebra and elementwise
    /// c = alpha · op(a) · op(b) + beta · c, where op transposes when asked. Shapes are 2-D:
    /// op(a) is [m, k], op(b) is [k, n], c is [m, n].
    func matmul(_ a: Tensor, transposeA: Bool, _ b: Tensor, transposeB: Bool,
                into c: Tensor, alpha: Float, beta: Float)
    /// y += alpha · x (same element count; x may be f32 where y is the compute type, the sum then
    /// rounded once).
    func add(_ x: Tensor, into y: Tensor, alpha: Float)
    /// x[row, :] += bias for every row.
    func addBias(_ bias: Tensor, into x: Tensor)
    /// x *= factor
    func scale(_ x: Tensor, by factor: Float)
    /// destination[r, destinationColumn + j] = source[r, sourceColumn + j] for every row r and
    /// j < width: a block of columns between two row-major [rows, columns] tensors of one dtype.
    /// Splits a fused projection's output into its parts (Phi-3's qkv_proj, gate_up_proj) and
    /// concatenates the parts' gradients back (Model/ProjectionGroup.swift). Exact (a copy).
    func copyColumns(_ source: Tensor, sourceColumn: Int, into destination: Tensor, destinationColumn: Int, width: Int)

    // MARK: Multi-tensor ops: one pass over a list of f32 tensors (every LoRA gradient of a step)
    /// Σ over the tensors of Σ (x · factor)², each product rounded to Float and squared exactly in
    /// Double. The CPU sums each tensor in element order and adds the tensors' sums in list order;
    /// other backends may sum in another fixed order (deterministic, equal to ~1e-15 relative).
    func sumOfSquares(_ tensors: [Tensor], scaledBy factor: Float) -> Double
    /// Sets every element to +0. (Unlike `scale(by: 0)`, an inf or NaN left by an overflowed fp16
    /// step does not survive as NaN.)
    func zero(_ tensors: [Tensor])

    // MARK: LoRA low-rank products (Float32 sums on compute-type activations; Model/Linear.swift)
    /// z[t, j] = alpha · Σ_k f32(x[t, k]) · w(j, k), where w(j, k) = w[j, k] (w is [r, K]: LoRA A)
    /// or, `weightTransposed`, w[k, j] (w is [K, r]: LoRA B). x [T, K] in the compute type; w and
    /// z [T, r] in f32; z is overwritten. Rank at most `LoRAShapes.maxRank`.
    func loraDown(_ x: Tensor, _ w: Tensor, weightTransposed: Bool, into z: Tensor, alpha: Float)
    /// y[t, o] = y[t, o] + scale · Σ_j z[t, j] · w(o, j), the low-rank sum in f32 added to y and
    /// rounded once to y's type (PEFT's order); w(o, j) = w[o, j] (w is [O, r]: LoRA B) or,
    /// `weightTransposed`, w[j, o] (w is [r, O]: LoRA A).
    func loraUpAdd(_ z: Tensor, _ w: Tensor, weightTransposed: Bool, scale: Float, into y: Tensor)
    /// g(o, j) += alpha · Σ_t f32(m[t, o]) · z[t, j], where g(o, j) = g[o, j] (g is [O, r]: B's
    /// gradient) or, `gradientTransposed`, g[j, o] (g is [r, O]: A's). m [T, O] in the compute
    /// type, z and g in f32. Deterministic: the same inputs give the same bits on every run.
    func loraGradient(_ m: Tensor, _ z: Tensor, into g: Tensor, gradientTransposed: Bool, alpha: Float)
    /// Several adapters on one input x (q, k and v; gate and up), each as the ops above with alpha 1:
    /// z_i = x · A_iᵀ (`loraDown`, A_i [r_i, K]); A_i's gradient g_i [r_i, K] += dz_iᵀ · x
    /// (`loraGradient`, transposed); y += Σ_i dz_i · A_i (`loraUpAdd`, transposed), where a backend
    /// may add the sum to y and round once. A backend may read x (and write y) once for all of them.
    func loraDown(_ x: Tensor, _ weights: [Tensor], into zs: [Tensor])
    func loraGradient(_ x: Tensor, _ zs: [Tensor], intoTransposed gradients: [Tensor])
    func loraUpAdd(_ zs: [Tensor], _ weights: [Tensor], into y: Tensor)
    /// A mixture's experts (Model/ExpertLinears.swift): the rows of x (and of z, y, m) come in blocks,
    /// one per expert in order (`blocks`: contiguous, together all the rows, empty ones allowed), and
    /// block e takes weight e (its gradient e). Each block's result is the single op's on its rows,
    /// bit for bit, so a backend may run every block in one launch.
    /// y[e] = x[e] · op(W_e) (op(W) = Wᵀ when `transposeB`: W_e [O, K]), y overwritten.
    func matmul(_ x: Tensor, blocks: [Range<Int>], _ weights: [Tensor], transposeB: Bool, into y: Tensor)
    func loraDown(_ x: Tensor, blocks: [Range<Int>], _ weights: [Tensor], weightTransposed: Bool, into z: Tensor, alpha: Float)
    func loraUpAdd(_ z: Tensor, blocks: [Range<Int>], _ weights: [Tensor], weightTransposed: Bool, scale: Float, into y: Tensor)
    func loraGradient(_ m: Tensor, _ z: Tensor, blocks: [Range<Int>], into gradients: [Tensor], gradientTransposed: Bool,
                      alpha: Float)
    /// Runs `body` with the weights of `groups` (adapters on one input together, as the grouped ops
    /// take them; the others one to a group) prepared for the ops above: a backend may transform them
    /// once for the stretch instead of in every op (CUDA: their bf16 parts, in one launch). The
    /// weights must not change inside `body`. `groups` is evaluated only by a backend that prepares.
    func withPreparedLoRA<R>(_ groups: @autoclosure () -> [[LoRAAdapter]], _ body: () throws -> R) throws -> R

    // MARK: Model ops (forward and backward side by side in each op's file)
    func embedding(table: Tensor, ids: Tensor, into out: Tensor)
    func embeddingBackward(dOut: Tensor, ids: Tensor, into dTable: Tensor)

    /// y = (weightOffset + w) ⊙ (x · rstd), rstd = 1/√(mean(x²) + ε), all in f32 and rounded once.
    /// weightOffset is 0 (Llama) or 1 (Gemma's (1 + w), added in f32 as Gemma does: adding it to a
    /// bf16 weight at load time would round 1 + w to bf16 and lose most of w's bits).
    func rmsNorm(_ x: Tensor, weight: Tensor, weightOffset: Float, eps: Float, into out: Tensor, rstd: Tensor)
    /// dX += dL/dx
    func rmsNormBackward(dOut: Tensor, x: Tensor, weight: Tensor, weightOffset: Float, rstd: Tensor,
                         accumulateInto dX: Tensor)

    /// Rotates `x` ([tokens, heads·headDim]) in place by each token's position, with the
    /// half-split (rotate_half) layout of Hugging Face Llama. `inverse` applies the transpose
    /// rotation, which is the backward.
    func rope(_ x: Tensor, positions: Tensor, table: RoPETable, heads: Int, inverse: Bool)

    func attention(_ q: Tensor, _ k: Tensor, _ v: Tensor, layout: AttentionLayout,
                   into out: Tensor, logSumExp: Tensor)
    func attentionBackward(dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor,
                           logSumExp: Tensor, layout: AttentionLayout,
                           dQ: Tensor, dK: Tensor, dV: Tensor)
    /// Generation: q [rows·queries, heads·headDim] against the cached keys and values
    /// [rows·capacity, kvHeads·headDim] (RoPE already applied to both), out like q; exact softmax.
    func cachedAttention(_ q: Tensor, keys: Tensor, values: Tensor, layout: CachedAttentionLayout, into out: Tensor)

    /// out = act(gate) * up (SwiGLU, GeGLU)
    func gatedLinearUnit(_ activation: GatedActivation, gate: Tensor, up: Tensor, into out: Tensor)
    /// dGate = dOut·up·act'(gate), dUp = dOut·act(gate), both overwritten; they may be gate's and up's
    /// own storage (each element is read before it is written), which the decoder layer uses to keep
    /// its peak memory down.
    func gatedLinearUnitBackward(_ activation: GatedActivation, dOut: Tensor, gate: Tensor, up: Tensor,
                                 dGate: Tensor, dUp: Tensor)
    /// The same over a fused projection's output (a mixture's experts' gate_up): gateUp [rows, 2·w] holds
    /// gate in columns 0..<w and up in w..<2w, out and dOut are [rows, w]; the backward writes dGate | dUp
    /// into dGateUp, which may be gateUp itself. The same math per element as the ops above.
    func gatedLinearUnit(_ activation: GatedActivation, gateUp: Tensor, into out: Tensor)
    func gatedLinearUnitBackward(_ activation: GatedActivation, dOut: Tensor, gateUp: Tensor, dGateUp: Tensor)

    // MARK: Mixture of experts (Model/MixtureOfExperts.swift; CPU twin CPU/ExpertRouting.swift)
    /// The router: probabilities [T, E] f32 = softmax(logits [T, E]) computed in f32; experts [T, k]
    /// i32 = the k most probable, in descending order (the lower index first on ties); weights [T, k]
    /// f32 = their probabilities, divided by their sum when `normalize` (Mixtral; Qwen3-MoE's
    /// norm_topk_prob).
    func moeRoute(logits: Tensor, topK: Int, normalize: Bool, probabilities: Tensor, experts: Tensor, weights: Tensor)
    /// dLogits (overwritten, the logits' dtype) from dWeights [T, k] f32 through the renormalisation
    /// and the softmax; with `auxGradient` [E] f32, dL/dp[t, e] += auxGradient[e] for every token whose
    /// sequenceIds[t] ≥ 0 (the load-balancing loss).
    func moeRouteBackward(dWeights: Tensor, probabilities: Tensor, experts: Tensor, normalize: Bool,
                          auxGradient: Tensor?, sequenceIds: Tensor?, into dLogits: Tensor)
    /// statistics [2, E] f32: row 0 counts the top-k choices of each expert, row 1 sums each expert's
    /// probability, over the tokens whose sequenceIds ≥ 0 (all tokens when nil).
    func moeRouterStatistics(probabilities: Tensor, experts: Tensor, sequenceIds: Tensor?, into statistics: Tensor)
    /// A stable counting sort of the (token, slot) assignments by expert: counts [E] i32, and rows
    /// [T·k] i32, each assignment's row in the order sorted by expert (tokens in order within one), so
    /// every expert's tokens form one contiguous block of rows.
    func moeSort(experts: Tensor, expertCount: Int, counts: Tensor, rows: Tensor)
    /// sorted[rows[t·k + j]] = x[t]: each token copied to the rows of its k experts (every row written
    /// once).
    func moeGather(_ x: Tensor, rows: Tensor, into sorted: Tensor)
    /// out[t] = Σ_j weights[t, j] · sorted[rows[t·k + j]] (weights nil: 1), summed in f32 in ascending
    /// row order (expert order, as transformers adds the experts' outputs) and rounded once. A gather
    /// per token, so no atomics: deterministic. With nil weights it is the backward of `moeGather`.
    func moeCombine(_ sorted: Tensor, rows: Tensor, weights: Tensor?, into out: Tensor)
    /// The backward of `moeCombine`: dSorted[rows[t·k + j]] = weights[t, j] · dOut[t] (overwritten) and
    /// dWeights[t, j] = Σ_h dOut[t, h] · sorted[rows[t·k + j], h] (f32, overwritten).
    func moeCombineBackward(dOut: Tensor, sorted: Tensor, rows: Tensor, weights: Tensor, dSorted: Tensor, dWeights: Tensor)

    /// For each row of `logits` ([n, vocab]) with target `labels[row]` (-100 = ignored): writes the
    /// row's loss (0 when ignored) into `losses` ([n] f32, left on the backend, so the caller reads
    /// many chunks' losses with one synchronisation), and (when `gradScale` is given) overwrites
    /// `logits` with gradScale · (softmax - onehot) (zero on ignored rows). With `softcap` (Gemma 2's
    /// final_logit_softcapping) the loss is of c = cap·tanh(z / cap), and the gradient written is
    /// dL/dz = dL/dc · (1 − tanh²(z / cap)).
    func crossEntropy(logits: Tensor, labels: Tensor, softcap: Float?, gradScale: Float?, losses: Tensor)

    /// x[i] = uniform(-bound, bound) drawn from (seed, i) by a counter-based hash, so every
    /// backend fills the same values (random weights for the demo and benchmarks).
    func fillUniform(_ x: Tensor, seed: UInt64, bound: Float)

    /// Dropout: x *= mask with a deterministic mask (1/(1-p) or 0) drawn from (seed, index), kept
    /// in `mask` for the backward.
    func dropout(_ x: Tensor, probability: Float, seed: UInt64, mask: Tensor)
    /// x *= y elementwise
    func multiply(_ x: Tensor, by y: Tensor)

    // MARK: Optimizer updates (fp32 parameters and state), over a list of tensors at once
    // Each gradient element is multiplied by `gradientMultiplier` as it is read (GradientMultiplier.swift);
    // the gradients themselves are left unchanged. Single-tensor forms: SingleTensorOps.swift.
    func adamw(parameters: [Tensor], gradients: [Tensor], m: [Tensor], v: [Tensor],
               gradientMultiplier: GradientMultiplier, step: Int, hyper: AdamWHyper)
    func sgd(parameters: [Tensor], gradients: [Tensor], momentumBuffers: [Tensor]?,
             gradientMultiplier: GradientMultiplier, step: Int, hyper: SGDHyper)
    /// bitsandbytes' AdamW8bit step (Train/AdamW8bit.swift), each tensor with the state kind that
    /// `AdamW8bitState.zeros(for:)` chose for it.
    func adamw8bit(parameters: [Tensor], gradients: [Tensor], states: [AdamW8bitState],
                   gradientMultiplier: GradientMultiplier, step: Int, hyper: AdamWHyper)
}

extension Backend {
    /// A new tensor of the backend holding an offloaded tensor's elements: the prefetched copy (or one
    /// started now), with later work ordered after it.
    public func reload(_ offloaded: OffloadedTensor) throws -> Tensor {
        try prefetch(offloaded)
        guard let staged = offloaded.staged else { preconditionFailure("prefetch stages a copy") }
        offloaded.staged = nil
        try staged.join()
        return staged.tensor
    }

    /// Backends whose offload copies are done when `offload` returns have nothing to settle.
    public func settleOffloads() throws {}

    /// Backends whose low-rank ops take the weights as they are have nothing to prepare.
    public func withPreparedLoRA<R>(_ groups: @autoclosure () -> [[LoRAAdapter]], _ body: () throws -> R) throws -> R { try body() }
}

/// The adapters of one input one at a time: the CPU's way (its GEMM reads x from cache anyway), and
/// the reference of a backend's grouped products.
extension Backend {
    public func loraDown(_ x: Tensor, _ weights: [Tensor], into zs: [Tensor]) {
        precondition(weights.count == zs.count, "one z per adapter")
        for (w, z) in zip(weights, zs) { loraDown(x, w, weightTransposed: false, into: z, alpha: 1) }
    }

    public func loraGradient(_ x: Tensor, _ zs: [Tensor], intoTransposed gradients: [Tensor]) {
        precondition(zs.count == gradients.count, "one gradient per adapter")
        for (z, g) in zip(zs, gradients) { loraGradient(x, z, into: g, gradientTransposed: true, alpha: 1) }
    }

    public func loraUpAdd(_ zs: [Tensor], _ weights: [Tensor], into y: Tensor) {
        precondition(weights.count == zs.count, "one weight per z")
        for (z, w) in zip(zs, weights) { loraUpAdd(z, w, weightTransposed: true, scale: 1, into: y) }
    }
}

extension Backend {
    public func dequantizeNF4(_ weights: [NF4Weight], into outs: [Tensor]) {
        precondition(weights.count == outs.count, "one tensor per weight")
        for (weight, out) in zip(weights, outs) { dequantizeNF4(weight, into: out) }
    }
}

/// A mixture's experts one block at a time: the CPU's way, a backend's where its ops over all blocks
/// at once do not apply (`…EachBlock`), and their reference.
extension Backend {
    public func matmul(_ x: Tensor, blocks: [Range<Int>], _ weights: [Tensor], transposeB: Bool, into y: Tensor) {
        ExpertBlocks.check(blocks, weights.count, x, y)
        for (block, w) in zip(blocks, weights) where !block.isEmpty {
            matmul(x.rows(block), transposeA: false, w, transposeB: transposeB, into: y.rows(block), alpha: 1, beta: 0)
        }
    }

    public func loraDown(_ x: Tensor, blocks: [Range<Int>], _ weights: [Tensor], weightTransposed: Bool, into z: Tensor,
                         alpha: Float) {
        loraDownEachBlock(x, blocks: blocks, weights, weightTransposed: weightTransposed, into: z, alpha: alpha)
    }

    public func loraUpAdd(_ z: Tensor, blocks: [Range<Int>], _ weights: [Tensor], weightTransposed: Bool, scale: Float,
                          into y: Tensor) {
        loraUpAddEachBlock(z, blocks: blocks, weights, weightTransposed: weightTransposed, scale: scale, into: y)
    }

    public func loraGradient(_ m: Tensor, _ z: Tensor, blocks: [Range<Int>], into gradients: [Tensor], gradientTransposed: Bool,
                             alpha: Float) {
        loraGradientEachBlock(m, z, blocks: blocks, into: gradients, gradientTransposed: gradientTransposed, alpha: alpha)
    }

    func loraDownEachBlock(_ x: Tensor, blocks: [Range<Int>], _ weights: [Tensor], weightTransposed: Bool, into z: Tensor,
                           alpha: Float) {
        ExpertBlocks.check(blocks, weights.count, x, z)
        for (block, w) in zip(blocks, weights) where !block.isEmpty {
            loraDown(x.rows(block), w, weightTransposed: weightTransposed, into: z.rows(block), alpha: alpha)
        }
    }

    func loraUpAddEachBlock(_ z: Tensor, blocks: [Range<Int>], _ weights: [Tensor], weightTransposed: Bool, scale: Float,
                            into y: Tensor) {
        ExpertBlocks.check(blocks, weights.count, z, y)
        for (block, w) in zip(blocks, weights) where !block.isEmpty {
            loraUpAdd(z.rows(block), w, weightTransposed: weightTransposed, scale: scale, into: y.rows(block))
        }
    }

    func loraGradientEachBlock(_ m: Tensor, _ z: Tensor, blocks: [Range<Int>], into gradients: [Tensor], gradientTransposed: Bool,
                               alpha: Float) {
        ExpertBlocks.check(blocks, gradients.count, m, z)
        for (block, g) in zip(blocks, gradients) where !block.isEmpty {
            loraGradient(m.rows(block), z.rows(block), into: g, gradientTransposed: gradientTransposed, alpha: alpha)
        }
    }
}

/// The row blocks of a mixture's sorted tokens, one per expert.
public enum ExpertBlocks {
    /// The blocks of `counts` rows each, in order.
    public static func blocks(counts: [Int]) -> [Range<Int>] {
        var start = 0
        return counts.map { count in
            defer { start += count }
            return start..<(start + count)
        }
    }

    /// One block per weight, in order, covering the rows of every tensor.
    static func check(_ blocks: [Range<Int>], _ weights: Int, _ tensors: Tensor...) {
        precondition(blocks.count == weights, "\(blocks.count) blocks for \(weights) weights")
        var next = 0
        for block in blocks {
            precondition(block.lowerBound == next, "expert blocks out of order or with gaps")
            next = block.upperBound
        }
        for t in tensors { precondition(t.shape[0] == next, "\(next) rows in the blocks, \(t.shape[0]) in \(t)") }
    }
}

/// The forms without Gemma's options, for the families (and tests) that have none.
extension Backend {
    public func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float, into out: Tensor, rstd: Tensor) {
        rmsNorm(x, weight: weight, weightOffset: 0, eps: eps, into: out, rstd: rstd)
    }

    public func rmsNormBackward(dOut: Tensor, x: Tensor, weight: Tensor, rstd: Tensor, accumulateInto dX: Tensor) {
        rmsNormBackward(dOut: dOut, x: x, weight: weight, weightOffset: 0, rstd: rstd, accumulateInto: dX)
    }

    public func swiglu(gate: Tensor, up: Tensor, into out: Tensor) {
        gatedLinearUnit(.silu, gate: gate, up: up, into: out)
    }

    public func swigluBackward(dOut: Tensor, gate: Tensor, up: Tensor, dGate: Tensor, dUp: Tensor) {
        gatedLinearUnitBackward(.silu, dOut: dOut, gate: gate, up: up, dGate: dGate, dUp: dUp)
    }

    public func crossEntropy(logits: Tensor, labels: Tensor, gradScale: Float?, losses: Tensor) {
        crossEntropy(logits: logits, labels: labels, softcap: nil, gradScale: gradScale, losses: losses)
    }
}

/// Current and peak bytes allocated on a backend: as the backend holds them (`current`, `peak`: the
/// CUDA allocator's bins, powers of two to 1 MiB, then multiples of 2 MiB), and as they were requested,
/// each rounded up to 512 bytes (`requestedCurrent`, `requestedPeak`): how PyTorch's caching allocator
/// counts `max_memory_allocated`, the figure the HF + PEFT baseline reports.
public final class MemoryCounter: @unchecked Sendable {
    public private(set) var current: Int = 0
    public private(set) var peak: Int = 0
    public private(set) var requestedCurrent: Int = 0
    public private(set) var requestedPeak: Int = 0
    /// Where the work is (the model names its phases: "forward 3", "head", "backward 3 MLP", ...), and
    /// the phase in which the requested peak was reached: what memory work starts from.
    public var phase = ""
    public private(set) var requestedPeakPhase = ""
    private let lock = NSLock()

    public init() {}
    /// `bytes` held for a request of `requested` bytes (the same when nil).
    public func allocated(_ bytes: Int, requested: Int? = nil) {
        let asked = Self.rounded(requested ?? bytes)
        lock.withLock {
            current += bytes; peak = Swift.max(peak, current)
            requestedCurrent += asked
            if requestedCurrent > requestedPeak { requestedPeak = requestedCurrent; requestedPeakPhase = phase }
        }
    }
    public func freed(_ bytes: Int, requested: Int? = nil) {
        let asked = Self.rounded(requested ?? bytes)
        lock.withLock { current -= bytes; requestedCurrent -= asked }
    }
    public func resetPeak() { lock.withLock { peak = current; requestedPeak = requestedCurrent; requestedPeakPhase = phase } }

    static func rounded(_ bytes: Int) -> Int { (bytes + 511) / 512 * 512 }
}
