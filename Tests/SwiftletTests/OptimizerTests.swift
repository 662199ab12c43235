import XCTest
@testable import Swiftlet

/// Reference values below are produced by the real torch.optim.AdamW / torch.optim.SGD (CPU,
/// float32, foreach=False) and torch.nn.utils.clip_grad_norm_ — regenerate them with
/// `python scripts/make_optimizer_fixtures.py` and paste the output.
/// Do not re-derive them from our own formulas.
enum TorchOptimFixtures {
    // torch 2.15.0+cu132, transformers 5.24.0
    static let params0: [Float] = [4.6130463e-02, 4.0240282e-01, -1.0115291e+00, 2.1673824e-01, -6.122731e-01, 5.0361073e-01, 2.309668e-01, 6.930773e-01, -2.6686057e-01, 2.1784658e+00]
    static let grads: [[Float]] = [
        [1.021373e-01, -2.590097e-01, -1.549004e-01, -1.3705889e+00, -1.3192043e-01, 8.848398e-01, -2.610768e-01, 6.1041707e-01, -9.842321e-03, -1.4473404e+00],
        [-2.0389928e-01, 8.7375337e-01, -6.8161094e-01, 6.3386935e-01, 1.9220227e-01, 9.182223e-02, -8.6249423e-01, 1.5959068e-01, 8.184132e-01, -7.648915e-01],
        [8.041676e-01, -1.383191e-01, 3.1956738e-01, -1.0187279e+00, -1.3147458e+00, 2.5227726e+00, 4.5009282e-01, 2.7092275e-01, -8.0871844e-01, -2.1699585e-02],
        [-1.0413064e+00, 7.024591e-02, 5.7965475e-01, -5.9910405e-02, 1.8156357e-01, -6.796759e-01, -2.5672486e-01, -1.8188878e+00, 2.1108878e-01, 3.3715656e-01],
        [6.6380423e-01, 1.0396824e+00, 1.8433623e+00, 6.588004e-01, -2.3491716e-01, -3.0613624e-02, 1.746175e+00, -7.218502e-02, -1.6793863e+00, -1.7009598e+00],
    ]
    // adamW1 hyper: {'lr': 0.009999999776482582, 'betas': (0.8999999761581421, 0.9990000128746033), 'eps': 9.99999993922529e-09, 'weight_decay': 0.10000000149011612}
    // adamW1: parameter after each step; then exp_avg, exp_avg_sq after the last
    static let adamW1: [[Float]] = [
        [3.6084335e-02, 4.1200042e-01, -1.0005176e+00, 2.265215e-01, -6.0166085e-01, 4.9310714e-01, 2.4073584e-01, 6.8238425e-01, -2.5659373e-01, 2.1862874e+00],
        [3.970243e-02, 4.0635714e-01, -9.9077636e-01, 2.2925124e-01, -6.0340494e-01, 4.851808e-01, 2.4955803e-01, 6.7333627e-01, -2.6369745e-01, 2.193503e+00],
        [3.428689e-02, 4.029119e-01, -9.862986e-01, 2.3449071e-01, -5.968278e-01, 4.7676128e-01, 2.5271952e-01, 6.6419923e-01, -2.6298884e-01, 2.198661e+00],
        [3.6029737e-02, 3.9958492e-01, -9.8653394e-01, 2.3892468e-01, -5.921657e-01, 4.714175e-01, 2.5661066e-01, 6.66527e-01, -2.6341677e-01, 2.2011867e+00],
        [3.4908928e-02, 3.9346522e-01, -9.9086136e-01, 2.4053895e-01, -5.872508e-01, 4.668931e-01, 2.5345495e-01, 6.685901e-01, -2.5900906e-01, 2.2056758e+00],
    ]
    static let adamW1_exp_avg: [Float] = [2.9637402e-02, 1.4578955e-01, 2.0253772e-01, -6.5744124e-02, -1.08289175e-01, 2.048606e-01, 1.0796473e-01, -9.729006e-02, -1.5543029e-01, -2.9223022e-01]
    static let adamW1_exp_avg_sq: [Float] = [2.2210758e-03, 1.9329132e-03, 4.3226113e-03, 3.7448849e-03, 1.86736e-03, 7.602216e-03, 4.1266503e-03, 3.7799727e-03, 4.1854056e-03, 5.676955e-03]
    // adamW2 hyper: {'lr': 0.003000000026077032, 'betas': (0.30000001192092896, 0.949999988079071), 'eps': 9.999999974752427e-07, 'weight_decay': 0.009999999776482582}
    // adamW2: parameter after each step; then exp_avg, exp_avg_sq after the last
    static let adamW2: [[Float]] = [
        [4.312911e-02, 4.0539074e-01, -1.0084988e+00, 2.1973173e-01, -6.092548e-01, 5.005956e-01, 2.3395987e-01, 6.900565e-01, -2.638529e-01, 2.1814005e+00],
        [4.5588434e-02, 4.0255803e-01, -1.0051078e+00, 2.1923982e-01, -6.113635e-01, 4.9925315e-01, 2.3732433e-01, 6.882429e-01, -2.6705566e-01, 2.1837432e+00],
        [4.2299554e-02, 4.0213767e-01, -1.005568e+00, 2.2119932e-01, -6.078775e-01, 4.9563506e-01, 2.3669626e-01, 6.8615407e-01, -2.6523757e-01, 2.1845665e+00],
        [4.4816077e-02, 4.0165895e-01, -1.0082003e+00, 2.2201118e-01, -6.0724074e-01, 4.9545392e-01, 2.3753573e-01, 6.897418e-01, -2.6538107e-01, 2.1839192e+00],
        [4.3519266e-02, 3.980884e-01, -1.0125831e+00, 2.2062534e-01, -6.062084e-01, 4.9543536e-01, 2.3375207e-01, 6.911115e-01, -2.61654e-01, 2.1870594e+00],
    ]
    static let adamW2_exp_avg: [Float] = [2.933766e-01, 7.4886054e-01, 1.4184531e+00, 3.8860813e-01, -2.0625801e-01, 1.525688e-03, 1.1789848e+00, -4.089505e-01, -1.1667788e+00, -1.143899e+00]
    static let adamW2_exp_avg_sq: [Float] = [1.04925774e-01, 9.060475e-02, 2.1136129e-01, 1.6242976e-01, 8.461868e-02, 3.4142968e-01, 1.9939439e-01, 1.7698593e-01, 2.0136382e-01, 2.6047596e-01]
    // sgdPlain hyper: {'lr': 0.10000000149011612, 'weight_decay': 0.009999999776482582}
    // sgdPlain: parameter after each step
    static let sgdPlain: [[Float]] = [
        [3.5870604e-02, 4.279014e-01, -9.9502754e-01, 3.535804e-01, -5.984688e-01, 4.1462314e-01, 2.568435e-01, 6.3134253e-01, -2.6560947e-01, 2.3210213e+00],
        [5.6224663e-02, 3.4009814e-01, -9.2587143e-01, 2.8983986e-01, -6.170905e-01, 4.050263e-01, 3.4283608e-01, 6.147521e-01, -3.471852e-01, 2.3951895e+00],
        [-2.4248326e-02, 3.5358995e-01, -9.569023e-01, 3.914228e-01, -4.8499885e-01, 1.52344e-01, 2.9748395e-01, 5.870451e-01, -2.6596618e-01, 2.3949642e+00],
        [7.990656e-02, 3.4621176e-01, -1.0139109e+00, 3.9702243e-01, -5.026702e-01, 2.2015925e-01, 3.2285896e-01, 7.683468e-01, -2.868091e-01, 2.3588536e+00],
        [1.344623e-02, 2.4189731e-01, -1.1972332e+00, 3.3074537e-01, -4.7867584e-01, 2.2300045e-01, 1.479186e-01, 7.7479696e-01, -1.1858365e-01, 2.5265908e+00],
    ]
    // sgdMomentum hyper: {'lr': 0.05000000074505806, 'momentum': 0.8999999761581421, 'weight_decay': 0.009999999776482582}
    // sgdMomentum: parameter after each step; then momentum_buffer after the last
    static let sgdMomentum: [[Float]] = [
        [4.1000534e-02, 4.151521e-01, -1.0032783e+00, 2.8515932e-01, -6.0537094e-01, 4.5911694e-01, 2.4390516e-01, 6.622099e-01, -2.6623502e-01, 2.2497437e+00],
        [4.655806e-02, 3.827312e-01, -9.6127033e-01, 3.1490225e-01, -6.0846645e-01, 4.1425186e-01, 2.9855242e-01, 6.2611866e-01, -3.0645958e-01, 2.3510134e+00],
        [1.1328174e-02, 3.60277e-01, -9.3896097e-01, 3.9244983e-01, -5.4521084e-01, 2.4752754e-01, 3.2508105e-01, 5.797773e-01, -3.0207253e-01, 2.4420657e+00],
        [3.1680934e-02, 3.3637577e-01, -9.473958e-01, 4.6504194e-01, -4.9708638e-01, 1.3133568e-01, 3.6163053e-01, 6.287246e-01, -3.085276e-01, 2.5059338e+00],
        [1.6792366e-02, 2.6271236e-01, -1.0466815e+00, 4.9720228e-01, -4.4177997e-01, 2.8228007e-02, 3.0703548e-01, 6.76072e-01, -2.3021355e-01, 2.6472101e+00],
    ]
    static let sgdMomentum_momentum_buffer: [Float] = [2.9777136e-01, 1.4732682e+00, 1.9857153e+00, -6.432071e-01, -1.1061281e+00, 2.0621533e+00, 1.0919008e+00, -9.4694877e-01, -1.5662806e+00, -2.8255267e+00]
    static let clipA: [Float] = [1.8380575e+00, -3.526061e+00, -2.2939477e+00, -1.999697e+00, 2.233098e+00, -1.9359522e+00]
    static let clipB: [Float] = [-4.1670837e+00, -8.1890285e-01, 2.8217962e+00, -7.8530083e+00]
    // max_norm 1.0: total norm (float32) and clipped grads
    static let clip1Total: Float = 1.1021554e+01
    static let clip1A: [Float] = [1.6676936e-01, -3.1992412e-01, -2.0813286e-01, -1.8143511e-01, 2.026119e-01, -1.7565146e-01]
    static let clip1B: [Float] = [-3.7808493e-01, -7.430012e-02, 2.5602522e-01, -7.125136e-01]
    // max_norm 100.0: total norm (float32) and clipped grads
    static let clip100Total: Float = 1.1021554e+01
    static let clip100A: [Float] = [1.8380575e+00, -3.526061e+00, -2.2939477e+00, -1.999697e+00, 2.233098e+00, -1.9359522e+00]
    static let clip100B: [Float] = [-4.1670837e+00, -8.1890285e-01, 2.8217962e+00, -7.8530083e+00]
}

/// |a - e| <= rel * |e| (with a tiny absolute floor for exact zeros).
func assertClose(_ actual: [Float], _ expected: [Float], rel: Float, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.count, expected.count, what, file: file, line: line)
    for (i, (a, e)) in zip(actual, expected).enumerated() {
        let tol = max(rel * abs(e), Float.leastNormalMagnitude)
        XCTAssert(abs(a - e) <= tol, "\(what)[\(i)]: got \(a), torch \(e) (diff \(abs(a - e)))",
                  file: file, line: line)
    }
}

/// Largest distance in units in the last place between same-sign floats. The optimizers are
/// bit-identical to torch's CPU float32 kernels (fused multiply-adds included), so the tests
/// demand 0 ULP on top of the relative 1e-6 check.
func maxULP(_ a: [Float], _ b: [Float]) -> UInt32 {
    var worst: UInt32 = 0
    for (x, y) in zip(a, b) where x != y {
        if x.sign != y.sign { return UInt32.max }
        let (u, w) = (x.bitPattern, y.bitPattern)
        worst = max(worst, u > w ? u - w : w - u)
    }
    return worst
}

final class OptimizerTests: XCTestCase {
    typealias F = TorchOptimFixtures

    private func runAdamW(_ hyper: AdamWHyper) -> (params: [[Float]], m: [Float], v: [Float]) {
        var p = F.params0
        var m = [Float](repeating: 0, count: p.count)
        var v = [Float](repeating: 0, count: p.count)
        var history: [[Float]] = []
        for (k, g) in F.grads.enumerated() {
            p.withUnsafeMutableBufferPointer { pp in
                g.withUnsafeBufferPointer { gg in
                    m.withUnsafeMutableBufferPointer { mm in
                        v.withUnsafeMutableBufferPointer { vv in
                            AdamW.update(parameter: pp, gradient: gg, m: mm, v: vv, step: k + 1, hyper: hyper)
                        }
                    }
                }
            }
            history.append(p)
        }
        return (history, m, v)
    }

    private func runSGD(_ hyper: SGDHyper, staleBuffer: Float = 0) -> (params: [[Float]], buf: [Float]) {
        var p = F.params0
        var buf = [Float](repeating: staleBuffer, count: p.count)
        var history: [[Float]] = []
        for (k, g) in F.grads.enumerated() {
            p.withUnsafeMutableBufferPointer { pp in
                g.withUnsafeBufferPointer { gg in
                    buf.withUnsafeMutableBufferPointer { bb in
                        SGD.update(parameter: pp, gradient: gg, momentumBuffer: hyper.momentum != 0 ? bb : nil,
                                   step: k + 1, hyper: hyper)
                    }
                }
            }
            history.append(p)
        }
        return (history, buf)
    }

    // torch: lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1 (all rounded to float32)
    func testAdamWMatchesTorchWithWeightDecay() {
        let r = runAdamW(AdamWHyper(lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1))
        for (k, expected) in F.adamW1.enumerated() {
            assertClose(r.params[k], expected, rel: 1e-6, "adamW1 param step \(k + 1)")
            XCTAssertLessThanOrEqual(maxULP(r.params[k], expected), 0, "adamW1 step \(k + 1) ULP")
        }
        assertClose(r.m, F.adamW1_exp_avg, rel: 1e-6, "adamW1 exp_avg")
        assertClose(r.v, F.adamW1_exp_avg_sq, rel: 1e-6, "adamW1 exp_avg_sq")
        XCTAssertEqual(maxULP(r.m, F.adamW1_exp_avg), 0, "adamW1 exp_avg ULP")
        XCTAssertEqual(maxULP(r.v, F.adamW1_exp_avg_sq), 0, "adamW1 exp_avg_sq ULP")
    }

    // torch: lr=3e-3, betas=(0.3, 0.95), eps=1e-6, weight_decay=0.01 — 1 - beta1 >= 0.5 takes
    // the other branch of torch's lerp.
    func testAdamWMatchesTorchLargeLerpWeight() {
        let r = runAdamW(AdamWHyper(lr: 3e-3, beta1: 0.3, beta2: 0.95, eps: 1e-6, weightDecay: 0.01))
        for (k, expected) in F.adamW2.enumerated() {
            assertClose(r.params[k], expected, rel: 1e-6, "adamW2 param step \(k + 1)")
            XCTAssertLessThanOrEqual(maxULP(r.params[k], expected), 0, "adamW2 step \(k + 1) ULP")
        }
        assertClose(r.m, F.adamW2_exp_avg, rel: 1e-6, "adamW2 exp_avg")
        assertClose(r.v, F.adamW2_exp_avg_sq, rel: 1e-6, "adamW2 exp_avg_sq")
        XCTAssertEqual(maxULP(r.m, F.adamW2_exp_avg), 0, "adamW2 exp_avg ULP")
        XCTAssertEqual(maxULP(r.v, F.adamW2_exp_avg_sq), 0, "adamW2 exp_avg_sq ULP")
    }

    /// Hand case: at step 1 with no weight decay, m̂ = g and v̂ = g², so every parameter moves by
    /// lr * g / (|g| + eps) ≈ lr * sign(g).
    func testAdamWFirstStepMovesByLR() {
        var p: [Float] = [1, -2, 0.5]
        let g: [Float] = [0.25, -3, 1e-3]
        var m = [Float](repeating: 0, count: 3), v = m
        p.withUnsafeMutableBufferPointer { pp in g.withUnsafeBufferPointer { gg in
            m.withUnsafeMutableBufferPointer { mm in v.withUnsafeMutableBufferPointer { vv in
                AdamW.update(parameter: pp, gradient: gg, m: mm, v: vv, step: 1, hyper: AdamWHyper(lr: 0.1))
            } }
        } }
        XCTAssertEqual(p[0], 0.9, accuracy: 1e-6)
        XCTAssertEqual(p[1], -1.9, accuracy: 1e-6)
        XCTAssertEqual(p[2], 0.4, accuracy: 1e-5)
    }

    /// The Double instantiation computes the same thing to Double precision.
    func testAdamWDoubleAgreesWithFloat() {
        let hyper = AdamWHyper(lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1)
        var p = F.params0.map(Double.init)
        var m = [Double](repeating: 0, count: p.count), v = m
        for (k, g32) in F.grads.enumerated() {
            let g = g32.map(Double.init)
            p.withUnsafeMutableBufferPointer { pp in g.withUnsafeBufferPointer { gg in
                m.withUnsafeMutableBufferPointer { mm in v.withUnsafeMutableBufferPointer { vv in
                    AdamW.update(parameter: pp, gradient: gg, m: mm, v: vv, step: k + 1, hyper: hyper)
                } }
            } }
        }
        assertClose(p.map(Float.init), F.adamW1.last!, rel: 1e-5, "adamW1 in Double")
    }

    // torch: lr=0.1, weight_decay=0.01, no momentum
    func testSGDMatchesTorchWithoutMomentum() {
        let r = runSGD(SGDHyper(lr: 0.1, weightDecay: 0.01))
        for (k, expected) in F.sgdPlain.enumerated() {
            assertClose(r.params[k], expected, rel: 1e-6, "sgdPlain step \(k + 1)")
            XCTAssertLessThanOrEqual(maxULP(r.params[k], expected), 0, "sgdPlain step \(k + 1) ULP")
        }
    }

    // torch: lr=0.05, momentum=0.9, weight_decay=0.01
    func testSGDMatchesTorchWithMomentum() {
        // A stale buffer must be ignored at step 1 (torch clones the gradient into it).
        let r = runSGD(SGDHyper(lr: 0.05, momentum: 0.9, weightDecay: 0.01), staleBuffer: 123)
        for (k, expected) in F.sgdMomentum.enumerated() {
            assertClose(r.params[k], expected, rel: 1e-6, "sgdMomentum step \(k + 1)")
            XCTAssertLessThanOrEqual(maxULP(r.params[k], expected), 0, "sgdMomentum step \(k + 1) ULP")
        }
        assertClose(r.buf, F.sgdMomentum_momentum_buffer, rel: 1e-6, "sgdMomentum momentum_buffer")
    }

    func testClipCoefficientHandCases() {
        // Norm above max: coef = max / (norm + 1e-6).
        XCTAssertEqual(GradientClipping.clipCoefficient(totalNorm: 10, maxNorm: 1)!, 1 / (10 + 1e-6))
        XCTAssertEqual(GradientClipping.clipCoefficient(totalNorm: 4, maxNorm: 2)!, 2 / (4 + 1e-6))
        // Norm below max: clamped to exactly 1 (torch still multiplies by it).
        XCTAssertEqual(GradientClipping.clipCoefficient(totalNorm: 0.5, maxNorm: 1), 1.0)
        XCTAssertEqual(GradientClipping.clipCoefficient(totalNorm: 0, maxNorm: 1), 1.0)
        // Exactly at max: 1/(1+1e-6) < 1, so torch scales by slightly less than 1.
        XCTAssertLessThan(GradientClipping.clipCoefficient(totalNorm: 1, maxNorm: 1)!, 1.0)
        // max_grad_norm <= 0 disables clipping (HF).
        XCTAssertNil(GradientClipping.clipCoefficient(totalNorm: 10, maxNorm: 0))
        XCTAssertNil(GradientClipping.clipCoefficient(totalNorm: 10, maxNorm: -1))
        // NaN norm propagates like torch.clamp.
        XCTAssert(GradientClipping.clipCoefficient(totalNorm: .nan, maxNorm: 1)!.isNaN)
    }

    private func clipLikeTorch(maxNorm: Double) -> (total: Double, a: [Float], b: [Float]) {
        var a = F.clipA, b = F.clipB
        let total = a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in
            GradientClipping.totalNorm([pa, pb])
        } }
        if let c = GradientClipping.clipCoefficient(totalNorm: total, maxNorm: maxNorm) {
            a.withUnsafeMutableBufferPointer { GradientClipping.scale($0, by: c) }
            b.withUnsafeMutableBufferPointer { GradientClipping.scale($0, by: c) }
        }
        return (total, a, b)
    }

    func testClipGradNormMatchesTorch() {
        let r1 = clipLikeTorch(maxNorm: 1)
        XCTAssertEqual(r1.total, Double(F.clip1Total), accuracy: 1e-6 * Double(F.clip1Total))
        assertClose(r1.a, F.clip1A, rel: 1e-6, "clip max_norm=1 A")
        assertClose(r1.b, F.clip1B, rel: 1e-6, "clip max_norm=1 B")
        // Not clipped: multiplied by exactly 1, unchanged.
        let r100 = clipLikeTorch(maxNorm: 100)
        XCTAssertEqual(r100.a, F.clip100A)
        XCTAssertEqual(r100.b, F.clip100B)
        XCTAssertEqual(r100.a, F.clipA)
    }
}
