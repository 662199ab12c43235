import XCTest
@testable import Swiftlet

/// The library's seeded generator, with the draws these tests use.
extension SplitMix64 {
    /// Uniform in [-1, 1).
    mutating func float() -> Float { Float(next() >> 40) * 0x1p-23 - 1 }
    mutating func floats(_ count: Int) -> [Float] { (0..<count).map { _ in float() } }
}

final class CPUGemmTests: XCTestCase {
    /// One GEMM problem: sizes, transposes, scalars and (possibly padded) leading dimensions.
    struct Case: CustomStringConvertible {
        var transA = false, transB = false
        var m: Int, n: Int, k: Int
        var alpha: Float = 1, beta: Float = 0
        var padA = 0, padB = 0, padC = 0  // extra elements per row beyond the logical width
        var nanC = false                  // fill C with NaN (only meaningful with beta == 0)
        var description: String {
            "tA=\(transA) tB=\(transB) m=\(m) n=\(n) k=\(k) alpha=\(alpha) beta=\(beta) "
                + "pad=(\(padA),\(padB),\(padC)) nanC=\(nanC)"
        }
    }

    /// Runs `sgemm` on seeded random data and returns the indices of elements that disagree
    /// with the Double reference by more than the bound (empty = pass). `corrupt` lets the
    /// checker's own test damage the result to prove that failures are caught.
    func mismatches(_ t: Case, seed: UInt64 = 1, allowParallel: Bool = true,
                    corrupt: ((inout [Float]) -> Void)? = nil) -> [Int] {
        var rng = SplitMix64(seed: seed)
        let (aRows, aCols) = t.transA ? (t.k, t.m) : (t.m, t.k)
        let (bRows, bCols) = t.transB ? (t.n, t.k) : (t.k, t.n)
        let lda = aCols + t.padA, ldb = bCols + t.padB, ldc = t.n + t.padC
        let a = rng.floats(max(aRows * lda, 1))
        let b = rng.floats(max(bRows * ldb, 1))
        let c0 = t.nanC ? [Float](repeating: .nan, count: max(t.m * ldc, 1))
                        : rng.floats(max(t.m * ldc, 1))

        var c = c0
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                c.withUnsafeMutableBufferPointer { c in
                    CPUGemm.sgemm(transA: t.transA, transB: t.transB, m: t.m, n: t.n, k: t.k,
                                  alpha: t.alpha, a: a.baseAddress!, lda: lda,
                                  b: b.baseAddress!, ldb: ldb, beta: t.beta,
                                  c: c.baseAddress!, ldc: ldc, allowParallel: allowParallel)
                }
            }
        }
        corrupt?(&c)

        // Reference in Double, plus the magnitude |alpha|·Σ|a||b| + |beta·c| of each element:
        // Float32 rounding error is proportional to it, not to the (possibly cancelled) result.
        let ad = a.map(Double.init), bd = b.map(Double.init)
        let aAbs = ad.map(abs), bAbs = bd.map(abs)
        var ref = c0.map(Double.init)
        var mag = c0.map { t.beta == 0 ? 0 : abs(Double(t.beta) * Double($0)) }
        ad.withUnsafeBufferPointer { a in
            bd.withUnsafeBufferPointer { b in
                ref.withUnsafeMutableBufferPointer { r in
                    CPUGemm.reference(transA: t.transA, transB: t.transB, m: t.m, n: t.n, k: t.k,
                                      alpha: Double(t.alpha), a: a.baseAddress!, lda: lda,
                                      b: b.baseAddress!, ldb: ldb, beta: Double(t.beta),
                                      c: r.baseAddress!, ldc: ldc)
                }
            }
        }
        aAbs.withUnsafeBufferPointer { a in
            bAbs.withUnsafeBufferPointer { b in
                mag.withUnsafeMutableBufferPointer { g in
                    CPUGemm.reference(transA: t.transA, transB: t.transB, m: t.m, n: t.n, k: t.k,
                                      alpha: abs(Double(t.alpha)), a: a.baseAddress!, lda: lda,
                                      b: b.baseAddress!, ldb: ldb, beta: 1,
                                      c: g.baseAddress!, ldc: ldc)
                }
            }
        }

        var bad: [Int] = []
        for i in 0..<t.m {
            for j in 0..<t.n {
                let idx = i * ldc + j
                let err = abs(Double(c[idx]) - ref[idx])
                // `!(err <= bound)` so that NaN never passes.
                if !(err <= 1e-5 * mag[idx] + 1e-30) { bad.append(idx) }
            }
            // Padding columns of C must be left untouched.
            for j in t.n..<ldc where c[i * ldc + j].bitPattern != c0[i * ldc + j].bitPattern {
                bad.append(i * ldc + j)
            }
        }
        return bad
    }

    func check(_ t: Case, seed: UInt64 = 1, file: StaticString = #filePath, line: UInt = #line) {
        let bad = mismatches(t, seed: seed)
        XCTAssert(bad.isEmpty, "\(t): \(bad.count) wrong elements, first at \(bad.first ?? -1)",
                  file: file, line: line)
    }

    static let transposes = [(false, false), (false, true), (true, false), (true, true)]

    func testSmallOddSizesAllTransposes() {
        let sizes = [1, 2, 7, 13, 33]
        var seed: UInt64 = 10
        for (tA, tB) in Self.transposes {
            for m in sizes { for n in sizes { for k in sizes {
                seed += 1
                check(Case(transA: tA, transB: tB, m: m, n: n, k: k), seed: seed)
            } } }
        }
    }

    func testAlphaBetaAndPaddedLeadingDimensions() {
        var seed: UInt64 = 1000
        for (tA, tB) in Self.transposes {
            for (alpha, beta) in [(Float(1), Float(1)), (0.5, -2), (-1.25, 0.75), (2, 0)] {
                seed += 1
                check(Case(transA: tA, transB: tB, m: 37, n: 29, k: 41, alpha: alpha, beta: beta,
                           padA: 3, padB: 5, padC: 2), seed: seed)
            }
        }
    }

    func testBetaZeroIgnoresNaNInC() {
        for (tA, tB) in Self.transposes {
            check(Case(transA: tA, transB: tB, m: 19, n: 23, k: 17, alpha: 1.5, beta: 0,
                       padC: 1, nanC: true))
            // Also with k == 0 (C = beta·C = 0) and alpha == 0 (A, B not used).
            check(Case(transA: tA, transB: tB, m: 5, n: 9, k: 0, beta: 0, nanC: true))
            check(Case(transA: tA, transB: tB, m: 5, n: 9, k: 4, alpha: 0, beta: 0, nanC: true))
        }
    }

    func testKZeroScalesC() {
        for beta: Float in [0, 1, -0.5] {
            check(Case(m: 7, n: 13, k: 0, alpha: 3, beta: beta, padC: 2))
        }
    }

    /// Sizes that cross the tile (96 × 128) and k-block (256) boundaries, so several tiles, edge
    /// micro-tiles and the accumulation of k blocks into C are all exercised, in parallel.
    func testMultiTileAndMultiKBlock() {
        var seed: UInt64 = 2000
        for (tA, tB) in Self.transposes {
            seed += 1
            check(Case(transA: tA, transB: tB, m: 101, n: 133, k: 300, alpha: 0.75, beta: 1,
                       padA: 1, padB: 2, padC: 3), seed: seed)
            seed += 1
            check(Case(transA: tA, transB: tB, m: 200, n: 150, k: 70), seed: seed)
        }
    }

    /// LoRA-like skinny shapes.
    func testSkinnyShapes() {
        check(Case(m: 300, n: 8, k: 64))
        check(Case(transA: true, m: 8, n: 140, k: 300, beta: 1))
        check(Case(transB: true, m: 300, n: 130, k: 8))
        check(Case(m: 1, n: 300, k: 260))
        check(Case(transA: true, transB: true, m: 300, n: 1, k: 260))
    }

    /// Bit-identical results across calls, and between the parallel and the serial path, on a
    /// problem large enough to be split across threads.
    func testDeterministic() {
        let m = 300, n = 260, k = 520
        var rng = SplitMix64(seed: 42)
        let a = rng.floats(m * k), b = rng.floats(n * k), c0 = rng.floats(m * n)
        XCTAssertGreaterThanOrEqual(m * n * k, CPUGemm.parallelThreshold)
        func run(_ parallel: Bool) -> [UInt32] {
            var c = c0
            c.withUnsafeMutableBufferPointer { c in
                CPUGemm.sgemm(transA: false, transB: true, m: m, n: n, k: k, alpha: 0.9,
                              a: a, lda: k, b: b, ldb: k, beta: 0.5, c: c.baseAddress!, ldc: n,
                              allowParallel: parallel)
            }
            return c.map(\.bitPattern)
        }
        let first = run(true)
        for _ in 0..<3 { XCTAssertEqual(run(true), first) }
        XCTAssertEqual(run(false), first)
    }

    /// The checker itself must reject wrong answers, or every test above proves nothing.
    func testCheckerCatchesErrors() {
        let t = Case(transA: true, m: 13, n: 11, k: 17, beta: 1)
        XCTAssertTrue(mismatches(t).isEmpty)
        XCTAssertFalse(mismatches(t, corrupt: { $0[5] += 1e-3 }).isEmpty)
        XCTAssertFalse(mismatches(t, corrupt: { $0[0] = .nan }).isEmpty)
        XCTAssertFalse(mismatches(t, corrupt: { $0[7] = -$0[7] }).isEmpty)
    }
}
