import XCTest
@testable import Swiftlet

/// Each CPU op's backward against central finite differences, in Float64 (the kernels are
/// generic), on random inputs. The scalar checked is L = Σ w ⊙ op(x) with random weights w.
final class OpGradientTests: XCTestCase {
    var generator = SplitMix64(seed: 2024)

    func random(_ count: Int, scale: Double = 1) -> [Double] {
        (0..<count).map { _ in Double(generator.uniform(in: -1..<1)) * scale }
    }

    /// Central differences of `loss` at every element of `x`.
    func numericGradient(_ x: [Double], _ loss: ([Double]) -> Double) -> [Double] {
        let h = 1e-6
        return x.indices.map { i in
            var plus = x, minus = x
            plus[i] += h; minus[i] -= h
            return (loss(plus) - loss(minus)) / (2 * h)
        }
    }

    func assertClose(_ analytic: [Double], _ numeric: [Double], tolerance: Double = 1e-6,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(analytic.count, numeric.count, file: file, line: line)
        let scale = max(numeric.map(abs).max() ?? 0, 1e-3)
        for (i, (a, n)) in zip(analytic, numeric).enumerated() {
            XCTAssertFalse(a.isNaN, "NaN at \(i)", file: file, line: line)
            if abs(a - n) > tolerance * scale {
                XCTFail("element \(i): analytic \(a), numeric \(n)", file: file, line: line)
                return
            }
        }
    }

    func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

    /// Llama's w and Gemma's (1 + w) (offset 1, with w near 0 as Gemma stores it).
    func testRMSNormBackward() {
        for offset in [0.0, 1.0] { checkRMSNormBackward(offset: offset) }
    }

    func checkRMSNormBackward(offset: Double) {
        let rows = 3, width = 8
        let x = random(rows * width), weight = random(width).map { 1 - offset + $0 / 2 }, w = random(rows * width)
        func forward(_ x: [Double]) -> [Double] {
            var out = [Double](repeating: 0, count: x.count), rstd = [Double](repeating: 0, count: rows)
            x.withUnsafeBufferPointer { xp in weight.withUnsafeBufferPointer { wp in
                out.withUnsafeMutableBufferPointer { op in rstd.withUnsafeMutableBufferPointer { rp in
                    RMSNormKernel.forward(x: xp, weight: wp, offset: offset, eps: 1e-5, out: op, rstd: rp)
                } }
            } }
            return out
        }
        var rstd = [Double](repeating: 0, count: rows), out = x
        x.withUnsafeBufferPointer { xp in weight.withUnsafeBufferPointer { wp in
            out.withUnsafeMutableBufferPointer { op in rstd.withUnsafeMutableBufferPointer { rp in
                RMSNormKernel.forward(x: xp, weight: wp, offset: offset, eps: 1e-5, out: op, rstd: rp)
            } }
        } }
        if offset == 1 {  // y = (1 + w) ⊙ x·rstd, by hand for row 0
            let rstd0 = 1 / ((0..<width).map { x[$0] * x[$0] }.reduce(0, +) / Double(width) + 1e-5).squareRoot()
            XCTAssertEqual(out[1], (1 + weight[1]) * x[1] * rstd0, accuracy: 1e-12)
        }
        var dX = [Double](repeating: 0, count: x.count)
        w.withUnsafeBufferPointer { dp in x.withUnsafeBufferPointer { xp in weight.withUnsafeBufferPointer { wp in
            rstd.withUnsafeBufferPointer { rp in dX.withUnsafeMutableBufferPointer { dxp in
                RMSNormKernel.backward(dOut: dp, x: xp, weight: wp, offset: offset, rstd: rp, dX: dxp)
            } }
        } } }
        assertClose(dX, numericGradient(x) { dot(w, forward($0)) })
    }

    func testRoPEInverseIsTheTranspose() {
        // <R x, y> = <x, Rᵀ y> for every x, y: the inverse rotation is the backward.
        let tokens = 4, heads = 2, headDim = 8, half = headDim / 2, positions = 6
        let angles = (0..<(positions * half)).map { Double($0 / half) * Foundation.pow(100, -Double($0 % half) / Double(half)) }
        let cos = angles.map { Foundation.cos($0) }, sin = angles.map { Foundation.sin($0) }
        let pos: [Int32] = [0, 5, 2, 3]
        var x = random(tokens * heads * headDim), y = random(tokens * heads * headDim)
        let x0 = x, y0 = y
        func apply(_ v: inout [Double], inverse: Bool) {
            v.withUnsafeMutableBufferPointer { vp in pos.withUnsafeBufferPointer { pp in
                cos.withUnsafeBufferPointer { cp in sin.withUnsafeBufferPointer { sp in
                    RoPEKernel.apply(x: vp, positions: pp, cos: cp, sin: sp, heads: heads, headDim: headDim, inverse: inverse)
                } }
            } }
        }
        apply(&x, inverse: false)
        apply(&y, inverse: true)
        XCTAssertEqual(dot(x, y0), dot(x0, y), accuracy: 1e-12)
        // and it is a rotation: norms kept, position 0 untouched
        XCTAssertEqual(dot(x, x), dot(x0, x0), accuracy: 1e-12)
        XCTAssertEqual(Array(x[0..<(heads * headDim)]), Array(x0[0..<(heads * headDim)]))
        XCTAssertNotEqual(Array(x[(heads * headDim)...]), Array(x0[(heads * headDim)...]))
    }

    func testAttentionBackwardWithGQAWindowPackingAndPadding() {
        checkAttentionBackward(softcap: nil)
    }

    /// Gemma 2's attention softcapping (a small cap, so tanh is far from linear), forward and backward.
    func testAttentionBackwardWithSoftcap() {
        checkAttentionBackward(softcap: 0.7)
    }

    func checkAttentionBackward(softcap: Float?) {
        let g = AttentionKernel.Geometry(rows: 2, columns: 6, heads: 4, kvHeads: 2, headDim: 4, slidingWindow: 3,
                                         softcap: softcap)
        // row 0: two packed sequences; row 1: one sequence then padding
        let ids: [Int32] = [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, -1, -1]
        let n = g.rows * g.columns
        let q = random(n * g.heads * g.headDim), k = random(n * g.kvHeads * g.headDim)
        let v = random(n * g.kvHeads * g.headDim), w = random(n * g.heads * g.headDim)
        let scale = 0.5
        func forward(_ q: [Double], _ k: [Double], _ v: [Double]) -> ([Double], [Double]) {
            var out = [Double](repeating: 0, count: q.count), lse = [Double](repeating: 0, count: n * g.heads)
            q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
                ids.withUnsafeBufferPointer { ip in out.withUnsafeMutableBufferPointer { op in
                    lse.withUnsafeMutableBufferPointer { lp in
                        AttentionKernel.forward(q: qp, k: kp, v: vp, sequenceIds: ip, geometry: g, scale: scale, out: op, logSumExp: lp)
                    }
                } }
            } } }
            return (out, lse)
        }
        let (out, lse) = forward(q, k, v)
        if let cap = softcap {
            // token 1 (row 0, head 0) sees keys 0 and 1, scores cap·tanh(q·k·scale / cap)
            let scores = (0..<2).map { j in Double(cap) * Foundation.tanh((0..<4).map { q[16 + $0] * k[j * 8 + $0] }.reduce(0, +) * scale / Double(cap)) }
            let m = scores.max()!
            XCTAssertEqual(lse[4], m + Foundation.log(scores.map { Foundation.exp($0 - m) }.reduce(0, +)), accuracy: 1e-12)
        }
        // Padding queries output zeros; the first token of a sequence copies its own value.
        XCTAssertEqual(Array(out[(10 * 16)...]), [Double](repeating: 0, count: 2 * 16))
        XCTAssertEqual(out[3 * 16], v[3 * 8], accuracy: 1e-12)  // token 3 starts sequence 1, head 0 → kv head 0
        var dQ = [Double](repeating: 0, count: q.count), dK = [Double](repeating: 0, count: k.count)
        var dV = [Double](repeating: 0, count: v.count)
        w.withUnsafeBufferPointer { wp in q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in
            v.withUnsafeBufferPointer { vp in out.withUnsafeBufferPointer { op in lse.withUnsafeBufferPointer { lp in
                ids.withUnsafeBufferPointer { ip in dQ.withUnsafeMutableBufferPointer { dq in
                    dK.withUnsafeMutableBufferPointer { dk in dV.withUnsafeMutableBufferPointer { dv in
                        AttentionKernel.backward(dOut: wp, q: qp, k: kp, v: vp, out: op, logSumExp: lp, sequenceIds: ip,
                                                 geometry: g, scale: scale, dQ: dq, dK: dk, dV: dv)
                    } }
                } }
            } } }
        } } }
        assertClose(dQ, numericGradient(q) { dot(w, forward($0, k, v).0) })
        assertClose(dK, numericGradient(k) { dot(w, forward(q, $0, v).0) })
        assertClose(dV, numericGradient(v) { dot(w, forward(q, k, $0).0) })
    }

    func testAttentionWindowAndSequencesLimitVisibility() {
        let g = AttentionKernel.Geometry(rows: 1, columns: 8, heads: 1, kvHeads: 1, headDim: 2, slidingWindow: 3)
        let ids: [Int32] = [0, 0, 0, 0, 0, 1, 1, -1]
        ids.withUnsafeBufferPointer { ip in
            XCTAssertEqual(AttentionKernel.visibleKeys(row: 0, query: 4, geometry: g, sequenceIds: ip), [2, 3, 4])
            XCTAssertEqual(AttentionKernel.visibleKeys(row: 0, query: 6, geometry: g, sequenceIds: ip), [5, 6])
            XCTAssertEqual(AttentionKernel.visibleKeys(row: 0, query: 7, geometry: g, sequenceIds: ip), [])
        }
    }

    /// SwiGLU and GeGLU (tanh): the backward against finite differences, and GELU's values against
    /// the exact erf GELU it approximates (the tanh form is within 1e-3 of it on [-3, 3]).
    func testGatedLinearUnitBackward() {
        for activation in GatedActivation.allCases {
            let count = 12
            let gate = random(count, scale: 3), up = random(count), w = random(count)
            func forward(_ g: [Double], _ u: [Double]) -> [Double] {
                var out = [Double](repeating: 0, count: count)
                g.withUnsafeBufferPointer { gp in u.withUnsafeBufferPointer { up in out.withUnsafeMutableBufferPointer { op in
                    GatedLinearUnitKernel.forward(activation, gate: gp, up: up, out: op)
                } } }
                return out
            }
            var dGate = [Double](repeating: 0, count: count), dUp = dGate
            w.withUnsafeBufferPointer { wp in gate.withUnsafeBufferPointer { gp in up.withUnsafeBufferPointer { upp in
                dGate.withUnsafeMutableBufferPointer { dg in dUp.withUnsafeMutableBufferPointer { du in
                    GatedLinearUnitKernel.backward(activation, dOut: wp, gate: gp, up: upp, dGate: dg, dUp: du)
                } }
            } } }
            assertClose(dGate, numericGradient(gate) { dot(w, forward($0, up)) })
            assertClose(dUp, numericGradient(up) { dot(w, forward(gate, $0)) })
            let ones = [Double](repeating: 1, count: count)
            for (g, value) in zip(gate, forward(gate, ones)) {
                let exact = activation == .silu ? g / (1 + Foundation.exp(-g)) : 0.5 * g * (1 + erf(g / 2.0.squareRoot()))
                XCTAssertEqual(value, exact, accuracy: activation == .silu ? 1e-12 : 1e-3, "\(activation) at \(g)")
            }
        }
    }

    /// In place (what the decoder layer does): the gradients land in gate's and up's storage, the same bits.
    func testGatedLinearUnitBackwardInPlace() throws {
        let backend = CPUBackend(), count = 12
        for activation in GatedActivation.allCases {
            let gate = random(count, scale: 3), up = random(count), w = random(count)
            let tensors = try [gate, up, w].map { values in try backend.upload(values.map(Float.init), [count], .f32) }
            let (g, u, d) = (tensors[0], tensors[1], tensors[2])
            let separate = (try backend.empty([count], .f32), try backend.empty([count], .f32))
            backend.gatedLinearUnitBackward(activation, dOut: d, gate: g, up: u, dGate: separate.0, dUp: separate.1)
            backend.gatedLinearUnitBackward(activation, dOut: d, gate: g, up: u, dGate: g, dUp: u)
            XCTAssertEqual(backend.download(g), backend.download(separate.0), "\(activation)")
            XCTAssertEqual(backend.download(u), backend.download(separate.1), "\(activation)")
            XCTAssertNotEqual(backend.download(g), gate.map(Float.init), "the gate was overwritten in place")
        }
    }

    /// gate | up side by side in one [rows, 2·width] matrix (a mixture's gate_up output): the bits of the
    /// separate ops on the same values, forward and backward, the backward also in place.
    func testGatedLinearUnitOnFusedGateUp() throws {
        let backend = CPUBackend(), rows = 3, width = 5
        /// Columns `columns` of each row of a [rows, 2·width] matrix.
        func half(_ values: [Float], _ columns: Range<Int>) -> [Float] {
            var out: [Float] = []
            for r in 0..<rows { out += values[(r * 2 * width + columns.lowerBound)..<(r * 2 * width + columns.upperBound)] }
            return out
        }
        for activation in GatedActivation.allCases {
            let fused: [Float] = random(rows * 2 * width, scale: 3).map { Float($0) }
            let dOut: [Float] = random(rows * width).map { Float($0) }
            let gu = try backend.upload(fused, [rows, 2 * width], .f32), d = try backend.upload(dOut, [rows, width], .f32)
            let g = try backend.upload(half(fused, 0..<width), [rows, width], .f32)
            let u = try backend.upload(half(fused, width..<(2 * width)), [rows, width], .f32)
            let out = try backend.empty([rows, width], .f32), fusedOut = try backend.empty([rows, width], .f32)
            backend.gatedLinearUnit(activation, gate: g, up: u, into: out)
            backend.gatedLinearUnit(activation, gateUp: gu, into: fusedOut)
            XCTAssertEqual(backend.download(fusedOut), backend.download(out), "\(activation) forward")
            backend.gatedLinearUnitBackward(activation, dOut: d, gate: g, up: u, dGate: g, dUp: u)
            backend.gatedLinearUnitBackward(activation, dOut: d, gateUp: gu, dGateUp: gu)
            let dgu = backend.download(gu)
            XCTAssertEqual(half(dgu, 0..<width), backend.download(g), "\(activation) dGate")
            XCTAssertEqual(half(dgu, width..<(2 * width)), backend.download(u), "\(activation) dUp")
            XCTAssertNotEqual(dgu, fused, "written in place")
        }
    }

    func testCrossEntropyGradientAndIgnoreIndex() {
        checkCrossEntropy(softcap: nil)
    }

    /// Gemma 2's final logit softcapping inside the loss: loss of cap·tanh(z / cap), gradient through it.
    func testCrossEntropyWithLogitSoftcap() {
        checkCrossEntropy(softcap: 1.5)
    }

    func checkCrossEntropy(softcap: Double?) {
        let rows = 4, vocab = 7
        let logits = random(rows * vocab, scale: 3)
        let labels: [Int32] = [3, -100, 0, 6]
        func losses(_ l: [Double], gradScale: Double?) -> ([Double], [Double]) {
            var l = l, out = [Double](repeating: 0, count: rows)
            l.withUnsafeMutableBufferPointer { lp in labels.withUnsafeBufferPointer { lab in
                out.withUnsafeMutableBufferPointer { op in
                    CrossEntropyKernel.forwardBackward(logits: lp, vocab: vocab, labels: lab, softcap: softcap,
                                                       gradScale: gradScale, losses: op)
                }
            } }
            return (out, l)
        }
        let (rowLosses, grad) = losses(logits, gradScale: 0.5)
        XCTAssertEqual(rowLosses[1], 0)
        XCTAssertEqual(Array(grad[vocab..<(2 * vocab)]), [Double](repeating: 0, count: vocab))
        XCTAssertEqual(losses(logits, gradScale: nil).1, logits, "without a gradient the logits stay as they are")
        // row 0 by hand: logsumexp − logit[label], of the capped logits
        let row0 = logits[0..<vocab].map { z in softcap.map { $0 * Foundation.tanh(z / $0) } ?? z }
        let m = row0.max()!
        XCTAssertEqual(rowLosses[0], m + Foundation.log(row0.map { Foundation.exp($0 - m) }.reduce(0, +)) - row0[3], accuracy: 1e-12)
        assertClose(grad, numericGradient(logits) { 0.5 * losses($0, gradScale: nil).0.reduce(0, +) })
    }

    func testEmbeddingBackwardScatterAdds() {
        let table = random(5 * 3), ids: [Int32] = [4, 1, 4]
        let w = random(ids.count * 3)
        var dTable = [Double](repeating: 0, count: table.count)
        w.withUnsafeBufferPointer { wp in ids.withUnsafeBufferPointer { ip in dTable.withUnsafeMutableBufferPointer { dp in
            EmbeddingKernel.backward(dOut: wp, width: 3, ids: ip, dTable: dp)
        } } }
        func forward(_ t: [Double]) -> [Double] {
            var out = [Double](repeating: 0, count: ids.count * 3)
            t.withUnsafeBufferPointer { tp in ids.withUnsafeBufferPointer { ip in out.withUnsafeMutableBufferPointer { op in
                EmbeddingKernel.forward(table: tp, width: 3, ids: ip, out: op)
            } } }
            return out
        }
        assertClose(dTable, numericGradient(table) { dot(w, forward($0)) })
    }
}

import Foundation
