import Foundation

/// The mixture-of-experts ops (Backend.moe*): the router's softmax and top-k with its backward,
/// the load-balancing statistics, and the permutation that puts each expert's tokens in one
/// contiguous block of rows (counting sort by expert, gather, weighted combine back and its
/// backward). Plain loops over host memory: the reference the CUDA kernels are checked against.
enum ExpertRouting {
    /// Softmax of each row of `logits` [T, E] in f32, its `k` largest entries in descending order (the
    /// lower expert first on ties), their probabilities divided by their sum when `normalize`.
    static func route(logits: UnsafeBufferPointer<Float>, tokens: Int, experts: Int, topK: Int, normalize: Bool,
                      probabilities: UnsafeMutableBufferPointer<Float>, chosen: UnsafeMutableBufferPointer<Int32>,
                      weights: UnsafeMutableBufferPointer<Float>) {
        for t in 0..<tokens {
            let row = t * experts
            var m = -Float.infinity
            for e in 0..<experts { m = max(m, logits[row + e]) }
            var sum: Float = 0
            for e in 0..<experts { sum += exp(logits[row + e] - m) }
            for e in 0..<experts { probabilities[row + e] = exp(logits[row + e] - m) / sum }
            var total: Float = 0
            for j in 0..<topK {
                var best = -1
                for e in 0..<experts where !(0..<j).contains(where: { chosen[t * topK + $0] == Int32(e) }) {
                    if best < 0 || probabilities[row + e] > probabilities[row + best] { best = e }
                }
                chosen[t * topK + j] = Int32(best)
                weights[t * topK + j] = probabilities[row + best]
                total += probabilities[row + best]
            }
            if normalize { for j in 0..<topK { weights[t * topK + j] /= total } }
        }
    }

    /// dL/dlogits from dL/dweights, through the renormalisation (w_j = p_j / Σp) and the softmax;
    /// `auxGradient[e]` is added to dL/dp[t, e] of every token with sequenceIds[t] ≥ 0 (the
    /// load-balancing loss, which sees all probabilities, not only the chosen ones).
    static func routeBackward(dWeights: UnsafeBufferPointer<Float>, probabilities: UnsafeBufferPointer<Float>,
                              chosen: UnsafeBufferPointer<Int32>, tokens: Int, experts: Int, topK: Int, normalize: Bool,
                              auxGradient: UnsafeBufferPointer<Float>?, sequenceIds: UnsafeBufferPointer<Int32>?,
                              dLogits: UnsafeMutableBufferPointer<Float>) {
        var dP = [Float](repeating: 0, count: experts)
        for t in 0..<tokens {
            let row = t * experts
            for e in 0..<experts { dP[e] = 0 }
            if let auxGradient, sequenceIds.map({ $0[t] >= 0 }) ?? true {
                for e in 0..<experts { dP[e] = auxGradient[e] }
            }
            var total: Float = 0, weighted: Float = 0
            for j in 0..<topK { total += probabilities[row + Int(chosen[t * topK + j])] }
            for j in 0..<topK {
                weighted += dWeights[t * topK + j] * probabilities[row + Int(chosen[t * topK + j])] / total
            }
            for j in 0..<topK {
                let e = Int(chosen[t * topK + j])
                dP[e] += normalize ? (dWeights[t * topK + j] - weighted) / total : dWeights[t * topK + j]
            }
            var dot: Float = 0
            for e in 0..<experts { dot += probabilities[row + e] * dP[e] }
            for e in 0..<experts { dLogits[row + e] = probabilities[row + e] * (dP[e] - dot) }
        }
    }

    /// statistics[0, e] = how many top-k choices went to expert e, statistics[1, e] = Σ p[t, e],
    /// over the tokens with sequenceIds[t] ≥ 0 (transformers' load_balancing_loss_func with the
    /// attention mask), summed in token order.
    static func statistics(probabilities: UnsafeBufferPointer<Float>, chosen: UnsafeBufferPointer<Int32>,
                           sequenceIds: UnsafeBufferPointer<Int32>?, tokens: Int, experts: Int, topK: Int,
                           into out: UnsafeMutableBufferPointer<Float>) {
        for i in 0..<(2 * experts) { out[i] = 0 }
        for t in 0..<tokens where sequenceIds.map({ $0[t] >= 0 }) ?? true {
            for j in 0..<topK { out[Int(chosen[t * topK + j])] += 1 }
            for e in 0..<experts { out[experts + e] += probabilities[t * experts + e] }
        }
    }

    /// A stable counting sort of the assignments (t, j) by expert: counts[e], and rows[t·k + j],
    /// the assignment's row in the sorted order (experts ascending, tokens in order within one).
    static func sort(chosen: UnsafeBufferPointer<Int32>, experts: Int, counts: UnsafeMutableBufferPointer<Int32>,
                     rows: UnsafeMutableBufferPointer<Int32>) {
        for e in 0..<experts { counts[e] = 0 }
        for a in chosen { counts[Int(a)] += 1 }
        var next = [Int32](repeating: 0, count: experts)
        for e in 1..<max(experts, 1) { next[e] = next[e - 1] + counts[e - 1] }
        for a in 0..<chosen.count {
            let e = Int(chosen[a])
            rows[a] = next[e]
            next[e] += 1
        }
    }
}

extension CPUBackend {
    public func moeRoute(logits: Tensor, topK: Int, normalize: Bool, probabilities: Tensor, experts: Tensor, weights: Tensor) {
        ExpertRouting.route(logits: UnsafeBufferPointer(logits.floats), tokens: logits.shape[0], experts: logits.shape[1],
                            topK: topK, normalize: normalize, probabilities: probabilities.floats, chosen: experts.ints,
                            weights: weights.floats)
    }

    public func moeRouteBackward(dWeights: Tensor, probabilities: Tensor, experts: Tensor, normalize: Bool,
                                 auxGradient: Tensor?, sequenceIds: Tensor?, into dLogits: Tensor) {
        ExpertRouting.routeBackward(dWeights: UnsafeBufferPointer(dWeights.floats),
                                    probabilities: UnsafeBufferPointer(probabilities.floats),
                                    chosen: UnsafeBufferPointer(experts.ints), tokens: probabilities.shape[0],
                                    experts: probabilities.shape[1], topK: experts.shape[1], normalize: normalize,
                                    auxGradient: auxGradient.map { UnsafeBufferPointer($0.floats) },
                                    sequenceIds: sequenceIds.map { UnsafeBufferPointer($0.ints) }, dLogits: dLogits.floats)
    }

    public func moeRouterStatistics(probabilities: Tensor, experts: Tensor, sequenceIds: Tensor?, into statistics: Tensor) {
        ExpertRouting.statistics(probabilities: UnsafeBufferPointer(probabilities.floats), chosen: UnsafeBufferPointer(experts.ints),
                                 sequenceIds: sequenceIds.map { UnsafeBufferPointer($0.ints) }, tokens: probabilities.shape[0],
                                 experts: probabilities.shape[1], topK: experts.shape[1], into: statistics.floats)
    }

    public func moeSort(experts: Tensor, expertCount: Int, counts: Tensor, rows: Tensor) {
        ExpertRouting.sort(chosen: UnsafeBufferPointer(experts.ints), experts: expertCount, counts: counts.ints, rows: rows.ints)
    }

    public func moeGather(_ x: Tensor, rows: Tensor, into sorted: Tensor) {
        let width = x.shape[1], topK = rows.count / x.shape[0]
        let source = x.floats, destination = sorted.floats, index = rows.ints
        for a in 0..<rows.count {
            let from = (a / topK) * width, to = Int(index[a]) * width
            for h in 0..<width { destination[to + h] = source[from + h] }
        }
    }

    public func moeCombine(_ sorted: Tensor, rows: Tensor, weights: Tensor?, into out: Tensor) {
        let width = out.shape[1], tokens = out.shape[0], topK = rows.count / tokens
        let source = sorted.floats, destination = out.floats, index = rows.ints
        let w = weights?.floats
        parallelFor(tokens, grain: 16) { range in
            var order = [Int](repeating: 0, count: topK)
            for t in range {
                // Expert order (ascending rows), as transformers adds the experts' outputs.
                for j in 0..<topK { order[j] = j }
                order.sort { index[t * topK + $0] < index[t * topK + $1] }
                for h in 0..<width { destination[t * width + h] = 0 }
                for j in order {
                    let from = Int(index[t * topK + j]) * width, scale = w?[t * topK + j] ?? 1
                    for h in 0..<width { destination[t * width + h] += scale * source[from + h] }
                }
            }
        }
    }

    public func moeCombineBackward(dOut: Tensor, sorted: Tensor, rows: Tensor, weights: Tensor, dSorted: Tensor, dWeights: Tensor) {
        let width = dOut.shape[1], tokens = dOut.shape[0], topK = rows.count / tokens
        let d = dOut.floats, y = sorted.floats, index = rows.ints, w = weights.floats
        let dY = dSorted.floats, dW = dWeights.floats
        parallelFor(tokens, grain: 16) { range in
            for t in range {
                for j in 0..<topK {
                    let a = t * topK + j, row = Int(index[a]) * width
                    var dot: Double = 0
                    for h in 0..<width {
                        dY[row + h] = w[a] * d[t * width + h]
                        dot += Double(d[t * width + h]) * Double(y[row + h])
                    }
                    dW[a] = Float(dot)
                }
            }
        }
    }
}
