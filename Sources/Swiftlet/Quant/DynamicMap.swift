#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// bitsandbytes' 8-bit "dynamic" code book (`create_dynamic_map`, Dettmers 2015): 256 sorted
/// Float32 values in [-1, 1] (signed) or [0, 1] (unsigned), dense near zero. 8-bit optimizer
/// states and the double-quantized NF4 absmax are stored as indices into it.
///
/// Built the way bitsandbytes builds it, in Float32 as torch computes it, so the table is
/// bit-identical (checked against bitsandbytes' own table in the tests): for each exponent
/// i = 0...6, the midpoints of `linspace(0.1, 1, k + 1)` scaled by 10^(i-6), with k = 2^i (signed,
/// both signs) or 2^(i+1) (unsigned); then 0 and 1; sorted.
public enum DynamicMap {
    public static let signed: [Float] = make(signed: true)
    public static let unsigned: [Float] = make(signed: false)

    static func make(signed: Bool) -> [Float] {
        var data: [Float] = []
        for i in 0..<7 {
            let items = (signed ? 1 << i : 1 << (i + 1)) + 1
            let boundaries = linspace(0.1, 1, count: items)
            let scale = Float(pow(10.0, Double(i - 6)))
            for j in 0..<(items - 1) {
                let mean = (boundaries[j] + boundaries[j + 1]) / 2
                data.append(scale * mean)
                if signed { data.append(-(scale * mean)) }
            }
        }
        data.append(0)
        data.append(1)
        data += [Float](repeating: 0, count: 256 - data.count)
        return data.sorted()
    }

    /// torch.linspace for float32 on the CPU: the step in Float32, the first half counted up
    /// from `start` and the second half down from `end`, each with a fused multiply-add (the
    /// vectorised kernel's `fmadd`).
    static func linspace(_ start: Float, _ end: Float, count: Int) -> [Float] {
        let step = (end - start) / Float(count - 1)
        let halfway = count / 2
        return (0..<count).map { i in
            i < halfway ? start.addingProduct(step, Float(i)) : end.addingProduct(-step, Float(count - i - 1))
        }
    }
}
