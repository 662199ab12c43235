/// The blockwise absmax scaling shared by bitsandbytes' 4-bit and 8-bit quantizers (its
/// pure-torch reference, `backends/default/ops.py`): each block of `blockSize` consecutive
/// elements is divided by its largest magnitude. Full blocks multiply by the Float32 reciprocal
/// `1 / max(absmax, 1e-38)`; the partial last block divides by `max(absmax, 1e-38)` and stores
/// that clamped value. Results are clamped to [-1, 1].
enum BlockwiseScaling {
    static let tiny: Float = 1e-38

    static func scale(_ x: [Float], blockSize: Int) -> (scaled: [Float], absmax: [Float]) {
        precondition(blockSize > 0)
        let blocks = (x.count + blockSize - 1) / blockSize
        var scaled = [Float](repeating: 0, count: x.count)
        var absmax = [Float](repeating: 0, count: blocks)
        // Blocks are independent: split them over the cores (a 7B model has 10^8 of them).
        x.withUnsafeBufferPointer { x in
            scaled.withUnsafeMutableBufferPointer { scaled in
                absmax.withUnsafeMutableBufferPointer { absmax in
                    parallelFor(blocks, grain: 4096) { chunk in
                        for b in chunk {
                            let range = (b * blockSize)..<Swift.min((b + 1) * blockSize, x.count)
                            var m: Float = 0
                            for i in range { m = Swift.max(m, Swift.abs(x[i])) }
                            if range.count == blockSize {
                                absmax[b] = m
                                let reciprocal = 1 / Swift.max(m, tiny)
                                for i in range { scaled[i] = clamp(x[i] * reciprocal) }
                            } else {
                                let am = Swift.max(m, tiny)
                                absmax[b] = am
                                for i in range { scaled[i] = clamp(x[i] / am) }
                            }
                        }
                    }
                }
            }
        }
        return (scaled, absmax)
    }

    @inline(__always)
    static func clamp(_ v: Float) -> Float { Swift.min(Swift.max(v, -1), 1) }
}
