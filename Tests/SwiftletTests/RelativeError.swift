import XCTest

extension XCTestCase {
    /// max |a − b| / max |b| (the fixtures' error measure); infinite when `a` holds a NaN or an infinity,
    /// so a broken result never passes a bound.
    func relativeError(_ a: [Float], _ b: [Float]) -> Double {
        precondition(a.count == b.count, "\(a.count) vs \(b.count)")
        if a.contains(where: { !$0.isFinite }) { return .infinity }
        let diff = zip(a, b).map { Double(abs($0 - $1)) }.max() ?? 0
        return diff / max(b.map { Double(abs($0)) }.max() ?? 0, 1e-12)
    }
}
