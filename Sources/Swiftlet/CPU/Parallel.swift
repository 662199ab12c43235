import Foundation

/// Runs `body` over `0..<count` split into fixed chunks on all cores. The split depends only on
/// `count` and `grain`, never on timing, so work that writes disjoint outputs per index stays
/// bit-reproducible.
@inlinable
func parallelFor(_ count: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
    guard count > 0 else { return }
    let chunks = Swift.min((count + grain - 1) / grain, 64)
    if chunks <= 1 { body(0..<count); return }
    DispatchQueue.concurrentPerform(iterations: chunks) { c in
        let lo = count * c / chunks, hi = count * (c + 1) / chunks
        if lo < hi { body(lo..<hi) }
    }
}
