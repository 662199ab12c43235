import RealModule

/// Attention of new queries against a KV cache (CachedAttentionLayout), with the same exact
/// softmax and summation order as AttentionKernel.forward, so a cached decode step reproduces
/// the full recompute's numbers.
enum CachedAttentionKernel {
    static func forward<T: Real & BinaryFloatingPoint>(
        q: UnsafeBufferPointer<T>, k: UnsafeBufferPointer<T>, v: UnsafeBufferPointer<T>,
        keyValid: UnsafeBufferPointer<Int32>, layout g: CachedAttentionLayout,
        out: UnsafeMutableBufferPointer<T>
    ) {
        let d = g.headDim, qWidth = g.heads * d, kvWidth = g.kvHeads * d, group = g.heads / g.kvHeads
        let scale = T(g.scale)
        parallelFor(g.rows * g.heads) { tasks in
            var scores = [T](repeating: 0, count: g.capacity)
            var keys = [Int](repeating: 0, count: g.capacity)
            for task in tasks {
                let row = task / g.heads, h = task % g.heads, kvh = h / group
                for i in 0..<g.queries {
                    let qOff = (row * g.queries + i) * qWidth + h * d
                    var count = 0
                    for j in 0...(g.start + i) where g.allows(query: i, key: j, valid: keyValid[row * g.capacity + j]) {
                        keys[count] = j; count += 1
                    }
                    for c in 0..<d { out[qOff + c] = 0 }
                    guard count > 0 else { continue }  // a padding query: nothing to see
                    var maxScore = -T.infinity
                    for slot in 0..<count {
                        let kOff = (row * g.capacity + keys[slot]) * kvWidth + kvh * d
                        var dot: T = 0
                        for c in 0..<d { dot += q[qOff + c] * k[kOff + c] }
                        scores[slot] = g.softcap.map { LogitSoftcap.apply(dot * scale, cap: T($0)) } ?? dot * scale
                        maxScore = Swift.max(maxScore, scores[slot])
                    }
                    var total: T = 0
                    for slot in 0..<count {
                        scores[slot] = T.exp(scores[slot] - maxScore)
                        total += scores[slot]
                    }
                    for slot in 0..<count {
                        let p = scores[slot] / total
                        let vOff = (row * g.capacity + keys[slot]) * kvWidth + kvh * d
                        for c in 0..<d { out[qOff + c] += p * v[vOff + c] }
                    }
                }
            }
        }
    }
}

extension CPUBackend {
    public func cachedAttention(_ q: Tensor, keys: Tensor, values: Tensor, layout: CachedAttentionLayout,
                                into out: Tensor) {
        CachedAttentionKernel.forward(q: UnsafeBufferPointer(q.floats), k: UnsafeBufferPointer(keys.floats),
                                      v: UnsafeBufferPointer(values.floats),
                                      keyValid: UnsafeBufferPointer(layout.keyValid.ints), layout: layout,
                                      out: out.floats)
    }
}
