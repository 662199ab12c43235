import XCTest
@testable import Swiftlet

/// What the cuDNN attention graphs are told about our tensors, checked without a GPU: the strides
/// must address the same element as our [tokens, heads·d] and [tokens, heads] layouts, and only
/// batches of whole rows may take the fused path.
final class CUDNNAttentionLayoutTests: XCTestCase {
    /// Σ index·stride over four dims.
    func offset(_ index: [Int], _ strides: [Int64]) -> Int {
        zip(index, strides).reduce(0) { $0 + $1.0 * Int($1.1) }
    }

    func testStridesAddressOurActivationLayout() {
        let rows = 2, columns = 5, heads = 3, d = 4
        let bhsd = CUDNNAttention.bhsd(columns: columns, heads: heads, headDim: d)
        let bhds = CUDNNAttention.bhds(columns: columns, heads: heads, headDim: d)
        let stats = CUDNNAttention.statsStrides(columns: columns, heads: heads)
        for b in 0..<rows { for h in 0..<heads { for s in 0..<columns {
            let token = b * columns + s
            for c in 0..<d {
                let ours = token * heads * d + h * d + c   // [tokens, heads·d], row-major
                XCTAssertEqual(offset([b, h, s, c], bhsd), ours)
                XCTAssertEqual(offset([b, h, c, s], bhds), ours, "the transposed view (Kᵀ, Vᵀ)")
            }
            XCTAssertEqual(offset([b, h, s, 0], stats), token * heads + h, "log-sum-exp [tokens, heads]")
        } } }
    }

    func testPackedStridesAreRowMajor() {
        XCTAssertEqual(CUDNNGraph.packed([2, 3, 4, 5]), [60, 20, 5, 1])
        XCTAssertEqual(CUDNNGraph.packed([7, 1, 1, 1]), [1, 1, 1, 1])
    }

    func testOnlyWholeRowsTakeThePlainCausalMask() {
        XCTAssertTrue(AttentionLayout.rowsAreWhole([0, 0, 0, 5, 5, 5], columns: 3))
        XCTAssertFalse(AttentionLayout.rowsAreWhole([0, 0, 1, 5, 5, 5], columns: 3), "packed examples")
        XCTAssertFalse(AttentionLayout.rowsAreWhole([0, 0, -1, 5, 5, 5], columns: 3), "padding")
        XCTAssertFalse(AttentionLayout.rowsAreWhole([-1, -1, -1], columns: 3), "a padding row")
        XCTAssertFalse(AttentionLayout.rowsAreWhole([], columns: 0))
    }

    func testVersionsWithKnownBackwardBugsAreSkipped() {
        XCTAssertTrue(CUDNNAttention.supports(version: 91400))
        XCTAssertTrue(CUDNNAttention.supports(version: 90000))
        XCTAssertFalse(CUDNNAttention.supports(version: 91000))
        XCTAssertFalse(CUDNNAttention.supports(version: 91001))
        XCTAssertFalse(CUDNNAttention.supports(version: 8906))
    }
}
