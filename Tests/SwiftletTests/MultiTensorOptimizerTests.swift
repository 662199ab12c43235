import XCTest
@testable import Swiftlet

/// The multi-tensor ops of an optimizer step on the CPU reference: the norm over a list of
/// gradients, the zero fill, and the unscale / clip factors folded into the updates. Everything here
/// must be bit-identical to the per-tensor, scale-in-place path it replaced.
final class MultiTensorOptimizerTests: XCTestCase {
    let cpu = CPUBackend()
    /// Odd sizes: under and over AdamW8bit's 4096-element threshold, partial 256-blocks, one empty.
    let sizes = [1, 37, 255, 4097, 0, 5000, 300]

    /// Values over many magnitudes (down to subnormal products once unscaled), both signs.
    func values(_ n: Int, _ generator: inout SplitMix64, spread: Float = 1) -> [Float] {
        (0..<n).map { i in
            let v = generator.uniform(in: -spread..<spread)
            return i % 7 == 3 ? v * 1e-36 : v
        }
    }

    func tensors(_ generator: inout SplitMix64, spread: Float = 1) throws -> [Tensor] {
        try sizes.map { try cpu.upload(values($0, &generator, spread: spread), [$0], .f32) }
    }

    func copies(_ list: [Tensor]) throws -> [Tensor] {
        try list.map { try cpu.upload(cpu.download($0), $0.shape, .f32) }
    }

    func bits(_ list: [Tensor]) -> [[UInt8]] { list.map(cpu.downloadBytes) }

    func testNormOverAListEqualsThePerTensorSums() throws {
        var g = SplitMix64(seed: 1)
        let list = try tensors(&g)
        // The norm as LoRAOptimizer computed it before: each tensor's Σg² (GradientClipping's
        // reference), added in list order.
        let perTensor = list.reduce(0.0) { $0 + GradientClipping.sumOfSquares(UnsafeBufferPointer($1.floats)) }
        XCTAssertEqual(cpu.sumOfSquares(list, scaledBy: 1).bitPattern, perTensor.bitPattern)
        XCTAssertEqual(cpu.sumOfSquares(list[1]).bitPattern, GradientClipping.sumOfSquares(UnsafeBufferPointer(list[1].floats)).bitPattern)
        XCTAssertEqual(cpu.sumOfSquares([], scaledBy: 1), 0)

        // With a factor: the norm of the gradients after an in-place scale by it, bit for bit.
        for factor: Float in [1.0 / 65536, 1.0 / 3, 3] {
            let scaled = try copies(list)
            for t in scaled { cpu.scale(t, by: factor) }
            XCTAssertEqual(cpu.sumOfSquares(list, scaledBy: factor).bitPattern,
                           cpu.sumOfSquares(scaled, scaledBy: 1).bitPattern, "factor \(factor)")
        }
    }

    func testZeroClearsEveryElementIncludingInfAndNaN() throws {
        let a = try cpu.upload([.infinity, .nan, -2, -0.0], [4], .f32), b = try cpu.upload([5], [1], .f32)
        cpu.zero([a, b])
        XCTAssertEqual(cpu.downloadBytes(a) + cpu.downloadBytes(b), [UInt8](repeating: 0, count: 20), "+0 everywhere")
    }

    /// Unscale then clip passed to the update give the bits that scaling the gradients in place
    /// (unscale, then clip, each a separate pass) and then updating gave.
    func testFoldedMultiplierEqualsScaleThenUpdate() throws {
        let multipliers = [GradientMultiplier(unscale: 1.0 / 65536, clip: 0.3712),
                           GradientMultiplier(unscale: 1.0 / 3, clip: 0.77),   // not a power of two: the rounding order matters
                           GradientMultiplier(unscale: 1, clip: 0.05)]
        for (k, multiplier) in multipliers.enumerated() {
            var g = SplitMix64(seed: 10 + UInt64(k))
            let parameters = try tensors(&g), folded = try copies(parameters)
            let moments = (m: try sizes.map { try cpu.zeros([$0], .f32) }, v: try sizes.map { try cpu.zeros([$0], .f32) })
            let foldedMoments = (m: try copies(moments.m), v: try copies(moments.v))
            let states = try parameters.map(AdamW8bitState.zeros), foldedStates = try folded.map(AdamW8bitState.zeros)
            let sgdParameters = try copies(parameters), sgdFolded = try copies(parameters)
            let hyper = AdamWHyper(lr: 1e-2, weightDecay: 0.1)
            for step in 1...3 {
                let gradients = try tensors(&g, spread: 1000)
                let scaled = try copies(gradients)
                for t in scaled {
                    if multiplier.unscale != 1 { cpu.scale(t, by: multiplier.unscale) }
                    if multiplier.clip != 1 { cpu.scale(t, by: multiplier.clip) }
                }
                let before = bits(gradients)

                cpu.adamw(parameters: parameters, gradients: scaled, m: moments.m, v: moments.v,
                          gradientMultiplier: .one, step: step, hyper: hyper)
                cpu.adamw(parameters: folded, gradients: gradients, m: foldedMoments.m, v: foldedMoments.v,
                          gradientMultiplier: multiplier, step: step, hyper: hyper)
                XCTAssertTrue(bits(parameters) == bits(folded), "AdamW parameters, multiplier \(k), step \(step)")
                XCTAssertTrue(bits(moments.m + moments.v) == bits(foldedMoments.m + foldedMoments.v), "AdamW moments")

                cpu.adamw8bit(parameters: parameters, gradients: scaled, states: states, gradientMultiplier: .one,
                              step: step, hyper: hyper)
                cpu.adamw8bit(parameters: folded, gradients: gradients, states: foldedStates, gradientMultiplier: multiplier,
                              step: step, hyper: hyper)
                XCTAssertTrue(bits(parameters) == bits(folded), "AdamW8bit parameters, multiplier \(k), step \(step)")
                XCTAssertTrue(bits(states.flatMap { $0.tensors.map(\.tensor) }) == bits(foldedStates.flatMap { $0.tensors.map(\.tensor) }),
                               "AdamW8bit state")

                let sgd = SGDHyper(lr: 0.1, weightDecay: 0.01)
                cpu.sgd(parameters: sgdParameters, gradients: scaled, momentumBuffers: nil, gradientMultiplier: .one,
                        step: step, hyper: sgd)
                cpu.sgd(parameters: sgdFolded, gradients: gradients, momentumBuffers: nil, gradientMultiplier: multiplier,
                        step: step, hyper: sgd)
                XCTAssertTrue(bits(sgdParameters) == bits(sgdFolded), "SGD parameters, multiplier \(k), step \(step)")

                XCTAssertTrue(bits(gradients) == before, "the folded updates leave the gradients as they were")
            }
        }
    }

    /// LoRAOptimizer.step with a loss scaler and active clipping gives the bits of the path it
    /// replaced: unscale every gradient in place, the norm per tensor, clip in place, update per tensor.
    func testOptimizerStepEqualsUnscaleClipThenUpdate() throws {
        for kind in [TrainingArguments.OptimizerKind.adamw, .adamw8bit, .sgd] {
            var g = SplitMix64(seed: 3)
            let shapes: [(Shape, Shape)] = [([4, 37], [53, 4]), ([16, 300], [300, 16]), ([2, 5], [7, 2])]
            let adapters = try shapes.enumerated().map { i, s in
                try LoRAAdapter(module: "m\(i)", a: cpu.upload(values(s.0.count, &g), s.0, .f32),
                                b: cpu.upload(values(s.1.count, &g), s.1, .f32), scaling: 1, dropout: 0)
            }
            let reference = try adapters.map { a in
                try LoRAAdapter(module: a.module, a: copies([a.a])[0], b: copies([a.b])[0], scaling: 1, dropout: 0)
            }
            var arguments = TrainingArguments()
            arguments.optimizer = kind
            arguments.maxGradNorm = 0.5
            arguments.weightDecay = 0.01
            let optimizer = try LoRAOptimizer(adapters: adapters, arguments: arguments)
            let referenceState = try ReferenceOptimizer(kind: kind, parameters: reference.flatMap { [$0.a, $0.b] })
            var scaler: LossScaler? = LossScaler(initialScale: 1024)
            for step in 1...3 {
                optimizer.zeroGradients()
                for (a, r) in zip(adapters, reference) {
                    for (ours, theirs) in [(a.gradA, r.gradA), (a.gradB, r.gradB)] {
                        let scaledGradient = values(ours.count, &g, spread: 1024)
                        cpu.copy(try cpu.upload(scaledGradient, ours.shape, .f32), into: ours)
                        cpu.copy(try cpu.upload(scaledGradient, ours.shape, .f32), into: theirs)
                    }
                }
                let lr: Float = 1e-2
                let scale = scaler!.scale
                let norm = optimizer.step(lr: lr, scaler: &scaler)
                let referenceNorm = referenceState.step(gradients: reference.flatMap { [$0.gradA, $0.gradB] },
                                                        lossScale: scale, maxNorm: 0.5, step: step,
                                                        hyper: AdamWHyper(lr: lr, beta1: arguments.adamBeta1,
                                                                          beta2: arguments.adamBeta2, eps: arguments.adamEpsilon,
                                                                          weightDecay: arguments.weightDecay))
                XCTAssertEqual(norm.bitPattern, referenceNorm.bitPattern, "\(kind) norm, step \(step)")
                XCTAssertLessThan(GradientClipping.clipCoefficient(totalNorm: norm, maxNorm: 0.5)!, 1, "clipping is active")
                XCTAssertTrue(bits(adapters.flatMap { [$0.a, $0.b] }) == bits(reference.flatMap { [$0.a, $0.b] }),
                               "\(kind) parameters, step \(step)")
            }
        }
    }
}

/// The optimizer step as LoRAOptimizer did it before the multi-tensor ops: in-place passes over
/// the gradients and one single-tensor update call per tensor.
private final class ReferenceOptimizer {
    let kind: TrainingArguments.OptimizerKind
    let parameters: [Tensor]
    let m: [Tensor], v: [Tensor], states: [AdamW8bitState]
    let cpu = CPUBackend()

    init(kind: TrainingArguments.OptimizerKind, parameters: [Tensor]) throws {
        self.kind = kind
        self.parameters = parameters
        m = try parameters.map { try $0.backend.zeros($0.shape, .f32) }
        v = try parameters.map { try $0.backend.zeros($0.shape, .f32) }
        states = try parameters.map(AdamW8bitState.zeros)
    }

    func step(gradients: [Tensor], lossScale: Float, maxNorm: Double, step: Int, hyper: AdamWHyper) -> Double {
        let backend = parameters[0].backend
        if lossScale != 1 { for g in gradients { backend.scale(g, by: 1 / lossScale) } }
        let norm = gradients.reduce(0.0) { $0 + backend.sumOfSquares($1) }.squareRoot()
        if let c = GradientClipping.clipCoefficient(totalNorm: norm, maxNorm: maxNorm), c < 1 {
            for g in gradients { backend.scale(g, by: Float(c)) }
        }
        for (i, (p, g)) in zip(parameters, gradients).enumerated() {
            switch kind {
            case .adamw: backend.adamw(parameter: p, gradient: g, m: m[i], v: v[i], step: step, hyper: hyper)
            case .adamw8bit: backend.adamw8bit(parameter: p, gradient: g, state: states[i], step: step, hyper: hyper)
            case .sgd: backend.sgd(parameter: p, gradient: g, momentumBuffer: nil, step: step,
                                   hyper: SGDHyper(lr: hyper.lr, weightDecay: hyper.weightDecay))
            }
        }
        return norm
    }
}
