/// Rotary position embedding, Hugging Face's half-split layout: for i < d/2,
/// (x[i], x[i+d/2]) ← (x[i]·cos − x[i+d/2]·sin, x[i+d/2]·cos + x[i]·sin) with the angle of the
/// token's position and frequency i. The backward is the inverse rotation (sin negated).
enum RoPEKernel {
    static func apply<T: BinaryFloatingPoint>(
        x: UnsafeMutableBufferPointer<T>, positions: UnsafeBufferPointer<Int32>,
        cos: UnsafeBufferPointer<T>, sin: UnsafeBufferPointer<T>, heads: Int, headDim: Int,
        inverse: Bool
    ) {
        let half = headDim / 2, width = heads * headDim
        let sign: T = inverse ? -1 : 1
        parallelFor(positions.count, grain: 64) { tokens in
            for n in tokens {
                let p = Int(positions[n])
                precondition(p >= 0 && p * half < cos.count, "position \(p) outside the RoPE table")
                for h in 0..<heads {
                    let base = n * width + h * headDim
                    for i in 0..<half {
                        let c = cos[p * half + i], s = sign * sin[p * half + i]
                        let a = x[base + i], b = x[base + i + half]
                        x[base + i] = a * c - b * s
                        x[base + i + half] = b * c + a * s
                    }
                }
            }
        }
    }
}

extension CPUBackend {
    public func rope(_ x: Tensor, positions: Tensor, table: RoPETable, heads: Int, inverse: Bool) {
        RoPEKernel.apply(x: x.floats, positions: UnsafeBufferPointer(positions.ints),
                         cos: UnsafeBufferPointer(table.cos.floats), sin: UnsafeBufferPointer(table.sin.floats),
                         heads: heads, headDim: table.headDim, inverse: inverse)
    }
}
