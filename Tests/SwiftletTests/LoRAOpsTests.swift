import XCTest
@testable import Swiftlet

/// The fused LoRA ops (`loraDown`, `loraUpAdd`, `loraGradient`) of the CPU backend, and their generic
/// definition `LoRAKernel` in Float32, against plain Float64 loops, on random shapes that are not multiples of any tile (ranks not multiples of 4 or
/// 8), into `empty` outputs (NaN-filled) where the op overwrites; and `Linear` on the fused path
/// against the GEMM path it replaced.
final class LoRAOpsTests: XCTestCase {
    let backend = CPUBackend()
    var generator = SplitMix64(seed: 2024)

    func randomValues(_ count: Int) -> [Float] { (0..<count).map { _ in generator.uniform(in: -1..<1) } }

    func upload(_ values: [Float], _ shape: Shape) throws -> Tensor { try backend.upload(values, shape, .f32) }

    /// |got − want| ≤ 1e-5 · (Σ|terms| + |base|) per element: f32 rounding of the sum, whatever the order.
    func assertClose(_ got: [Float], _ want: [Double], magnitude: [Double], _ label: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, label, file: file, line: line)
        for i in 0..<want.count {
            XCTAssertEqual(Double(got[i]), want[i], accuracy: 1e-5 * (magnitude[i] + 1e-30), "\(label) element \(i)",
                           file: file, line: line)
            if abs(Double(got[i]) - want[i]) > 1e-5 * (magnitude[i] + 1e-30) { return }
        }
    }

    static let shapes: [(tokens: Int, k: Int, o: Int, r: Int)] = [
        (37, 29, 13, 5), (130, 70, 41, 16), (5, 300, 7, 1), (64, 64, 64, 64), (1, 9, 3, 3), (200, 33, 129, 24),
    ]

    func testDownMatchesFloat64() throws {
        for (tokens, k, _, r) in Self.shapes {
            for transposed in [false, true] {
                let x = randomValues(tokens * k), w = randomValues(r * k), alpha: Float = 0.75
                let z = try backend.empty([tokens, r], .f32)
                backend.loraDown(try upload(x, [tokens, k]), try upload(w, transposed ? [k, r] : [r, k]),
                                 weightTransposed: transposed, into: z, alpha: alpha)
                var generic = [Float](repeating: .nan, count: tokens * r)
                x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in generic.withUnsafeMutableBufferPointer {
                    LoRAKernel.down(x: xp, w: wp, transposed: transposed, z: $0, rank: r, alpha: alpha)
                } } }
                var want = [Double](repeating: 0, count: tokens * r), size = want
                for t in 0..<tokens {
                    for j in 0..<r {
                        for kk in 0..<k {
                            let term = Double(x[t * k + kk]) * Double(transposed ? w[kk * r + j] : w[j * k + kk])
                            want[t * r + j] += term; size[t * r + j] += abs(term)
                        }
                        want[t * r + j] *= Double(alpha); size[t * r + j] *= Double(alpha)
                    }
                }
                assertClose(backend.download(z), want, magnitude: size, "down \(tokens)×\(k) r \(r) transposed \(transposed)")
                assertClose(generic, want, magnitude: size, "LoRAKernel.down \(tokens)×\(k) r \(r) transposed \(transposed)")
            }
        }
    }

    func testUpAddMatchesFloat64() throws {
        for (tokens, _, o, r) in Self.shapes {
            for transposed in [false, true] {
                let z = randomValues(tokens * r), w = randomValues(r * o), y0 = randomValues(tokens * o), scale: Float = 1.5
                let y = try upload(y0, [tokens, o])
                backend.loraUpAdd(try upload(z, [tokens, r]), try upload(w, transposed ? [r, o] : [o, r]),
                                  weightTransposed: transposed, scale: scale, into: y)
                var generic = y0
                z.withUnsafeBufferPointer { zp in w.withUnsafeBufferPointer { wp in generic.withUnsafeMutableBufferPointer {
                    LoRAKernel.upAdd(z: zp, w: wp, transposed: transposed, scale: scale, y: $0, rank: r)
                } } }
                var want = [Double](repeating: 0, count: tokens * o), size = want
                for t in 0..<tokens {
                    for i in 0..<o {
                        var sum = 0.0, mag = 0.0
                        for j in 0..<r {
                            let term = Double(z[t * r + j]) * Double(transposed ? w[j * o + i] : w[i * r + j])
                            sum += term; mag += abs(term)
                        }
                        want[t * o + i] = Double(y0[t * o + i]) + Double(scale) * sum
                        size[t * o + i] = abs(Double(y0[t * o + i])) + Double(scale) * mag
                    }
                }
                assertClose(backend.download(y), want, magnitude: size, "upAdd \(tokens)→\(o) r \(r) transposed \(transposed)")
                assertClose(generic, want, magnitude: size, "LoRAKernel.upAdd \(tokens)→\(o) r \(r) transposed \(transposed)")
            }
        }
    }

    func testGradientMatchesFloat64AndAccumulates() throws {
        for (tokens, _, o, r) in Self.shapes {
            for transposed in [false, true] {
                let m = randomValues(tokens * o), z = randomValues(tokens * r), g0 = randomValues(o * r), alpha: Float = 0.5
                let g = try upload(g0, transposed ? [r, o] : [o, r])
                backend.loraGradient(try upload(m, [tokens, o]), try upload(z, [tokens, r]), into: g,
                                     gradientTransposed: transposed, alpha: alpha)
                var generic = g0
                m.withUnsafeBufferPointer { mp in z.withUnsafeBufferPointer { zp in generic.withUnsafeMutableBufferPointer {
                    LoRAKernel.gradient(m: mp, z: zp, g: $0, transposed: transposed, rank: r, alpha: alpha)
                } } }
                var want = [Double](repeating: 0, count: o * r), size = want
                for i in 0..<o {
                    for j in 0..<r {
                        var sum = 0.0, mag = 0.0
                        for t in 0..<tokens {
                            let term = Double(m[t * o + i]) * Double(z[t * r + j])
                            sum += term; mag += abs(term)
                        }
                        let at = transposed ? j * o + i : i * r + j
                        want[at] = Double(g0[at]) + Double(alpha) * sum
                        size[at] = abs(Double(g0[at])) + Double(alpha) * mag
                    }
                }
                assertClose(backend.download(g), want, magnitude: size, "gradient \(tokens)×\(o) r \(r) transposed \(transposed)")
                assertClose(generic, want, magnitude: size, "LoRAKernel.gradient \(tokens)×\(o) r \(r) transposed \(transposed)")
            }
        }
    }

    /// The same inputs twice give the same bits (the sums run in a fixed order on every backend).
    func testGradientIsDeterministic() throws {
        let tokens = 333, o = 150, r = 7
        let m = try upload(randomValues(tokens * o), [tokens, o]), z = try upload(randomValues(tokens * r), [tokens, r])
        var results: [[Float]] = []
        for _ in 0..<2 {
            let g = try backend.zeros([o, r], .f32)
            backend.loraGradient(m, z, into: g, gradientTransposed: false, alpha: 1)
            results.append(backend.download(g))
        }
        XCTAssertEqual(results[0], results[1])
    }

    /// Linear on the fused ops equals Linear on the GEMM path (widened copies, f32 GEMMs) within f32
    /// rounding: output, input gradient (new and accumulated), A and B gradients. Also with a rank
    /// over the fused ops' limit (the GEMM path either way) and with dropout (GEMM path kept).
    func testLinearFusedPathEqualsGEMMPath() throws {
        defer { Linear.forceGEMMLoRA = false }
        for (tokens, inF, outF, r, dropout) in [(45, 70, 33, 6, Float(0)), (130, 64, 96, 16, 0), (20, 30, 40, 70, 0),
                                               (50, 40, 24, 8, 0.25)] {
            var g = SplitMix64(seed: UInt64(tokens * 1000 + r))
            func values(_ n: Int) -> [Float] { (0..<n).map { _ in g.uniform(in: -1..<1) } }
            let weight = values(outF * inF), bias = values(outF), a = values(r * inF), b = values(outF * r)
            let x = values(tokens * inF), dY = values(tokens * outF), dX0 = values(tokens * inF)
            var results: [[[Float]]] = []
            for gemm in [true, false] {
                Linear.forceGEMMLoRA = gemm
                let adapter = try LoRAAdapter(module: "m", a: upload(a, [r, inF]), b: upload(b, [outF, r]), scaling: 1.25,
                                              dropout: dropout)
                let layer = Linear(weight: try upload(weight, [outF, inF]), bias: try upload(bias, [outF]), lora: adapter)
                let (y, saved) = try layer.forward(try upload(x, [tokens, inF]), dropoutSeed: 11)
                XCTAssertEqual(saved.dropoutMask != nil, dropout > 0)
                let dYTensor = try upload(dY, [tokens, outF])
                let dXNew = try layer.backward(dYTensor, saved: saved, accumulateInto: nil)
                let dXAccumulated = try upload(dX0, [tokens, inF])
                try layer.backward(dYTensor, saved: saved, accumulateInto: dXAccumulated)
                results.append([y, dXNew, dXAccumulated, adapter.gradA, adapter.gradB].map { backend.download($0) })
            }
            for (name, (gemm, fused)) in zip(["y", "dX", "dX accumulated", "dA", "dB"], zip(results[0], results[1])) {
                let scale = gemm.map { abs($0) }.max() ?? 1
                XCTAssertFalse(fused.contains { !$0.isFinite }, "\(name) r \(r): non-finite values")
                let worst = zip(gemm, fused).map { abs($0 - $1) }.max() ?? 0
                XCTAssertLessThanOrEqual(worst, 2e-5 * Swift.max(scale, 1), "\(name) r \(r) dropout \(dropout): fused vs GEMM")
                if r > LoRAShapes.maxRank || dropout > 0 {
                    XCTAssertEqual(gemm, fused, "\(name): the GEMM path either way")
                }
            }
        }
    }
}
