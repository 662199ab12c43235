import XCTest
@testable import Swiftlet

/// The 3-way bf16 split of the LoRA products' f32 tensors (`BFloat16.split3`, the reference of the
/// CUDA `split_bf16` kernel in CUDA/Kernels/SplitBF16Kernels.swift): every part is a bf16 value and
/// the parts sum back to v within 2⁻²⁴ relative (2⁻¹³⁴ absolute where bf16's subnormals run out).
final class SplitBF16Tests: XCTestCase {
    func isBF16(_ v: Float) -> Bool { v.isNaN || v.bitPattern & 0xFFFF == 0 }

    func checkSplit(_ v: Float, file: StaticString = #filePath, line: UInt = #line) {
        let (v1, v2, v3) = BFloat16.split3(v)
        XCTAssertTrue(isBF16(v1) && isBF16(v2) && isBF16(v3), "parts of \(v): \(v1) \(v2) \(v3)", file: file, line: line)
        XCTAssertEqual(v1.bitPattern, v.isNaN ? 0x7FC0_0000 : v1.bitPattern, file: file, line: line)
        if !v.isFinite {
            XCTAssertTrue(v.isNaN ? v1.isNaN : v1 == v, "\(v) → \(v1)", file: file, line: line)
            XCTAssertEqual(v2, 0, file: file, line: line)
            XCTAssertEqual(v3, 0, file: file, line: line)
            return
        }
        // v1 is bf16(v) except above bf16's largest finite value (truncated there)
        let overflow = BFloat16.round(v).isInfinite
        if !overflow { XCTAssertEqual(v1.bitPattern, BFloat16.round(v).bitPattern, file: file, line: line) }
        let exact = Double(v1) + Double(v2) + Double(v3)
        let bound = (overflow ? 0x1p-23 : 0x1p-24) * Double(v.magnitude) + 0x1p-134
        // summed in f32 (smallest first, as the GEMM sums blocks) adds at most one more rounding
        XCTAssertLessThanOrEqual(abs(Double((v3 + v2) + v1) - Double(v)), 2 * bound, "f32 sum of the parts of \(v)",
                                 file: file, line: line)
        XCTAssertLessThanOrEqual(abs(exact - Double(v)), bound, "split of \(v) (\(v.bitPattern)): \(v1) \(v2) \(v3)",
                                 file: file, line: line)
        if v.isNormal && v.magnitude >= 0x1p-100 {
            XCTAssertLessThanOrEqual(abs(exact - Double(v)), (overflow ? 0x1p-23 : 0x1p-24) * Double(v.magnitude),
                                     "relative bound for \(v)", file: file, line: line)
        }
    }

    func testEdgeValues() {
        let edges: [Float] = [0, -0, 1, -1, 0.1, -0.1, 1.0 / 3, Float.pi, 1e-3, 65504, 1e30, 1e38, 3e38, -3e38,
                              Float.greatestFiniteMagnitude, -Float.greatestFiniteMagnitude,
                              Float(bitPattern: 0x7F7F_8000), Float(bitPattern: 0x7F7F_7FFF),   // bf16 max's rounding edges
                              Float.leastNormalMagnitude, Float.leastNonzeroMagnitude, -Float.leastNonzeroMagnitude,
                              Float(bitPattern: 0x0000_7FFF), Float(bitPattern: 0x0000_8000), Float(bitPattern: 0x007F_FFFF),
                              Float(bitPattern: 0x0080_0001), Float(bitPattern: 0x3F80_0001), Float(bitPattern: 0x3F80_8000),
                              Float(bitPattern: 0x3F81_8000), Float(bitPattern: 0x3FFF_FFFF), 0x1p-100, 0x1p-120,
                              .infinity, -.infinity, .nan]
        for v in edges { checkSplit(v) }
        XCTAssertEqual(BFloat16.split3(0).0.bitPattern, 0)
        XCTAssertEqual(BFloat16.split3(-0.0).0.sign, .minus)
        XCTAssertTrue(BFloat16.split3(Float.greatestFiniteMagnitude).0.isFinite)
    }

    func testRandomValues() {
        var generator = SplitMix64(seed: 0x5EED_B16)
        for _ in 0..<200_000 {
            // every bit pattern that is finite: all exponents, subnormals included
            let bits = UInt32(truncatingIfNeeded: generator.next())
            let v = Float(bitPattern: bits)
            guard v.isFinite else { continue }
            checkSplit(v)
        }
        for _ in 0..<50_000 { checkSplit(generator.uniform(in: -0.05..<0.05)) }   // LoRA weights' range
    }

    /// The split's part orders: planes of the one-GEMM products pair (1,1) (1,2) (2,1) (1,3) (3,1) (2,2).
    func testCrossTermOrders() {
        let pairs = zip(CUDASplitBF16.crossLeft, CUDASplitBF16.crossRight).map { [$0, $1] }
        XCTAssertEqual(pairs, [[1, 1], [1, 2], [2, 1], [1, 3], [3, 1], [2, 2]])
        XCTAssertEqual(CUDASplitBF16.code([1, 2, 3]), 1 | 2 << 2 | 3 << 4)
        // z·w with z and w split, the six terms in f32 agree with the f32 product to ~2⁻²⁴
        var generator = SplitMix64(seed: 7)
        for _ in 0..<10_000 {
            let z = generator.uniform(in: -4..<4), w = generator.uniform(in: -0.05..<0.05)
            let zp = BFloat16.split3(z), wp = BFloat16.split3(w)
            let zs = [zp.0, zp.1, zp.2], ws = [wp.0, wp.1, wp.2]
            var sum: Float = 0
            for (i, j) in zip(CUDASplitBF16.crossLeft, CUDASplitBF16.crossRight) { sum += zs[i - 1] * ws[j - 1] }
            let exact = Double(z) * Double(w)
            XCTAssertLessThanOrEqual(abs(Double(sum) - exact), 0x1p-20 * abs(exact), "\(z) · \(w)")
        }
    }
}
