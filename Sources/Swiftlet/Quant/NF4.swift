/// NormalFloat4 (QLoRA, Dettmers et al. 2023): 16 levels at quantiles of N(0, 1) scaled to
/// [-1, 1], with an exact zero. A 4-bit NF4 code is an index into `codebook`, not a float
/// encoding. The values are bitsandbytes' float32 table (`get_4bit_type("nf4")`), bit for bit.
public enum NF4 {
    public static let codebook: [Float] = [
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
        -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
        0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
        0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
    ]

    /// Midpoints between neighbouring levels, in Float32 as torch computes `(a + b) / 2`.
    static let midpoints: [Float] = CodeBook.midpoints(codebook)

    /// The code of a value already scaled into [-1, 1].
    static func code(_ scaled: Float) -> UInt8 { UInt8(CodeBook.bucket(scaled, midpoints: midpoints)) }
}

/// Nearest-level search in a sorted code book, as bitsandbytes' pure-torch reference does it:
/// `torch.bucketize(x, midpoints)` (right=False), so a value exactly on a midpoint takes the
/// lower level.
enum CodeBook {
    static func midpoints(_ sorted: [Float]) -> [Float] {
        (0..<(sorted.count - 1)).map { (sorted[$0] + sorted[$0 + 1]) / 2 }
    }

    /// The number of midpoints strictly below `x` (binary search; NaN lands at 0).
    static func bucket(_ x: Float, midpoints: [Float]) -> Int {
        var low = 0, high = midpoints.count
        while low < high {
            let mid = (low + high) / 2
            if midpoints[mid] < x { low = mid + 1 } else { high = mid }
        }
        return low
    }
}
