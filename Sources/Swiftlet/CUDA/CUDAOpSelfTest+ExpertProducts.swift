/// The doctor's check of a mixture's products over the experts' row blocks (`Backend.matmul(_:blocks:…)`
/// and the LoRA ops with `blocks:`; CUDA/CUDAExpertProducts.swift) against the CPU, op by op, as the
/// experts' Linears call them: once as they run by default (shared splits and sums, one cuBLASLt GEMM an
/// expert) and once through cuBLAS's grouped GEMM (`SWIFTLET_GROUPED_GEMM`). The training-step check
/// compares whole steps, where one rounding of a frozen product can flip a near-tie routing and move a
/// token to another expert. Here the operands are fixed, so a wrong block or a wrong transpose fails.
/// Bounds are the single ops' own: f32 outputs to 1e-5, 16-bit ones to bf16 rounding. Some experts get
/// no rows.
extension CUDAOpSelfTest {
    mutating func expertProducts() throws {
        let enabled = CUBLASGrouped.enabled
        defer { CUBLASGrouped.enabled = enabled }
        for grouped in [false, true] {
            CUBLASGrouped.enabled = grouped
            if grouped && gpu.groupedBLAS == nil {
                say("  info  cuBLAS grouped GEMM: not in this cuBLAS (the experts' products run one by one)")
                break
            }
            let way = grouped ? "cuBLAS grouped GEMM" : "default"
            // Mixtral-like (the grouped GEMM takes the frozen products only) and Qwen3-MoE-like (from
            // `CUDABackend.groupedLoRAExperts` experts with rows, the LoRA products too, in f32).
            try expertProductsCase("\(way): 8 experts, 1,000 rows, 512 → 704, r 16", experts: 8, rows: 1000,
                                   inFeatures: 512, outFeatures: 704, rank: 16)
            try expertProductsCase("\(way): 26 experts (18 with rows), 1,200 rows, 256 → 384, r 16", experts: 26,
                                   rows: 1200, inFeatures: 256, outFeatures: 384, rank: 16)
            if grouped && !CUBLASGrouped.enabled {   // a refusal turns it off, and the default path ran instead
                verdict(false, "cuBLAS grouped GEMM refused", "the experts' products (see the message above)")
            }
        }
    }

    /// One Linear of every expert, forward and backward: y = x·Wᵀ, z = α·x·Aᵀ, y += s·z·Bᵀ; dz = s·dY·B,
    /// dB += s·dYᵀ·z, dA += dzᵀ·x, dX += dz·A (Model/ExpertLinears.swift's calls).
    mutating func expertProductsCase(_ label: String, experts: Int, rows: Int, inFeatures k: Int, outFeatures o: Int,
                                     rank r: Int) throws {
        say("a mixture's products over its experts' row blocks, \(label):")
        // Uneven blocks, every third expert empty.
        let weights = (0..<experts).map { $0 % 3 == 2 ? 0 : 1 + ($0 * 7) % 5 }
        let total = weights.reduce(0, +)
        var counts = weights.map { $0 * rows / total }
        if let last = counts.lastIndex(where: { $0 > 0 }) { counts[last] += rows - counts.reduce(0, +) }
        let blocks = ExpertBlocks.blocks(counts: counts)
        let (alpha, scale): (Float, Float) = (1, 0.5)

        let x = try pair([rows, k], storage)
        let w = try (0..<experts).map { _ in try pair([o, k], storage, in: -0.05...0.05) }
        let a = try (0..<experts).map { _ in try pair([r, k], .f32, in: -0.1...0.1) }
        let b = try (0..<experts).map { _ in try pair([o, r], .f32, in: -0.1...0.1) }
        func side(_ ts: [(cpu: Tensor, gpu: Tensor)]) -> (cpu: [Tensor], gpu: [Tensor]) { (ts.map(\.cpu), ts.map(\.gpu)) }
        let (ws, aw, bw) = (side(w), side(a), side(b))

        let y = try output([rows, o], storage)
        cpu.matmul(x.cpu, blocks: blocks, ws.cpu, transposeB: true, into: y.cpu)
        gpu.matmul(x.gpu, blocks: blocks, ws.gpu, transposeB: true, into: y.gpu)
        check("frozen y = x·Wᵀ (\(storage))", y)
        // The up-add on the GPU's y, so only its own rounding is measured.
        let yBase = gpu.download(y.gpu)
        let up = (cpu: try cpu.upload(yBase, [rows, o], .f32), gpu: y.gpu)

        let z = try output([rows, r], .f32)
        cpu.loraDown(x.cpu, blocks: blocks, aw.cpu, weightTransposed: false, into: z.cpu, alpha: alpha)
        gpu.loraDown(x.gpu, blocks: blocks, aw.gpu, weightTransposed: false, into: z.gpu, alpha: alpha)
        check("down z = α·x·Aᵀ (f32)", z)
        let zSame = (cpu: z.cpu, gpu: try gpu.upload(cpu.download(z.cpu), [rows, r], .f32))
        cpu.loraUpAdd(zSame.cpu, blocks: blocks, bw.cpu, weightTransposed: false, scale: scale, into: up.cpu)
        gpu.loraUpAdd(zSame.gpu, blocks: blocks, bw.gpu, weightTransposed: false, scale: scale, into: up.gpu)
        check("up-add y += s·z·Bᵀ (\(storage))", up)

        let dY = try pair([rows, o], storage)
        let dz = try output([rows, r], .f32)
        cpu.loraDown(dY.cpu, blocks: blocks, bw.cpu, weightTransposed: true, into: dz.cpu, alpha: scale)
        gpu.loraDown(dY.gpu, blocks: blocks, bw.gpu, weightTransposed: true, into: dz.gpu, alpha: scale)
        check("down dz = s·dY·B (f32)", dz)
        let dzSame = (cpu: dz.cpu, gpu: try gpu.upload(cpu.download(dz.cpu), [rows, r], .f32))

        // Gradients accumulate: both sides start from the same values.
        let gB = try (0..<experts).map { _ in try pair([o, r], .f32, in: -0.01...0.01) }
        let gA = try (0..<experts).map { _ in try pair([r, k], .f32, in: -0.01...0.01) }
        cpu.loraGradient(dY.cpu, zSame.cpu, blocks: blocks, into: gB.map(\.cpu), gradientTransposed: false, alpha: scale)
        gpu.loraGradient(dY.gpu, zSame.gpu, blocks: blocks, into: gB.map(\.gpu), gradientTransposed: false, alpha: scale)
        checkEvery("gradients dB_e += s·dYᵀ·z (f32)", gB)
        cpu.loraGradient(x.cpu, dzSame.cpu, blocks: blocks, into: gA.map(\.cpu), gradientTransposed: true, alpha: 1)
        gpu.loraGradient(x.gpu, dzSame.gpu, blocks: blocks, into: gA.map(\.gpu), gradientTransposed: true, alpha: 1)
        checkEvery("gradients dA_e += dzᵀ·x (f32)", gA)

        let dX = try pair([rows, k], storage)
        cpu.loraUpAdd(dzSame.cpu, blocks: blocks, aw.cpu, weightTransposed: true, scale: 1, into: dX.cpu)
        gpu.loraUpAdd(dzSame.gpu, blocks: blocks, aw.gpu, weightTransposed: true, scale: 1, into: dX.gpu)
        check("up-add dX += dz·A (\(storage))", dX)
    }

    /// Every expert's gradient within the f32 bounds, as one line naming the worst expert (a mixture has
    /// too many for a line each).
    mutating func checkEvery(_ name: String, _ pairs: [(cpu: Tensor, gpu: Tensor)]) {
        let errors = pairs.map { ErrorMeasure.measure(gpu: gpu.download($0.gpu), cpu: cpu.download($0.cpu)) }
        let failing = errors.indices.filter { !errors[$0].passes(maxBound: Self.f32Max, meanBound: Self.f32Mean) }
        let worst = errors.indices.max { errors[$0].maxRelative < errors[$1].maxRelative } ?? 0
        verdict(failing.isEmpty, name,
                "worst max rel \(fmt(errors[worst].maxRelative)) (≤ \(fmt(Self.f32Max))), expert \(worst)"
                + (failing.isEmpty ? "" : "; failing: experts \(failing.map(String.init).joined(separator: ", "))"))
    }
}
