import Foundation

/// A deterministic seeded train/eval split.
public enum DatasetSplit {
    /// Shuffles the indices with a SplitMix64-seeded Fisher–Yates and takes the first
    /// `round(count × evalFraction)` (at least 1 when the fraction is positive and there are 2+ examples,
    /// at most count − 1) as the evaluation set; both parts keep the data set's order.
    public static func split<T>(_ items: [T], evalFraction: Double, seed: UInt64) -> (train: [T], eval: [T]) {
        precondition(evalFraction >= 0 && evalFraction < 1, "evalFraction must be in [0, 1)")
        let n = items.count
        guard evalFraction > 0, n >= 2 else { return (items, []) }
        let evalCount = min(n - 1, max(1, Int((Double(n) * evalFraction).rounded())))
        var rng = SplitMix64(seed: seed)
        var order = Array(0..<n)
        for i in stride(from: n - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(i + 1))
            order.swapAt(i, j)
        }
        let evalSet = Set(order.prefix(evalCount))
        var train: [T] = [], eval: [T] = []
        for (i, x) in items.enumerated() { if evalSet.contains(i) { eval.append(x) } else { train.append(x) } }
        return (train, eval)
    }
}
