import RealModule

/// Causal grouped-query attention over packed rows, with the exact softmax, keeping only the
/// log-sum-exp per (token, head) for the backward (which recomputes the probabilities, as
/// FlashAttention does, so memory stays O(T)).
enum AttentionKernel {
    struct Geometry {
        var rows, columns, heads, kvHeads, headDim: Int
        var slidingWindow: Int?
        /// Gemma 2's attn_logit_softcapping: scores become cap·tanh(score / cap).
        var softcap: Float? = nil
        var groupSize: Int { heads / kvHeads }
    }

    /// Keys visible to query column `i` of `row` (ascending), given the sequence ids.
    @inline(__always)
    static func visibleKeys(row: Int, query i: Int, geometry g: Geometry,
                            sequenceIds: UnsafeBufferPointer<Int32>) -> [Int] {
        let base = row * g.columns, qs = sequenceIds[base + i]
        guard qs >= 0 else { return [] }
        let first = g.slidingWindow.map { Swift.max(0, i - $0 + 1) } ?? 0
        return (first...i).filter { sequenceIds[base + $0] == qs }
    }

    static func forward<T: Real & BinaryFloatingPoint>(
        q: UnsafeBufferPointer<T>, k: UnsafeBufferPointer<T>, v: UnsafeBufferPointer<T>,
        sequenceIds: UnsafeBufferPointer<Int32>, geometry g: Geometry, scale: T,
        out: UnsafeMutableBufferPointer<T>, logSumExp: UnsafeMutableBufferPointer<T>
    ) {
        let d = g.headDim, qWidth = g.heads * d, kvWidth = g.kvHeads * d
        parallelFor(g.rows * g.heads) { tasks in
            var scores = [T](repeating: 0, count: g.columns)
            for task in tasks {
                let row = task / g.heads, h = task % g.heads, kvh = h / g.groupSize
                for i in 0..<g.columns {
                    let n = row * g.columns + i
                    let qOff = n * qWidth + h * d
                    let keys = visibleKeys(row: row, query: i, geometry: g, sequenceIds: sequenceIds)
                    guard !keys.isEmpty else {
                        for c in 0..<d { out[qOff + c] = 0 }
                        logSumExp[n * g.heads + h] = -T.infinity
                        continue
                    }
                    var maxScore = -T.infinity
                    for (slot, j) in keys.enumerated() {
                        let kOff = (row * g.columns + j) * kvWidth + kvh * d
                        var dot: T = 0
                        for c in 0..<d { dot += q[qOff + c] * k[kOff + c] }
                        scores[slot] = g.softcap.map { LogitSoftcap.apply(dot * scale, cap: T($0)) } ?? dot * scale
                        maxScore = Swift.max(maxScore, scores[slot])
                    }
                    var total: T = 0
                    for slot in keys.indices {
                        scores[slot] = T.exp(scores[slot] - maxScore)
                        total += scores[slot]
                    }
                    for c in 0..<d { out[qOff + c] = 0 }
                    for (slot, j) in keys.enumerated() {
                        let p = scores[slot] / total
                        let vOff = (row * g.columns + j) * kvWidth + kvh * d
                        for c in 0..<d { out[qOff + c] += p * v[vOff + c] }
                    }
                    logSumExp[n * g.heads + h] = maxScore + T.log(total)
                }
            }
        }
    }

    /// dS = P ⊙ (dO·Vᵀ − rowsum(dO ⊙ O)); dQ = scale·dS·K, dK = scale·dSᵀ·Q, dV = Pᵀ·dO; with a
    /// softcap, dS is also multiplied by 1 − tanh² of the capped score (the chain through the cap).
    /// Work is split by (row, kv head) so the query heads sharing a kv head accumulate into their
    /// dK and dV in a fixed order: deterministic without atomics.
    static func backward<T: Real & BinaryFloatingPoint>(
        dOut: UnsafeBufferPointer<T>, q: UnsafeBufferPointer<T>, k: UnsafeBufferPointer<T>,
        v: UnsafeBufferPointer<T>, out: UnsafeBufferPointer<T>, logSumExp: UnsafeBufferPointer<T>,
        sequenceIds: UnsafeBufferPointer<Int32>, geometry g: Geometry, scale: T,
        dQ: UnsafeMutableBufferPointer<T>, dK: UnsafeMutableBufferPointer<T>, dV: UnsafeMutableBufferPointer<T>
    ) {
        let d = g.headDim, qWidth = g.heads * d, kvWidth = g.kvHeads * d
        parallelFor(g.rows * g.kvHeads) { tasks in
            for task in tasks {
                let row = task / g.kvHeads, kvh = task % g.kvHeads
                for h in (kvh * g.groupSize)..<((kvh + 1) * g.groupSize) {
                    for i in 0..<g.columns {
                        let n = row * g.columns + i
                        let qOff = n * qWidth + h * d
                        let keys = visibleKeys(row: row, query: i, geometry: g, sequenceIds: sequenceIds)
                        if keys.isEmpty { continue }
                        let lse = logSumExp[n * g.heads + h]
                        var rowDot: T = 0
                        for c in 0..<d { rowDot += dOut[qOff + c] * out[qOff + c] }
                        for j in keys {
                            let kvOff = (row * g.columns + j) * kvWidth + kvh * d
                            var s: T = 0, dp: T = 0
                            for c in 0..<d {
                                s += q[qOff + c] * k[kvOff + c]
                                dp += dOut[qOff + c] * v[kvOff + c]
                            }
                            var score = s * scale, capSlope: T = 1
                            if let cap = g.softcap {
                                score = LogitSoftcap.apply(score, cap: T(cap))
                                capSlope = LogitSoftcap.derivative(capped: score, cap: T(cap))
                            }
                            let p = T.exp(score - lse)
                            let ds = p * (dp - rowDot) * capSlope * scale
                            for c in 0..<d {
                                dQ[qOff + c] += ds * k[kvOff + c]
                                dK[kvOff + c] += ds * q[qOff + c]
                                dV[kvOff + c] += p * dOut[qOff + c]
                            }
                        }
                    }
                }
            }
        }
    }
}

extension AttentionLayout {
    var geometry: AttentionKernel.Geometry {
        .init(rows: rows, columns: columns, heads: heads, kvHeads: kvHeads, headDim: headDim,
              slidingWindow: slidingWindow, softcap: softcap)
    }
}

extension CPUBackend {
    public func attention(_ q: Tensor, _ k: Tensor, _ v: Tensor, layout: AttentionLayout,
                          into out: Tensor, logSumExp: Tensor) {
        AttentionKernel.forward(q: UnsafeBufferPointer(q.floats), k: UnsafeBufferPointer(k.floats),
                                v: UnsafeBufferPointer(v.floats),
                                sequenceIds: UnsafeBufferPointer(layout.sequenceIds.ints),
                                geometry: layout.geometry, scale: layout.scale,
                                out: out.floats, logSumExp: logSumExp.floats)
    }

    /// Overwrites dQ, dK and dV.
    public func attentionBackward(dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor,
                                  logSumExp: Tensor, layout: AttentionLayout,
                                  dQ: Tensor, dK: Tensor, dV: Tensor) {
        for t in [dQ, dK, dV] { t.floats.update(repeating: 0) }
        AttentionKernel.backward(dOut: UnsafeBufferPointer(dOut.floats), q: UnsafeBufferPointer(q.floats),
                                 k: UnsafeBufferPointer(k.floats), v: UnsafeBufferPointer(v.floats),
                                 out: UnsafeBufferPointer(out.floats),
                                 logSumExp: UnsafeBufferPointer(logSumExp.floats),
                                 sequenceIds: UnsafeBufferPointer(layout.sequenceIds.ints),
                                 geometry: layout.geometry, scale: layout.scale,
                                 dQ: dQ.floats, dK: dK.floats, dV: dV.floats)
    }
}
