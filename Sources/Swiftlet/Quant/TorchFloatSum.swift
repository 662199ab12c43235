/// `torch.sum` of a contiguous Float32 vector on the CPU, in torch's order of additions, so a
/// mean computed from it (bitsandbytes' double-quantization offset, `absmax.mean()`) is bit
/// identical. torch's `cascade_sum` reduces 8-lane vectors with 4 interleaved accumulators and
/// 4 cascade levels, then adds the scalar tail and the 8 lanes. Checked against torch 2.x; torch
/// splits reductions of more than 32768 elements across threads, where its result depends on
/// the thread count, so beyond that this is torch's single-thread answer.
enum TorchFloatSum {
    static let lanes = 8
    static let interleave = 4

    static func sum(_ x: [Float]) -> Float {
        if x.count < lanes { return rowSum(count: x.count, zero: Float(0)) { x[$0] } }
        let vectors = x.count / lanes
        let laneSums = rowSum(count: vectors, zero: SIMD8<Float>()) { v in
            SIMD8<Float>(x[(v * lanes)..<((v + 1) * lanes)])
        }
        var total: Float = 0
        for k in (vectors * lanes)..<x.count { total += x[k] }
        for lane in 0..<lanes { total += laneSums[lane] }
        return total
    }

    /// `row_sum`: `count` elements read as rows of `interleave` columns, each column summed by
    /// the cascade; the leftover elements go to column 0, then the columns are added.
    static func rowSum<T: Summable>(count: Int, zero: T, _ element: (Int) -> T) -> T {
        let rows = count / interleave
        var partial = cascade(rows: rows, zero: zero) { i, k in element(i * interleave + k) }
        for i in (rows * interleave)..<count { partial[0] = partial[0].adding(element(i)) }
        for k in 1..<interleave { partial[0] = partial[0].adding(partial[k]) }
        return partial[0]
    }

    /// `multi_row_sum`: 4 levels of accumulators; level 0 takes 2^p rows at a time, and each
    /// level empties into the next every 2^p of its own flushes.
    static func cascade<T: Summable>(rows: Int, zero: T, _ element: (Int, Int) -> T) -> [T] {
        let levels = 4
        let power = Swift.max(4, ceilLog2(rows) / levels)
        let step = 1 << power, mask = step - 1
        var acc = [[T]](repeating: [T](repeating: zero, count: interleave), count: levels)
        var i = 0
        while i + step <= rows {
            for _ in 0..<step {
                for k in 0..<interleave { acc[0][k] = acc[0][k].adding(element(i, k)) }
                i += 1
            }
            for j in 1..<levels {
                for k in 0..<interleave {
                    acc[j][k] = acc[j][k].adding(acc[j - 1][k])
                    acc[j - 1][k] = zero
                }
                if i & (mask << (j * power)) != 0 { break }
            }
        }
        while i < rows {
            for k in 0..<interleave { acc[0][k] = acc[0][k].adding(element(i, k)) }
            i += 1
        }
        for j in 1..<levels {
            for k in 0..<interleave { acc[0][k] = acc[0][k].adding(acc[j][k]) }
        }
        return acc[0]
    }

    static func ceilLog2(_ x: Int) -> Int {
        x <= 1 ? 0 : Int.bitWidth - (x - 1).leadingZeroBitCount
    }
}

/// A scalar or a SIMD-like lane vector that torch's reduction adds.
protocol Summable { func adding(_ other: Self) -> Self }
extension Float: Summable { func adding(_ other: Float) -> Float { self + other } }
extension SIMD8: Summable where Scalar == Float {
    func adding(_ other: SIMD8<Float>) -> SIMD8<Float> { self + other }
}
