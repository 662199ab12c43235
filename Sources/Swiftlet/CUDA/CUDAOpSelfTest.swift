import Foundation

/// The GPU self-test of `swiftlet doctor`: every op of the CUDA backend against its CPU twin on
/// fresh random inputs at realistic sizes (hidden 4096, 2048 tokens, vocab 32000). Inputs are
/// rounded to bf16 first so both backends see the same numbers; GPU outputs are poisoned (NaN
/// bytes) before each run so an unwritten element fails; NaN never passes.
struct CUDAOpSelfTest {
    let gpu: CUDABackend
    let cpu = CPUBackend()
    let say: (String) -> Void
    var generator = SplitMix64(seed: UInt64(Date().timeIntervalSince1970 * 1000))
    var passed = true

    init(gpu: CUDABackend, say: @escaping (String) -> Void) {
        self.gpu = gpu
        self.say = say
    }

    // bf16 outputs: an output rounding plus bf16 intermediates; f32 outputs: summation order.
    // (fp16 keeps 3 more mantissa bits than bf16; the same bounds hold with room.)
    static let bf16Max = 1e-2, bf16Mean = 3e-3, f32Max = 1e-5, f32Mean = 1e-5

    /// The same random values on both backends (bf16-rounded when the GPU stores bf16).
    /// The GPU's 16-bit storage type (bf16, or fp16).
    var storage: DType { gpu.computeType }

    /// A value rounded to the storage type.
    func round(_ v: Float) -> Float { storage == .bf16 ? BFloat16.round(v) : Half.float(Half.bits(v)) }

    mutating func pair(_ shape: Shape, _ dtype: DType, in range: ClosedRange<Float> = -1...1) throws -> (cpu: Tensor, gpu: Tensor) {
        let values = (0..<shape.count).map { _ -> Float in
            let v = generator.uniform(in: range.lowerBound..<range.upperBound)
            return dtype == .f32 ? v : round(v)
        }
        return (try cpu.upload(values, shape, .f32), try gpu.upload(values, shape, dtype))
    }

    func ints(_ values: [Int32]) throws -> (cpu: Tensor, gpu: Tensor) {
        (try cpu.upload(values, [values.count]), try gpu.upload(values, [values.count]))
    }

    /// A GPU output filled with NaN bytes, and its zeroed CPU twin.
    func output(_ shape: Shape, _ dtype: DType) throws -> (cpu: Tensor, gpu: Tensor) {
        let g = try gpu.zeros(shape, dtype)
        gpu.run { try gpu.device.memory.fill(DeviceBuffer(pointer: g.device, bytes: g.byteCount, binBytes: 0), byte: 0xFF) }
        return (try cpu.zeros(shape, .f32), g)
    }

    mutating func check(_ name: String, _ pair: (cpu: Tensor, gpu: Tensor), exact: Bool = false) {
        let f32 = pair.gpu.dtype == .f32
        let e = ErrorMeasure.measure(gpu: gpu.download(pair.gpu), cpu: cpu.download(pair.cpu))
        let (mb, nb) = exact ? (0.0, 0.0) : f32 ? (Self.f32Max, Self.f32Mean) : (Self.bf16Max, Self.bf16Mean)
        let nanText = e.nanCount > 0 ? "  \(e.nanCount) NaN/unwritten" : ""
        verdict(e.passes(maxBound: mb, meanBound: nb), name,
                "max rel \(fmt(e.maxRelative)) (≤ \(fmt(mb)))  mean rel \(fmt(e.meanRelative)) (≤ \(fmt(nb)))\(nanText)")
    }

    /// One check's line: PASS or FAIL, its name in a column, what was measured; a FAIL fails the doctor.
    mutating func verdict(_ ok: Bool, _ name: String, _ detail: String = "") {
        passed = passed && ok
        say("  \(ok ? "PASS" : "FAIL")  \(name.padding(toLength: 40, withPad: " ", startingAt: 0))\(detail.isEmpty ? "" : " " + detail)")
    }

    mutating func checkScalar(_ name: String, gpu g: Double, cpu c: Double, bound: Double) {
        let rel = abs(g - c) / max(abs(c), 1e-30)
        let ok = rel <= bound && g.isFinite
        verdict(ok, name, "rel \(fmt(rel)) (≤ \(fmt(bound)))  gpu \(g)  cpu \(c)")
    }

    /// Times `body` on the GPU (after one untimed run) with device events.
    func time(_ name: String, flops: Double = 0, bytes: Double = 0, _ body: () -> Void) {
        body()
        let ms = (try? gpu.device.time { for _ in 0..<3 { body() } }).map { Double($0) / 3 } ?? .nan
        var rate = ""
        if flops > 0 { rate += "  \(fmt(flops / ms / 1e9, digits: 1)) TFLOP/s" }
        if bytes > 0 { rate += "  \(fmt(bytes / ms / 1e6, digits: 1)) GB/s" }
        say("  time  \(name.padding(toLength: 40, withPad: " ", startingAt: 0)) \(fmt(ms, digits: 3)) ms\(rate)")
    }

    mutating func runAll() throws -> Bool {
        try matmul()
        try norms()
        try ropeAndAttention()
        try cachedAttention()
        try mlp()
        try mixtureOfExperts()
        try expertProducts()
        try head()
        try elementwise()
        try optimizers()
        try nf4()
        try nf4Quantize()
        try lora()
        return passed
    }

    /// NF4 dequantization must be bit-exact: the same f32 operations in the same order, one
    /// rounding to the output type (the CPU writes the same storage type here).
    mutating func nf4() throws {
        say("NF4 dequantize (bit-exact):")
        let cases: [(Shape, Bool, DType)] = [([4096, 4096], true, storage), ([300, 130], false, storage),
                                             ([7, 37], true, storage), ([1000, 96], true, .f32)]
        for (shape, nested, dtype) in cases {
            let values = (0..<shape.count).map { _ in generator.uniform(in: -0.05..<0.05) }
            let q = NF4.quantize(values, shape: shape, doubleQuant: nested)
            let onGPU = try NF4Weight(q, on: gpu), onCPU = try NF4Weight(q, on: cpu)
            let out = (cpu: try cpu.zeros(shape, dtype), gpu: try output(shape, dtype).gpu)
            cpu.dequantizeNF4(onCPU, into: out.cpu)
            gpu.dequantizeNF4(onGPU, into: out.gpu)
            check("\(shape) \(nested ? "nested" : "plain") absmax → \(dtype)", out, exact: true)
        }
        // 4096×4096 (42 MB of traffic) fits the H200's 50 MB L2; 11008×4096 (llama2-7b's gate_proj) is what
        // a QLoRA step dequantizes three times a layer.
        for shape: Shape in [[4096, 4096], [11008, 4096]] {
            let big = try NF4Weight(NF4.quantize([Float](repeating: 0.01, count: shape.count), shape: shape, doubleQuant: true),
                                    on: gpu)
            let scratch = try gpu.zeros(shape, storage)
            time("dequantize \(shape[0])×\(shape[1]) → \(storage)", bytes: Double(shape.count / 2 + shape.count * 2)) {
                gpu.dequantizeNF4(big, into: scratch)
            }
        }
    }

    /// The LoRA path's fused products on the shapes of one Linear's forward and backward: a tinyllama
    /// MLP projection (timed, next to the hand-written kernels and the GEMM path), and odd ones: rows
    /// and features not multiples of the tiles, unaligned rows, ranks 8 to 64. With bf16 storage and
    /// r % 8 == 0 they run as split-bf16 GEMMs (CUDA/Kernels/SplitBF16Kernels.swift), otherwise (and
    /// in the "kernels" cases) on CUDA/Kernels/LoRAKernels.swift.
    mutating func lora() throws {
        try loraCase(tokens: 2048, inFeatures: 2048, outFeatures: 5632, rank: 16, timed: true)
        try loraCase(tokens: 1000, inFeatures: 1001, outFeatures: 300, rank: 8)
        try loraCase(tokens: 300, inFeatures: 520, outFeatures: 257, rank: 24)
        try loraCase(tokens: 77, inFeatures: 256, outFeatures: 1030, rank: 64)
        try loraCase(tokens: 300, inFeatures: 520, outFeatures: 257, rank: 12)
        try loraCase(tokens: 1000, inFeatures: 1001, outFeatures: 300, rank: 16, kernels: true)
        try loraGroupCase(tokens: 2048, inFeatures: 2048, ranks: [16, 16, 16], timed: true)
        try loraGroupCase(tokens: 300, inFeatures: 520, ranks: [8, 24])
        try loraGroupCase(tokens: 77, inFeatures: 264, ranks: [16, 12])   // r 12: one adapter at a time
    }

    /// Adapters sharing their input (q, k, v): the grouped down products, A gradients and up-adds into
    /// dL/dx against the CPU's one-adapter-at-a-time ops; timed beside the three single-adapter calls.
    mutating func loraGroupCase(tokens: Int, inFeatures k: Int, ranks: [Int], timed: Bool = false) throws {
        say("LoRA adapters sharing x: \(tokens) tokens, \(k) features, r \(ranks.map(String.init).joined(separator: ", ")):")
        let x = try pair([tokens, k], storage)
        let a = try ranks.map { try pair([$0, k], .f32, in: -0.05...0.05) }
        let z = try ranks.map { try output([tokens, $0], .f32) }
        cpu.loraDown(x.cpu, a.map(\.cpu), into: z.map(\.cpu))
        gpu.loraDown(x.gpu, a.map(\.gpu), into: z.map(\.gpu))
        for (i, zi) in z.enumerated() { check("down z\(i) = x·A\(i)ᵀ (f32)", zi) }
        let dz = try ranks.map { try pair([tokens, $0], .f32, in: -0.5...0.5) }
        let gradA = try ranks.map { try pair([$0, k], .f32) }
        cpu.loraGradient(x.cpu, dz.map(\.cpu), intoTransposed: gradA.map(\.cpu))
        gpu.loraGradient(x.gpu, dz.map(\.gpu), intoTransposed: gradA.map(\.gpu))
        for (i, g) in gradA.enumerated() { check("gradient dA\(i) += dz\(i)ᵀ·x (f32)", g) }
        let dx = try pair([tokens, k], storage)
        cpu.loraUpAdd(dz.map(\.cpu), a.map(\.cpu), into: dx.cpu)
        gpu.loraUpAdd(dz.map(\.gpu), a.map(\.gpu), into: dx.gpu)
        check("up-add dX += Σ dz·A (\(storage))", dx)
        guard timed else { return }
        let gpu = self.gpu
        time("grouped: down products") { gpu.loraDown(x.gpu, a.map(\.gpu), into: z.map(\.gpu)) }
        time("one at a time: down products") {
            for (ai, zi) in zip(a, z) { gpu.loraDown(x.gpu, ai.gpu, weightTransposed: false, into: zi.gpu, alpha: 1) }
        }
        time("grouped: A gradients") { gpu.loraGradient(x.gpu, dz.map(\.gpu), intoTransposed: gradA.map(\.gpu)) }
        time("one at a time: A gradients") {
            for (dzi, gi) in zip(dz, gradA) { gpu.loraGradient(x.gpu, dzi.gpu, into: gi.gpu, gradientTransposed: true, alpha: 1) }
        }
        time("grouped: up-adds into dX") { gpu.loraUpAdd(dz.map(\.gpu), a.map(\.gpu), into: dx.gpu) }
        time("one at a time: up-adds into dX") {
            for (dzi, ai) in zip(dz, a) { gpu.loraUpAdd(dzi.gpu, ai.gpu, weightTransposed: true, scale: 1, into: dx.gpu) }
        }
    }

    mutating func loraCase(tokens: Int, inFeatures k: Int, outFeatures o: Int, rank r: Int, timed: Bool = false,
                           kernels: Bool = false) throws {
        let saved = CUDASplitBF16.forceKernels
        CUDASplitBF16.forceKernels = saved || kernels
        defer { CUDASplitBF16.forceKernels = saved }
        let path = gpu.usesSplitLoRA(rank: r, features: k, o) ? "split-bf16 GEMMs" : "kernels"
        say("LoRA fused ops \(tokens) tokens, \(k) → \(o), r \(r) (\(path)):")
        let s: Float = 2
        let x = try pair([tokens, k], storage), a = try pair([r, k], .f32, in: -0.05...0.05)
        let b = try pair([o, r], .f32, in: -0.05...0.05)
        let z = try output([tokens, r], .f32)
        cpu.loraDown(x.cpu, a.cpu, weightTransposed: false, into: z.cpu, alpha: 1)
        gpu.loraDown(x.gpu, a.gpu, weightTransposed: false, into: z.gpu, alpha: 1)
        check("down z = x·Aᵀ (f32)", z)
        let y = try pair([tokens, o], storage)
        cpu.loraUpAdd(z.cpu, b.cpu, weightTransposed: false, scale: s, into: y.cpu)
        gpu.loraUpAdd(z.gpu, b.gpu, weightTransposed: false, scale: s, into: y.gpu)
        check("up-add y += s·z·Bᵀ (\(storage))", y)
        let dy = try pair([tokens, o], storage), gradB = try pair([o, r], .f32)
        cpu.loraGradient(dy.cpu, z.cpu, into: gradB.cpu, gradientTransposed: false, alpha: s)
        gpu.loraGradient(dy.gpu, z.gpu, into: gradB.gpu, gradientTransposed: false, alpha: s)
        check("gradient dB += s·dYᵀ·z (f32)", gradB)
        let dz = try output([tokens, r], .f32)
        cpu.loraDown(dy.cpu, b.cpu, weightTransposed: true, into: dz.cpu, alpha: s)
        gpu.loraDown(dy.gpu, b.gpu, weightTransposed: true, into: dz.gpu, alpha: s)
        check("down dz = s·dY·B (f32)", dz)
        let gradA = try pair([r, k], .f32)
        cpu.loraGradient(x.cpu, dz.cpu, into: gradA.cpu, gradientTransposed: true, alpha: 1)
        gpu.loraGradient(x.gpu, dz.gpu, into: gradA.gpu, gradientTransposed: true, alpha: 1)
        check("gradient dA += dzᵀ·x (f32)", gradA)
        let dx = try pair([tokens, k], storage)
        cpu.loraUpAdd(dz.cpu, a.cpu, weightTransposed: true, scale: 1, into: dx.cpu)
        gpu.loraUpAdd(dz.gpu, a.gpu, weightTransposed: true, scale: 1, into: dx.gpu)
        check("up-add dX += dz·A (\(storage))", dx)
        // Reruns must give the same bits (no atomics; the resume test relies on it).
        let again = try output([o, r], .f32)
        gpu.copy(gradB.gpu, into: again.gpu)
        gpu.loraGradient(dy.gpu, z.gpu, into: gradB.gpu, gradientTransposed: false, alpha: s)
        gpu.loraGradient(dy.gpu, z.gpu, into: again.gpu, gradientTransposed: false, alpha: s)
        let same = gpu.downloadBytes(gradB.gpu) == gpu.downloadBytes(again.gpu)
        verdict(same, "gradient rerun bit-identical")
        guard timed else { return }
        let t = Double(tokens), kk = Double(k), oo = Double(o), rr = Double(r), e = Double(storage.size)
        // The six products of a LoRA Linear's step: name, FLOPs, bytes of activations, the call.
        let gpu = self.gpu
        let products: [(String, Double, Double, () -> Void)] = [
            ("down x·Aᵀ (reads x once)", 2 * t * kk * rr, t * kk * e,
             { gpu.loraDown(x.gpu, a.gpu, weightTransposed: false, into: z.gpu, alpha: 1) }),
            ("up-add y += s·z·Bᵀ (y read + written)", 2 * t * oo * rr, 2 * t * oo * e,
             { gpu.loraUpAdd(z.gpu, b.gpu, weightTransposed: false, scale: s, into: y.gpu) }),
            ("gradient dB += s·dYᵀ·z", 2 * t * oo * rr, t * oo * e,
             { gpu.loraGradient(dy.gpu, z.gpu, into: gradB.gpu, gradientTransposed: false, alpha: s) }),
            ("down dz = s·dY·B", 2 * t * oo * rr, t * oo * e,
             { gpu.loraDown(dy.gpu, b.gpu, weightTransposed: true, into: dz.gpu, alpha: s) }),
            ("gradient dA += dzᵀ·x", 2 * t * kk * rr, t * kk * e,
             { gpu.loraGradient(x.gpu, dz.gpu, into: gradA.gpu, gradientTransposed: true, alpha: 1) }),
            ("up-add dX += dz·A", 2 * t * kk * rr, 2 * t * kk * e,
             { gpu.loraUpAdd(dz.gpu, a.gpu, weightTransposed: true, scale: 1, into: dx.gpu) }),
        ]
        for (name, flops, bytes, call) in products { time(name, flops: flops, bytes: bytes, call) }
        // The hand-written kernels (SWIFTLET_LORA_KERNELS=1), where the split path ran above.
        if gpu.usesSplitLoRA(rank: r, features: k, o) {
            CUDASplitBF16.forceKernels = true
            for (name, flops, bytes, call) in products { time("kernels: " + name, flops: flops, bytes: bytes, call) }
            CUDASplitBF16.forceKernels = saved
        }
        // The GEMM path these replace (Linear with SWIFTLET_LORA=gemm): widen, f32 GEMM, add.
        let xWide = try gpu.empty([tokens, k], .f32), yWide = try gpu.empty([tokens, o], .f32)
        time("GEMM path: widen x, x̃·Aᵀ", flops: 2 * t * kk * rr) {
            gpu.copy(x.gpu, into: xWide)
            gpu.matmul(xWide, transposeA: false, a.gpu, transposeB: true, into: z.gpu, alpha: 1, beta: 0)
        }
        time("GEMM path: z·Bᵀ into f32, add into y", flops: 2 * t * oo * rr) {
            gpu.matmul(z.gpu, transposeA: false, b.gpu, transposeB: true, into: yWide, alpha: 1, beta: 0)
            gpu.add(yWide, into: y.gpu, alpha: s)
        }
        time("GEMM path: widen dY, s·dYᵀ·z", flops: 2 * t * oo * rr) {
            gpu.copy(dy.gpu, into: yWide)
            gpu.matmul(yWide, transposeA: true, z.gpu, transposeB: false, into: gradB.gpu, alpha: s, beta: 1)
        }
    }

    mutating func matmul() throws {
        say("matmul (cuBLASLt, f32 accumulation):")
        let tokens = 2048, hidden = 4096, r = 16
        let x = try pair([tokens, hidden], storage), w = try pair([hidden, hidden], storage, in: -0.05...0.05)
        let y = try output([tokens, hidden], storage)
        for b in [cpu, gpu] as [any Backend] {
            let (xx, ww, yy) = b === cpu ? (x.cpu, w.cpu, y.cpu) : (x.gpu, w.gpu, y.gpu)
            b.matmul(xx, transposeA: false, ww, transposeB: true, into: yy, alpha: 1, beta: 0)
        }
        check("x·Wᵀ 2048×4096×4096 → \(storage)", y)
        time("x·Wᵀ 2048×4096×4096", flops: 2.0 * Double(tokens * hidden * hidden)) {
            gpu.matmul(x.gpu, transposeA: false, w.gpu, transposeB: true, into: y.gpu, alpha: 1, beta: 0)
        }
        // dX = dY·W (no transposes), accumulating (beta 1) into existing values
        let dy = try pair([tokens, hidden], storage), dx = try pair([tokens, hidden], storage)
        cpu.matmul(dy.cpu, transposeA: false, w.cpu, transposeB: false, into: dx.cpu, alpha: 1, beta: 1)
        gpu.matmul(dy.gpu, transposeA: false, w.gpu, transposeB: false, into: dx.gpu, alpha: 1, beta: 1)
        check("dY·W + dX (beta 1) → \(storage)", dx)
        // LoRA gradient: gradB += s·dYᵀ·z, bf16 inputs, f32 output
        let z = try pair([tokens, r], storage), gradB = try pair([hidden, r], .f32)
        cpu.matmul(dy.cpu, transposeA: true, z.cpu, transposeB: false, into: gradB.cpu, alpha: 0.5, beta: 1)
        gpu.matmul(dy.gpu, transposeA: true, z.gpu, transposeB: false, into: gradB.gpu, alpha: 0.5, beta: 1)
        check("s·dYᵀ·z + gradB → f32 (LoRA B grad)", gradB)
        // both transposed, odd sizes, f32 inputs
        let a = try pair([37, 53], .f32), bm = try pair([29, 37], .f32), c = try output([53, 29], .f32)
        cpu.matmul(a.cpu, transposeA: true, bm.cpu, transposeB: true, into: c.cpu, alpha: 1, beta: 0)
        gpu.matmul(a.gpu, transposeA: true, bm.gpu, transposeB: true, into: c.gpu, alpha: 1, beta: 0)
        check("aᵀ·bᵀ 53×29×37 f32", c)
    }

    /// Llama's w and Gemma's (1 + w) (weight offset 1, w near 0 as Gemma stores it; 3584 wide as
    /// gemma-2-9b), on the eight-wide kernels, and an odd width on the scalar ones.
    mutating func norms() throws {
        for (offset, tokens, hidden) in [(Float(0), 2048, 4096), (1, 2048, 3584), (0, 64, 1004)] {
            say("RMSNorm \(tokens)×\(hidden)\(offset == 0 ? "" : ", weight (1 + w) (gemma)")\(hidden % 8 == 0 ? "" : " (scalar kernels)"):")
            let x = try pair([tokens, hidden], storage, in: -2...2)
            let w = try pair([hidden], storage, in: (0.5 - offset)...(1.5 - offset))
            let y = try output([tokens, hidden], storage), rstd = try output([tokens], .f32)
            cpu.rmsNorm(x.cpu, weight: w.cpu, weightOffset: offset, eps: 1e-5, into: y.cpu, rstd: rstd.cpu)
            gpu.rmsNorm(x.gpu, weight: w.gpu, weightOffset: offset, eps: 1e-5, into: y.gpu, rstd: rstd.gpu)
            check("forward y", y)
            check("forward rstd (f32)", rstd)
            let timed = offset == 0 && hidden % 8 == 0
            if timed {
                time("forward", bytes: Double(tokens * hidden * 4)) {
                    gpu.rmsNorm(x.gpu, weight: w.gpu, eps: 1e-5, into: y.gpu, rstd: rstd.gpu)
                }
            }
            let dy = try pair([tokens, hidden], storage), dx = try pair([tokens, hidden], storage)
            cpu.rmsNormBackward(dOut: dy.cpu, x: x.cpu, weight: w.cpu, weightOffset: offset, rstd: rstd.cpu, accumulateInto: dx.cpu)
            gpu.rmsNormBackward(dOut: dy.gpu, x: x.gpu, weight: w.gpu, weightOffset: offset, rstd: rstd.gpu, accumulateInto: dx.gpu)
            check("backward dX (accumulated, \(storage))", dx)
            let dx32 = try pair([tokens, hidden], .f32)
            cpu.rmsNormBackward(dOut: dy.cpu, x: x.cpu, weight: w.cpu, weightOffset: offset, rstd: rstd.cpu, accumulateInto: dx32.cpu)
            gpu.rmsNormBackward(dOut: dy.gpu, x: x.gpu, weight: w.gpu, weightOffset: offset, rstd: rstd.gpu, accumulateInto: dx32.gpu)
            check("backward dX (accumulated, f32)", dx32)
            if timed {
                time("backward", bytes: Double(tokens * hidden * 8)) {
                    gpu.rmsNormBackward(dOut: dy.gpu, x: x.gpu, weight: w.gpu, rstd: rstd.gpu, accumulateInto: dx.gpu)
                }
            }
        }
    }

    mutating func ropeAndAttention() throws {
        // head dim 128: the eight-wide kernel; 72 (a half of 36): the scalar one
        for (heads, kvHeads, headDim) in [(32, 8, 128), (4, 2, 72)] {
            let tokens = 2048
            var config = LlamaConfig(vocabSize: 32000, hiddenSize: heads * headDim, intermediateSize: 1, layers: 1,
                                     heads: heads, kvHeads: kvHeads, rope: RoPEScaling(theta: 10000))
            config.maxPositionEmbeddings = 4096
            say("RoPE 2048 tokens × \(heads) heads × \(headDim)\(headDim % 16 == 0 ? "" : " (scalar kernel)"):")
            let positions = (0..<tokens).map { Int32($0) }
            let pos = try ints(positions)
            let tables = (try RoPEFrequencies.table(config, positions: tokens, sequenceLength: tokens, on: cpu),
                          try RoPEFrequencies.table(config, positions: tokens, sequenceLength: tokens, on: gpu))
            let q = try pair([tokens, heads * headDim], storage)
            cpu.rope(q.cpu, positions: pos.cpu, table: tables.0, heads: heads, inverse: false)
            gpu.rope(q.gpu, positions: pos.gpu, table: tables.1, heads: heads, inverse: false)
            check("forward (in place)", q)
            cpu.rope(q.cpu, positions: pos.cpu, table: tables.0, heads: heads, inverse: true)
            gpu.rope(q.gpu, positions: pos.gpu, table: tables.1, heads: heads, inverse: true)
            check("inverse (backward)", q)
            if headDim % 16 == 0 {
                time("forward", bytes: Double(q.gpu.count * 4)) {
                    gpu.rope(q.gpu, positions: pos.gpu, table: tables.1, heads: heads, inverse: false)
                }
            }
        }

        // Every attention kernel family: cuDNN's fused attention (whole rows, d 64 and 128), the
        // tensor-core tiles (head dims 64, 96, 128 and 256 on 8.0+) and the simple kernels, with
        // GQA and MHA, packed rows with padding, windows and ragged tiles (200, 300).
        try attention("causal GQA 1×2048, 32/8 heads, d 128", rows: 1, columns: 2048, heads: 32, kvHeads: 8,
                      headDim: 128, timed: true)
        try attention("packed rows + padding + window 64, 2×512, d 128", rows: 2, columns: 512, heads: 32, kvHeads: 8,
                      headDim: 128, window: 64, packed: (200, 450))
        try attention("window 100, 1×300, 8 heads, d 128", rows: 1, columns: 300, heads: 8, kvHeads: 8, headDim: 128,
                      window: 100)
        try attention("causal GQA 1×2048, 32/4 heads, d 64 (tinyllama)", rows: 1, columns: 2048, heads: 32, kvHeads: 4,
                      headDim: 64, timed: true)
        try attention("whole rows 2×256, 8/8 heads (MHA), d 128", rows: 2, columns: 256, heads: 8, kvHeads: 8, headDim: 128)
        try attention("whole rows 2×384, 16/2 heads, d 64", rows: 2, columns: 384, heads: 16, kvHeads: 2, headDim: 64)
        try attention("packed rows + padding, 2×200, 32/8 heads, d 64", rows: 2, columns: 200, heads: 32, kvHeads: 8,
                      headDim: 64, packed: (70, 150))
        try attention("d 96, 1×200, 8/2 heads", rows: 1, columns: 200, heads: 8, kvHeads: 2, headDim: 96,
                      packed: (90, 170))
        try attention("Phi-3: window 2047, 1×2048, 32/32 heads, d 96", rows: 1, columns: 2048, heads: 32, kvHeads: 32,
                      headDim: 96, window: 2047, timed: true)
        try attention("softcap 1.5, window 64, 2×300, 8/4 heads, d 96", rows: 2, columns: 300, heads: 8, kvHeads: 4,
                      headDim: 96, window: 64, packed: (100, 250), softcap: 1.5)
        // Gemma 2's softcapped scores, on both kernel families (the _softcap specialisations): a cap of
        // 1.5 keeps tanh far from linear. Head dim 256 (Gemma 2 and 3) runs the wide tiles: operands in
        // shared memory, dK/dV in halves of d; MHA writes dK and dV from the block, GQA through the group sum.
        try attention("softcap 1.5, causal GQA 1×512, 16/8 heads, d 128", rows: 1, columns: 512, heads: 16, kvHeads: 8,
                      headDim: 128, softcap: 1.5)
        try attention("softcap 1.5, packed + padding + window 64, 2×300, 8/4 heads, d 64", rows: 2, columns: 300,
                      heads: 8, kvHeads: 4, headDim: 64, window: 64, packed: (100, 250), softcap: 1.5)
        try attention("softcap 1.5, window 128, 2×300, 8/4 heads, d 256, scale 1/16", rows: 2, columns: 300, heads: 8,
                      kvHeads: 4, headDim: 256, window: 128, packed: (120, 280), softcap: 1.5, scale: 1.0 / 16)
        try attention("whole rows 2×200, 4/4 heads (MHA), d 256", rows: 2, columns: 200, heads: 4, kvHeads: 4, headDim: 256)
        try attention("gemma 2 9B: softcap 50, window 4096, 1×2048, 16/8 heads, d 256, scale 1/16", rows: 1, columns: 2048,
                      heads: 16, kvHeads: 8, headDim: 256, window: 4096, softcap: 50, scale: 1.0 / 16, timed: true)
        // Windows shorter than whole rows (cuDNN's band mask, opt-in) at d 128 and 256, and Gemma 3's sliding layers.
        try attention("whole rows + window 256, 2×512, 32/8 heads, d 128", rows: 2, columns: 512, heads: 32, kvHeads: 8,
                      headDim: 128, window: 256)
        try attention("whole rows + window 100, 2×256, 8/4 heads, d 256", rows: 2, columns: 256, heads: 8, kvHeads: 4,
                      headDim: 256, window: 100)
        try attention("gemma 3 4B: window 1024, 1×2048, 8/4 heads, d 256, scale 1/16", rows: 1, columns: 2048, heads: 8,
                      kvHeads: 4, headDim: 256, window: 1024, scale: 1.0 / 16, timed: true)
        // A GPU that refuses the tiles falls back to the simple kernels and trains on. The refusal here is the
        // driver's own: the launches ask for more dynamic shared memory than the GPU has, as tiles that do not
        // fit would (the forward's and the backward's refusals each caught, then the tiles run again).
        if gpu.usesFlashAttention(headDim: 128) {
            CUDAFlashAttention.sharedBytesOverAsk = gpu.device.sharedMemoryPerBlockOptIn + 1
            defer { CUDAFlashAttention.sharedBytesOverAsk = 0; gpu.flashRefused[128] = nil }
            try attention("tiles refused by the driver (simple kernels), 2×300, 8/4 heads, d 128", rows: 2, columns: 300,
                          heads: 8, kvHeads: 4, headDim: 128, window: 64, packed: (100, 250), refused: true)
            CUDAFlashAttention.sharedBytesOverAsk = 0
            gpu.flashRefused[128] = nil
            try attention("after a refusal, the tiles again, 2×300, 8/4 heads, d 128", rows: 2, columns: 300,
                          heads: 8, kvHeads: 4, headDim: 128, window: 64, packed: (100, 250), tilesOnly: true)
        }
    }

    /// One attention geometry, forward and backward against the CPU, on each kernel family that
    /// applies (cuDNN's fused attention, our tensor-core tiles, the simple kernels). `packed` (a, b):
    /// columns below a are sequence 0, below b sequence 1, the rest padding. Timed cases also time
    /// each family. `tilesOnly` runs the tiles alone; `refused`, the tiles when the driver refuses them
    /// (`CUDAFlashAttention.sharedBytesOverAsk`): each refusal must be recorded, and the simple kernels
    /// must give the outputs.
    mutating func attention(_ label: String, rows: Int, columns: Int, heads: Int, kvHeads: Int, headDim: Int,
                            window: Int = 0, packed: (Int, Int)? = nil, softcap: Float? = nil, scale: Float? = nil,
                            timed: Bool = false, tilesOnly: Bool = false, refused: Bool = false) throws {
        var ids = [Int32](repeating: 0, count: rows * columns)
        if let (a, b) = packed {
            for n in ids.indices { let c = n % columns; ids[n] = c < a ? 0 : c < b ? 1 : -1 }
        }
        let seq = try ints(ids)
        let n = rows * columns
        let whole = AttentionLayout.rowsAreWhole(ids, columns: columns)
        let layouts = (AttentionLayout(rows: rows, columns: columns, heads: heads, kvHeads: kvHeads, headDim: headDim,
                                       sequenceIds: seq.cpu, slidingWindow: window == 0 ? nil : window,
                                       scale: scale, softcap: softcap, wholeRows: whole),
                       AttentionLayout(rows: rows, columns: columns, heads: heads, kvHeads: kvHeads, headDim: headDim,
                                       sequenceIds: seq.gpu, slidingWindow: window == 0 ? nil : window,
                                       scale: scale, softcap: softcap, wholeRows: whole))
        let q = try pair([n, heads * headDim], storage, in: -2...2), k = try pair([n, kvHeads * headDim], storage, in: -2...2)
        let v = try pair([n, kvHeads * headDim], storage)
        let out = try output([n, heads * headDim], storage), lse = try output([n, heads], .f32)
        let dOut = try pair([n, heads * headDim], storage)
        let dq = try output([n, heads * headDim], storage), dk = try output([n, kvHeads * headDim], storage)
        let dv = try output([n, kvHeads * headDim], storage)
        cpu.attention(q.cpu, k.cpu, v.cpu, layout: layouts.0, into: out.cpu, logSumExp: lse.cpu)
        cpu.attentionBackward(dOut: dOut.cpu, q: q.cpu, k: k.cpu, v: v.cpu, out: out.cpu, logSumExp: lse.cpu,
                              layout: layouts.0, dQ: dq.cpu, dK: dk.cpu, dV: dv.cpu)
        // causal: half of the QKᵀ and PV products; the backward does 2.5 times the forward's work
        let flops = 4.0 * Double(rows) * Double(columns) * Double(columns) / 2 * Double(heads * headDim)
        let chosen = gpu.attentionKernels
        defer { gpu.attentionKernels = chosen }
        var families: [(kernels: CUDABackend.AttentionKernels, name: String, pairSplit: Bool, extended: Bool)] = []
        let extended = CUDNNAttention.extended
        defer { CUDNNAttention.extended = extended }
        gpu.attentionKernels = .cudnn
        CUDNNAttention.extended = false
        if gpu.usesCUDNNAttention(layouts.1, []) {
            families.append((.cudnn, "cuDNN", false, false))
        } else {
            // head dims 96 and 256 and windows shorter than the row on cuDNN (opt-in), checked and timed beside
            CUDNNAttention.extended = true
            if gpu.usesCUDNNAttention(layouts.1, []) { families.append((.cudnn, "cuDNN, extended", false, true)) }
        }
        gpu.attentionKernels = .swiftlet
        let pairSplit = CUDAFlashAttention.pairSplit
        defer { CUDAFlashAttention.pairSplit = pairSplit }
        if gpu.usesFlashAttention(headDim: headDim) {
            families.append((.swiftlet, "tensor cores", false, false))
            // wide heads: dK/dV with the pair's scores split over d too (opt-in), checked and timed beside
            CUDAFlashAttention.pairSplit = true
            if CUDAFlashAttention.Tiles.wide(headDim) && gpu.usesFlashAttention(headDim: headDim) {
                families.append((.swiftlet, "tensor cores, dK/dV pair split", true, false))
            }
        }
        if families.isEmpty || timed { families.append((.simple, "simple", false, false)) }
        if tilesOnly || refused { families = [(.swiftlet, refused ? "tensor cores, refused" : "tensor cores", false, false)] }
        for (family, name, split, cudnnExtended) in families {
            gpu.attentionKernels = family
            CUDAFlashAttention.pairSplit = split
            CUDNNAttention.extended = cudnnExtended
            say("attention \(label) [\(name)]:")
            gpu.attention(q.gpu, k.gpu, v.gpu, layout: layouts.1, into: out.gpu, logSumExp: lse.gpu)
            if refused { reportRefusal("forward", headDim: headDim) }
            check("forward out", out)
            // -inf rows (padding) compare as non-finite on both sides; count them out by checking finite ones
            let lseGPU = gpu.download(lse.gpu), lseCPU = cpu.download(lse.cpu)
            let mismatchedPadding = zip(lseGPU, lseCPU).filter { $0.0.isFinite != $0.1.isFinite }.count
            let finite = zip(lseGPU, lseCPU).filter { $0.1.isFinite }
            let e = ErrorMeasure.measure(gpu: finite.map(\.0), cpu: finite.map(\.1))
            let ok = mismatchedPadding == 0 && e.passes(maxBound: 1e-4, meanBound: 1e-5)
            verdict(ok, "forward log-sum-exp (f32)", "max rel \(fmt(e.maxRelative)) (≤ 1e-4)  padding rows agreeing: \(mismatchedPadding == 0)")
            gpu.attentionBackward(dOut: dOut.gpu, q: q.gpu, k: k.gpu, v: v.gpu, out: out.gpu, logSumExp: lse.gpu,
                                  layout: layouts.1, dQ: dq.gpu, dK: dk.gpu, dV: dv.gpu)
            // a refused tile falls back to the simple kernels, which would pass in its name
            if refused {
                reportRefusal("backward", headDim: headDim)
            } else if family == .swiftlet, let why = gpu.flashRefused[headDim] {
                verdict(false, "tensor cores refused (simple ones ran)", why)
            } else if family == .cudnn, gpu.cudnnFailedKeys.contains(gpu.cudnnKey(layouts.1, backward: false)) {
                // no engine for this geometry is cuDNN's answer, not a fault: say that our kernels ran in its name
                say("  info  cuDNN has no engine for this geometry (see above): the lines below are our kernels'")
            }
            check("backward dQ", dq)
            check("backward dK", dk)
            check("backward dV", dv)
            guard timed else { continue }
            time("forward (\(name))", flops: flops) {
                gpu.attention(q.gpu, k.gpu, v.gpu, layout: layouts.1, into: out.gpu, logSumExp: lse.gpu)
            }
            time("backward (\(name))", flops: 2.5 * flops) {
                gpu.attentionBackward(dOut: dOut.gpu, q: q.gpu, k: k.gpu, v: v.gpu, out: out.gpu, logSumExp: lse.gpu,
                                      layout: layouts.1, dQ: dq.gpu, dK: dk.gpu, dV: dv.gpu)
            }
        }
    }

    /// Whether the op just run recorded the driver's refusal of the tiles; clears it, so the next op tries
    /// the tiles again (and meets its own refusal).
    mutating func reportRefusal(_ op: String, headDim: Int) {
        let why = gpu.flashRefused[headDim]
        verdict(why != nil, "\(op): refusal recorded, simple kernels ran", why.map { String($0.prefix(90)) } ?? "the tiles were not refused")
        gpu.flashRefused[headDim] = nil
    }

    /// The gated linear unit with each activation: SwiGLU (Llama's shape) and GeGLU with tanh
    /// (gemma-2-9b's) on the eight-wide kernels, and an odd size on the scalar ones.
    mutating func mlp() throws {
        for (activation, shape) in [(GatedActivation.silu, [2048, 11008] as Shape), (.geluTanh, [2048, 14336]),
                                    (.silu, [3, 1001]), (.geluTanh, [3, 1001])] {
            say("\(activation == .silu ? "SwiGLU" : "GeGLU (tanh)") \(shape[0])×\(shape[1])\(shape.count % 8 == 0 ? "" : " (scalar kernels)"):")
            let g = try pair(shape, storage, in: -4...4), u = try pair(shape, storage), out = try output(shape, storage)
            cpu.gatedLinearUnit(activation, gate: g.cpu, up: u.cpu, into: out.cpu)
            gpu.gatedLinearUnit(activation, gate: g.gpu, up: u.gpu, into: out.gpu)
            check("forward", out)
            let d = try pair(shape, storage), dg = try output(shape, storage), du = try output(shape, storage)
            cpu.gatedLinearUnitBackward(activation, dOut: d.cpu, gate: g.cpu, up: u.cpu, dGate: dg.cpu, dUp: du.cpu)
            gpu.gatedLinearUnitBackward(activation, dOut: d.gpu, gate: g.gpu, up: u.gpu, dGate: dg.gpu, dUp: du.gpu)
            check("backward dGate", dg)
            check("backward dUp", du)
            // in place (the decoder layer's use): the same bits as separate outputs
            gpu.gatedLinearUnitBackward(activation, dOut: d.gpu, gate: g.gpu, up: u.gpu, dGate: g.gpu, dUp: u.gpu)
            let same = gpu.download(g.gpu) == gpu.download(dg.gpu) && gpu.download(u.gpu) == gpu.download(du.gpu)
            verdict(same, "backward in place = separate outputs")
            // gate | up side by side in one [rows, 2·width] matrix (a mixture's gate_up output)
            let fusedShape: Shape = [shape[0], 2 * shape[1]]
            let gu = try pair(fusedShape, storage, in: -4...4), fusedOut = try output(shape, storage)
            cpu.gatedLinearUnit(activation, gateUp: gu.cpu, into: fusedOut.cpu)
            gpu.gatedLinearUnit(activation, gateUp: gu.gpu, into: fusedOut.gpu)
            check("fused gate | up: forward", fusedOut)
            let dgu = try output(fusedShape, storage)
            cpu.gatedLinearUnitBackward(activation, dOut: d.cpu, gateUp: gu.cpu, dGateUp: dgu.cpu)
            gpu.gatedLinearUnitBackward(activation, dOut: d.gpu, gateUp: gu.gpu, dGateUp: dgu.gpu)
            check("fused gate | up: backward dGate | dUp", dgu)
            gpu.gatedLinearUnitBackward(activation, dOut: d.gpu, gateUp: gu.gpu, dGateUp: gu.gpu)
            let fusedInPlace = gpu.download(gu.gpu) == gpu.download(dgu.gpu)
            verdict(fusedInPlace, "fused backward in place = separate output")
            guard shape.count % 8 == 0 else { continue }
            time("forward", bytes: Double(shape.count * 6)) { gpu.gatedLinearUnit(activation, gate: g.gpu, up: u.gpu, into: out.gpu) }
            time("backward", bytes: Double(shape.count * 10)) {
                gpu.gatedLinearUnitBackward(activation, dOut: d.gpu, gate: g.gpu, up: u.gpu, dGate: dg.gpu, dUp: du.gpu)
            }
        }
    }

    mutating func head() throws {
        say("cross-entropy 2048×32000 (fused gradient), embedding:")
        let rows = 2048, vocab = 32000
        let logits = try pair([rows, vocab], storage, in: -8...8)
        let labels = (0..<rows).map { $0 % 7 == 3 ? Int32(-100) : Int32(generator.next() % UInt64(vocab)) }
        let l = try ints(labels)
        let lossCPU = cpu.crossEntropy(logits: logits.cpu, labels: l.cpu, gradScale: 0.25)
        let lossGPU = gpu.crossEntropy(logits: logits.gpu, labels: l.gpu, gradScale: 0.25)
        checkScalar("loss sum", gpu: lossGPU, cpu: lossCPU, bound: 1e-5)
        check("gradient (in place, \(storage))", logits)
        // Gemma 2's final logit softcapping inside the loss (cap 3: far from linear on logits in [-8, 8]).
        // Capped logits make a flat softmax (p ≈ 1/32000): grad scale 8 keeps the gradient in fp16's
        // normal range (below 6e-5 its subnormals carry fewer bits: mean rel 3.1e-3 at scale 0.25).
        let capped = try pair([rows, vocab], storage, in: -8...8)
        let cappedCPU = cpu.crossEntropy(logits: capped.cpu, labels: l.cpu, softcap: 3, gradScale: 8)
        let cappedGPU = gpu.crossEntropy(logits: capped.gpu, labels: l.gpu, softcap: 3, gradScale: 8)
        checkScalar("loss sum, logit softcap 3", gpu: cappedGPU, cpu: cappedCPU, bound: 1e-5)
        check("gradient through the softcap (\(storage))", capped)
        let table = try pair([vocab, 4096], storage)
        let ids = try ints((0..<rows).map { _ in Int32(generator.next() % UInt64(vocab)) })
        let e = try output([rows, 4096], storage)
        cpu.embedding(table: table.cpu, ids: ids.cpu, into: e.cpu)
        gpu.embedding(table: table.gpu, ids: ids.gpu, into: e.gpu)
        check("embedding gather (exact)", e, exact: true)
        let dTable = try pair([vocab, 4096], .f32)
        cpu.embeddingBackward(dOut: e.cpu, ids: ids.cpu, into: dTable.cpu)
        gpu.embeddingBackward(dOut: e.gpu, ids: ids.gpu, into: dTable.gpu)
        check("embedding scatter-add (f32)", dTable)
    }

    mutating func elementwise() throws {
        say("elementwise:")
        let shape: Shape = [2048, 4096]
        let x = try pair(shape, storage), y = try pair(shape, storage)
        cpu.add(x.cpu, into: y.cpu, alpha: 0.5); gpu.add(x.gpu, into: y.gpu, alpha: 0.5)
        check("add (\(storage))", y)
        let timedOperands = (try pair(shape, storage), try pair(shape, storage))
        time("add", bytes: Double(shape.count * 6)) { gpu.add(timedOperands.0.gpu, into: timedOperands.1.gpu, alpha: 0.5) }
        let odd = (try pair([3, 1001], storage), try pair([3, 1001], storage))
        cpu.add(odd.0.cpu, into: odd.1.cpu, alpha: -2); gpu.add(odd.0.gpu, into: odd.1.gpu, alpha: -2)
        check("add, odd size (scalar kernel)", odd.1)
        let bias = try pair([4096], storage)
        cpu.addBias(bias.cpu, into: y.cpu); gpu.addBias(bias.gpu, into: y.gpu)
        check("add bias", y)
        cpu.multiply(y.cpu, by: x.cpu); gpu.multiply(y.gpu, by: x.gpu)
        check("multiply", y)
        cpu.scale(y.cpu, by: 3); gpu.scale(y.gpu, by: 3)
        check("scale", y)
        let f = try pair([1 << 20], .f32)
        checkScalar("Σx² (f32)", gpu: gpu.sumOfSquares(f.gpu), cpu: cpu.sumOfSquares(f.cpu), bound: 1e-5)
        let converted = try output([1 << 20], storage)
        cpu.copy(f.cpu, into: converted.cpu); gpu.copy(f.gpu, into: converted.gpu)
        let roundedCPU = cpu.download(converted.cpu).map(round)
        let e = ErrorMeasure.measure(gpu: gpu.download(converted.gpu), cpu: roundedCPU)
        let ok = e.passes(maxBound: 0, meanBound: 0)
        verdict(ok, "f32 → \(storage) copy (bit-exact rounding)", "max rel \(fmt(e.maxRelative))")
        let filled = try output([1 << 20], .f32)
        cpu.fillUniform(filled.cpu, seed: 77, bound: 0.3); gpu.fillUniform(filled.gpu, seed: 77, bound: 0.3)
        check("fill uniform (same hash)", filled)
        let dx = try pair(shape, storage), maskShape = try output(shape, storage)
        cpu.dropout(dx.cpu, probability: 0.25, seed: 9, mask: maskShape.cpu)
        gpu.dropout(dx.gpu, probability: 0.25, seed: 9, mask: maskShape.gpu)
        // the same elements dropped; the kept scale 4/3 rounds to bf16 on the GPU
        let maskError = ErrorMeasure.measure(gpu: gpu.download(maskShape.gpu), cpu: cpu.download(maskShape.cpu).map(round))
        let maskOK = maskError.passes(maxBound: 0, meanBound: 0)
        verdict(maskOK, "dropout mask (same hash, exact)", "max rel \(fmt(maskError.maxRelative))")
        check("dropout output", dx)
        let dropped32 = try pair([1 << 20], .f32), mask32 = try output([1 << 20], .f32)
        cpu.dropout(dropped32.cpu, probability: 0.1, seed: 4, mask: mask32.cpu)
        gpu.dropout(dropped32.gpu, probability: 0.1, seed: 4, mask: mask32.gpu)
        check("dropout f32 mask (exact)", mask32, exact: true)
        let wide = try pair(shape, .f32), narrow = try pair(shape, storage)
        cpu.add(wide.cpu, into: narrow.cpu, alpha: 2); gpu.add(wide.gpu, into: narrow.gpu, alpha: 2)
        check("add f32 into \(storage)", narrow)
        try columnCopies()
    }

    /// Backend.copyColumns as a fused projection uses it (Phi-3's qkv_proj: q | k | v columns):
    /// the parts split out, then concatenated back into a poisoned tensor; f32 too. Exact.
    mutating func columnCopies() throws {
        let widths = [3072, 1024, 1024], rows = 2048
        for dtype in [storage, .f32] {
            let fused = try pair([rows, widths.reduce(0, +)], dtype)
            let back = try output(fused.cpu.shape, dtype)
            var column = 0
            for (i, width) in widths.enumerated() {
                let part = try output([rows, width], dtype)
                cpu.copyColumns(fused.cpu, sourceColumn: column, into: part.cpu, destinationColumn: 0, width: width)
                gpu.copyColumns(fused.gpu, sourceColumn: column, into: part.gpu, destinationColumn: 0, width: width)
                check("copy columns: part \(i) of \(widths) (\(dtype), exact)", part, exact: true)
                cpu.copyColumns(part.cpu, sourceColumn: 0, into: back.cpu, destinationColumn: column, width: width)
                gpu.copyColumns(part.gpu, sourceColumn: 0, into: back.gpu, destinationColumn: column, width: width)
                column += width
            }
            check("copy columns: parts concatenated (\(dtype))", back, exact: true)
        }
    }

    mutating func optimizers() throws {
        say("optimizers (f32):")
        let shape: Shape = [4096, 16]
        let p = try pair(shape, .f32), g = try pair(shape, .f32), m = try pair(shape, .f32, in: -0.1...0.1)
        let v = try pair(shape, .f32, in: 0...0.01)
        let hyper = AdamWHyper(lr: 2e-4, weightDecay: 0.01)
        cpu.adamw(parameter: p.cpu, gradient: g.cpu, m: m.cpu, v: v.cpu, step: 3, hyper: hyper)
        gpu.adamw(parameter: p.gpu, gradient: g.gpu, m: m.gpu, v: v.gpu, step: 3, hyper: hyper)
        check("AdamW parameter", p)
        check("AdamW m", m)
        check("AdamW v", v)
        cpu.sgd(parameter: p.cpu, gradient: g.cpu, momentumBuffer: nil, step: 1, hyper: SGDHyper(lr: 0.1, weightDecay: 0.01))
        gpu.sgd(parameter: p.gpu, gradient: g.gpu, momentumBuffer: nil, step: 1, hyper: SGDHyper(lr: 0.1, weightDecay: 0.01))
        check("SGD parameter", p)
        try adamw8bit()
        try multiTensor()
    }

    /// The multi-tensor ops of an optimizer step, over tensors of odd sizes (one empty, partial
    /// chunks and 256-blocks, both AdamW8bit state kinds) with unscaling and clipping active: one
    /// launch each on the GPU against the CPU's tensor-by-tensor loop.
    mutating func multiTensor() throws {
        say("multi-tensor optimizer step (f32, 8 tensors, unscale 1/1024, clip 0.37):")
        let sizes = [1, 37, 255, 4097, 0, 5000, 300, 65536 + 100]
        func list(_ range: ClosedRange<Float>) throws -> [(cpu: Tensor, gpu: Tensor)] {
            try sizes.map { try pair([$0], .f32, in: range) }
        }
        func checkAll(_ name: String, _ tensors: [(cpu: Tensor, gpu: Tensor)]) {
            for (i, t) in tensors.enumerated() where t.cpu.count > 0 { check("\(name) [\(sizes[i])]", t) }
        }
        let multiplier = GradientMultiplier(unscale: 1.0 / 1024, clip: 0.37)
        let g = try list(-1024...1024)

        let normCPU = cpu.sumOfSquares(g.map(\.cpu), scaledBy: multiplier.unscale)
        let normGPU = gpu.sumOfSquares(g.map(\.gpu), scaledBy: multiplier.unscale)
        checkScalar("Σ(g/1024)² over the list (f64)", gpu: normGPU, cpu: normCPU, bound: 1e-12)
        let again = gpu.sumOfSquares(g.map(\.gpu), scaledBy: multiplier.unscale)
        let same = again.bitPattern == normGPU.bitPattern
        verdict(same, "Σ(g/1024)² rerun: the same bits", "\(again)")

        let hyper = AdamWHyper(lr: 2e-4, weightDecay: 0.01)
        let p = try list(-1...1), m = try list(-0.1...0.1), v = try list(0...0.01)
        for step in 3...4 {
            cpu.adamw(parameters: p.map(\.cpu), gradients: g.map(\.cpu), m: m.map(\.cpu), v: v.map(\.cpu),
                      gradientMultiplier: multiplier, step: step, hyper: hyper)
            gpu.adamw(parameters: p.map(\.gpu), gradients: g.map(\.gpu), m: m.map(\.gpu), v: v.map(\.gpu),
                      gradientMultiplier: multiplier, step: step, hyper: hyper)
        }
        checkAll("AdamW parameter", p)
        checkAll("AdamW m", m)
        checkAll("AdamW v", v)

        let sgd = SGDHyper(lr: 0.1, weightDecay: 0.01)
        cpu.sgd(parameters: p.map(\.cpu), gradients: g.map(\.cpu), momentumBuffers: nil, gradientMultiplier: multiplier,
                step: 1, hyper: sgd)
        gpu.sgd(parameters: p.map(\.gpu), gradients: g.map(\.gpu), momentumBuffers: nil, gradientMultiplier: multiplier,
                step: 1, hyper: sgd)
        checkAll("SGD parameter", p)

        let q = try list(-1...1)
        let states = (cpu: try q.map { try AdamW8bitState.zeros(for: $0.cpu) }, gpu: try q.map { try AdamW8bitState.zeros(for: $0.gpu) })
        let hyper8 = AdamWHyper(lr: 1e-3, weightDecay: 0.01)
        for step in 1...3 {
            let grads = try list(-10...10)
            if step == 3 {
                // As in adamw8bit(): the checked step starts from the CPU's parameters and state, since
                // a code on a rounding boundary (bnb's approximate intrinsics) would otherwise move
                // later steps by a whole quantization step.
                for (i, (c, d)) in zip(states.cpu, states.gpu).enumerated() where sizes[i] > 0 {
                    gpu.copy(try gpu.upload(cpu.download(q[i].cpu), [sizes[i]], .f32), into: q[i].gpu)
                    for (ct, dt) in zip(c.tensors, d.tensors) {
                        gpu.copy(try gpu.upload(bytes: cpu.downloadBytes(ct.tensor), ct.tensor.shape, ct.tensor.dtype), into: dt.tensor)
                    }
                }
            }
            cpu.adamw8bit(parameters: q.map(\.cpu), gradients: grads.map(\.cpu), states: states.cpu,
                          gradientMultiplier: multiplier, step: step, hyper: hyper8)
            gpu.adamw8bit(parameters: q.map(\.gpu), gradients: grads.map(\.gpu), states: states.gpu,
                          gradientMultiplier: multiplier, step: step, hyper: hyper8)
        }
        checkAll("AdamW8bit parameter", q)
        for (i, (c, d)) in zip(states.cpu, states.gpu).enumerated() where sizes[i] > 0 {
            for (ct, dt) in zip(c.tensors, d.tensors) {
                guard ct.tensor.dtype == .u8 else {
                    check("AdamW8bit \(ct.suffix) [\(sizes[i])]", (ct.tensor, dt.tensor))
                    continue
                }
                let equal = zip(cpu.downloadBytes(ct.tensor), gpu.downloadBytes(dt.tensor)).filter { $0 == $1 }.count
                let fraction = Double(equal) / Double(sizes[i])
                let ok = fraction >= 0.999
                verdict(ok, "AdamW8bit \(ct.suffix) codes [\(sizes[i])]", "equal \(fmt(100 * fraction, digits: 3))% (≥ 99.9%)")
            }
        }

        // zero: every element +0, poisoned (NaN) outputs included
        let z = try sizes.map { try output([$0], .f32) }
        cpu.zero(z.map(\.cpu))
        gpu.zero(z.map(\.gpu))
        let zeroOK = z.allSatisfy { gpu.downloadBytes($0.gpu).allSatisfy { $0 == 0 } }
        verdict(zeroOK, "zero (NaN-poisoned → +0)")

        // TinyLlama's LoRA tensors at r 16 (22 layers × 7 modules, A and B): one step's launches.
        let shapes = (0..<22).flatMap { _ in [(2048, 2048), (2048, 256), (2048, 256), (2048, 2048), (2048, 5632), (2048, 5632), (5632, 2048)] }
        let lora = try shapes.flatMap { [try gpu.zeros([16, $0.0], .f32), try gpu.zeros([$0.1, 16], .f32)] }
        let (lg, lm, lv) = (try lora.map { try gpu.zeros($0.shape, .f32) }, try lora.map { try gpu.zeros($0.shape, .f32) },
                            try lora.map { try gpu.zeros($0.shape, .f32) })
        let elements = Double(lora.reduce(0) { $0 + $1.count })
        time("norm over \(lora.count) LoRA gradients", bytes: 4 * elements) { _ = gpu.sumOfSquares(lg, scaledBy: 1) }
        time("AdamW over \(lora.count) LoRA tensors", bytes: 28 * elements) {
            gpu.adamw(parameters: lora, gradients: lg, m: lm, v: lv, gradientMultiplier: multiplier, step: 5, hyper: hyper)
        }
        time("zero \(lora.count) LoRA gradients", bytes: 4 * elements) { gpu.zero(lg) }
    }

    /// bitsandbytes' AdamW8bit, 5 steps (the fifth checked, from the CPU's state after four): a
    /// 32-bit-state tensor, two 8-bit ones with a partial last block, and two all-zero blocks in the first gradient (LoRA A's first step). The GPU divides and
    /// raises to powers with bnb's approximate intrinsics, so a code on a rounding boundary may differ.
    mutating func adamw8bit() throws {
        let hyper = AdamWHyper(lr: 1e-3, weightDecay: 0.01)
        for n in [3000, 5000, 65536 + 100] {
            let p = try pair([n], .f32)
            let states = (cpu: try AdamW8bitState.zeros(for: p.cpu), gpu: try AdamW8bitState.zeros(for: p.gpu))
            for step in 1...5 {
                var values = (0..<n).map { _ in generator.uniform(in: -0.01..<0.01) }
                if step == 1 { for i in 0..<Swift.min(512, n) { values[i] = 0 } }
                let g = (cpu: try cpu.upload(values, [n], .f32), gpu: try gpu.upload(values, [n], .f32))
                if step == 5 {
                    // The checked step starts from the CPU's parameters and state: a code that lands
                    // on the other side of a rounding boundary in an earlier step would otherwise
                    // move the parameters of later steps by a whole quantization step.
                    gpu.copy(try gpu.upload(cpu.download(p.cpu), [n], .f32), into: p.gpu)
                    for (c, g) in zip(states.cpu.tensors, states.gpu.tensors) {
                        gpu.copy(try gpu.upload(bytes: cpu.downloadBytes(c.tensor), c.tensor.shape, c.tensor.dtype), into: g.tensor)
                    }
                }
                cpu.adamw8bit(parameter: p.cpu, gradient: g.cpu, state: states.cpu, step: step, hyper: hyper)
                gpu.adamw8bit(parameter: p.gpu, gradient: g.gpu, state: states.gpu, step: step, hyper: hyper)
            }
            check("AdamW8bit \(n) parameter", p)
            for (c, g) in zip(states.cpu.tensors, states.gpu.tensors) {
                guard c.tensor.dtype == .u8 else {
                    check("AdamW8bit \(n) \(c.suffix)", (c.tensor, g.tensor))
                    continue
                }
                let equal = zip(cpu.downloadBytes(c.tensor), gpu.downloadBytes(g.tensor)).filter { $0 == $1 }.count
                let fraction = Double(equal) / Double(n)
                let ok = fraction >= 0.999
                verdict(ok, "AdamW8bit \(n) \(c.suffix) codes", "equal \(fmt(100 * fraction, digits: 3))% (≥ 99.9%)")
            }
        }
    }
}

/// Short numbers for the self-test's lines.
func fmt(_ x: Double, digits: Int? = nil) -> String {
    if let digits { return String(format: "%.\(digits)f", x) }
    return x == 0 ? "0" : String(format: "%.2e", x)
}
