import CCUDA

/// A mixture's products over the experts' row blocks: the frozen GEMMs in one grouped GEMM where
/// cuBLAS has it (opt-in), and the LoRA products (`Backend.loraDown(_:blocks:…)` …) on the
/// split-bf16 path (Kernels/SplitBF16Kernels.swift): every expert's weight parts in one jobs launch,
/// the activation's parts and the block sums of z once over all rows, the gradients' block sums in
/// one jobs launch, and between them one GEMM per expert on its block. Per block these are the
/// single op's operands, GEMM shapes and sums (cuBLASLt may pick another algorithm for a row view's
/// alignment than for a buffer of its own: the same values to the f32 summation order); an expert's
/// launches drop from 6–9 to 1–3 a product. Off the split path (fp16 storage, a rank or width not a
/// multiple of 8, the hand-written kernels) and with one expert in use, the blocks run one by one.
extension CUDABackend {
    /// The frozen products: one grouped GEMM where cuBLAS runs it (`CUBLASGrouped`), else block by block.
    public func matmul(_ x: Tensor, blocks: [Range<Int>], _ weights: [Tensor], transposeB: Bool, into y: Tensor) {
        ExpertBlocks.check(blocks, weights.count, x, y)
        let experts = used(blocks, weights)
        let problems = experts.map { CUBLASGrouped.Problem(a: x.rows($0.block), b: $0.tensor, transposeB: transposeB, c: y.rows($0.block)) }
        var done = false
        orFatal { done = try groupedGEMM(problems) }
        guard !done else { return }
        for problem in problems {
            matmul(problem.a, transposeA: false, problem.b, transposeB: transposeB, into: problem.c, alpha: 1, beta: 0)
        }
    }

    /// From this many experts with rows, their LoRA products run in f32 through cuBLAS's grouped GEMM
    /// where it is on (`CUBLASGrouped.enabled`): one launch a product on f32 copies of the 16-bit
    /// operand, where the split path takes one GEMM an expert. Fewer experts (Mixtral's 8 large ones)
    /// keep the split path: the copies (an f32 [tokens·k, 2·intermediate] in gate_up's backward) would
    /// cost more memory than their few launches.
    static let groupedLoRAExperts = 16

    /// A LoRA product of `experts` experts: `grouped` (the grouped f32 GEMM; false where cuBLAS did not
    /// run it) where it is on for that many, else, or after a refusal, `split`.
    private func expertLoRA(_ experts: Int, grouped: () throws -> Bool, split: () throws -> Void) {
        orFatal {
            let on = CUBLASGrouped.enabled && experts >= Self.groupedLoRAExperts && groupedBLAS != nil
            if try !on || !grouped() { try split() }
        }
    }

    /// `t` in f32 (a new tensor), for the grouped f32 GEMMs.
    private func widened(_ t: Tensor) throws -> Tensor {
        let wide = try empty(t.shape, .f32)
        copy(t, into: wide)
        return wide
    }

    /// The experts with rows, and their weights (or gradients).
    private func used(_ blocks: [Range<Int>], _ tensors: [Tensor]) -> [(block: Range<Int>, tensor: Tensor)] {
        zip(blocks, tensors).filter { !$0.0.isEmpty }.map { ($0.0, $0.1) }
    }

    /// Expert i's part of a buffer of equal parts.
    private func part(_ buffer: Tensor, _ i: Int, _ shape: Shape) -> Tensor {
        Tensor(buffer: buffer.buffer, dtype: buffer.dtype, shape: shape, byteOffset: buffer.byteOffset + i * shape.count * buffer.dtype.size)
    }

    public func loraDown(_ x: Tensor, blocks: [Range<Int>], _ weights: [Tensor], weightTransposed: Bool, into z: Tensor,
                         alpha: Float) {
        let k = x.shape[1], r = z.shape[1], experts = used(blocks, weights)
        guard usesSplitLoRA(rank: r, features: k), experts.count > 1 else {
            return loraDownEachBlock(x, blocks: blocks, weights, weightTransposed: weightTransposed, into: z, alpha: alpha)
        }
        ExpertBlocks.check(blocks, weights.count, x, z)
        for (block, w) in experts { LoRAShapes.checkDown(x.rows(block), w, weightTransposed: weightTransposed, z.rows(block)) }
        expect(x, computeType); expect(z, .f32)
        expertLoRA(experts.count, grouped: {
            let wide = try widened(x)   // z_e = alpha · x_e · op(w_e), f32 throughout
            return try groupedGEMM(experts.map {
                .init(a: wide.rows($0.block), b: $0.tensor, transposeB: !weightTransposed, c: z.rows($0.block), alpha: alpha)
            })
        }, split: {
            // each weight's three parts: A stacked [3r, K], or B side by side [K, 3r]
            let shape: Shape = weightTransposed ? [k, 3 * r] : [3 * r, k]
            let parts = try empty([experts.count * shape.count], .bf16)
            splitBF16(jobs: experts.enumerated().map { i, expert in
                SplitJob(src: expert.tensor, parts: [1, 2, 3], stacked: !weightTransposed, dst: part(parts, i, shape).device,
                         rowStride: weightTransposed ? 3 * r : k)
            })
            let z3 = try empty([x.shape[0], 3 * r], .f32)
            for (i, expert) in experts.enumerated() {
                matmul(x.rows(expert.block), transposeA: false, part(parts, i, shape), transposeB: !weightTransposed,
                       into: z3.rows(expert.block), alpha: 1, beta: 0)
            }
            sumBlocks3(z3, rowBlocks: false, alpha: alpha, accumulate: false, into: z)
        })
    }

    public func loraUpAdd(_ z: Tensor, blocks: [Range<Int>], _ weights: [Tensor], weightTransposed: Bool, scale: Float,
                          into y: Tensor) {
        let r = z.shape[1], o = y.shape[1], experts = used(blocks, weights)
        guard usesSplitLoRA(rank: r, features: o), experts.count > 1 else {
            return loraUpAddEachBlock(z, blocks: blocks, weights, weightTransposed: weightTransposed, scale: scale, into: y)
        }
        ExpertBlocks.check(blocks, weights.count, z, y)
        for (block, w) in experts { LoRAShapes.checkUpAdd(z.rows(block), w, weightTransposed: weightTransposed, y.rows(block)) }
        expect(z, .f32); expect(y, computeType)
        expertLoRA(experts.count, grouped: {
            // delta_e = z_e · op(w_e) in f32, then y += scale · delta rounded once (PEFT's order)
            let delta = try empty([z.shape[0], o], .f32)
            guard try groupedGEMM(experts.map {
                .init(a: z.rows($0.block), b: $0.tensor, transposeB: !weightTransposed, c: delta.rows($0.block))
            }) else { return false }
            add(delta, into: y, alpha: scale)
            return true
        }, split: {
            let z6 = try splitBF16(z, parts: CUDASplitBF16.crossLeft, stacked: false)   // [rows, 6r]
            // each weight's matching parts: A stacked [6r, O], or B side by side [O, 6r]
            let shape: Shape = weightTransposed ? [6 * r, o] : [o, 6 * r]
            let parts = try empty([experts.count * shape.count], .bf16)
            splitBF16(jobs: experts.enumerated().map { i, expert in
                SplitJob(src: expert.tensor, parts: CUDASplitBF16.crossRight, stacked: weightTransposed,
                         dst: part(parts, i, shape).device, rowStride: weightTransposed ? o : 6 * r)
            })
            for (i, expert) in experts.enumerated() {
                matmul(z6.rows(expert.block), transposeA: false, part(parts, i, shape), transposeB: !weightTransposed,
                       into: y.rows(expert.block), alpha: scale, beta: 1)
            }
        })
    }

    public func loraGradient(_ m: Tensor, _ z: Tensor, blocks: [Range<Int>], into gradients: [Tensor], gradientTransposed: Bool,
                             alpha: Float) {
        let o = m.shape[1], r = z.shape[1], experts = used(blocks, gradients)
        guard usesSplitLoRA(rank: r, features: o), experts.count > 1 else {
            return loraGradientEachBlock(m, z, blocks: blocks, into: gradients, gradientTransposed: gradientTransposed, alpha: alpha)
        }
        ExpertBlocks.check(blocks, gradients.count, m, z)
        for (block, g) in experts {
            LoRAShapes.checkGradient(m.rows(block), z.rows(block), g, gradientTransposed: gradientTransposed)
        }
        expect(m, computeType); expect(z, .f32)
        expertLoRA(experts.count, grouped: {
            // g_e += alpha · z_eᵀ · m_e (transposed) or alpha · m_eᵀ · z_e, f32 throughout
            let wide = try widened(m)
            let (left, right) = gradientTransposed ? (z, wide) : (wide, z)
            return try groupedGEMM(experts.map {
                .init(a: left.rows($0.block), transposeA: true, b: right.rows($0.block), transposeB: false, c: $0.tensor,
                      alpha: alpha, beta: 1)
            })
        }, split: {
            let z3 = try splitBF16(z, parts: [1, 2, 3], stacked: false)   // [rows, 3r]
            // each expert's product: Z3ᵀ·m [3r, O] (row blocks), or mᵀ·Z3 [O, 3r] (column blocks)
            let shape: Shape = gradientTransposed ? [3 * r, o] : [o, 3 * r]
            let (left, right) = gradientTransposed ? (z3, m) : (m, z3)
            let products = try empty([experts.count * shape.count], .f32)
            var sums: [SumJob] = []
            for (i, expert) in experts.enumerated() {
                let p = part(products, i, shape)
                matmul(left.rows(expert.block), transposeA: true, right.rows(expert.block), transposeB: false, into: p, alpha: 1, beta: 0)
                sums.append(SumJob(src: p.device, rowStride: 3 * expert.tensor.shape[1], rowBlocks: gradientTransposed,
                                   alpha: alpha, accumulate: true, out: expert.tensor))
            }
            sumBlocks3(jobs: sums)
        })
    }
}
