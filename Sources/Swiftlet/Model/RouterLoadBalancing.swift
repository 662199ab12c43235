/// transformers' `load_balancing_loss_func` (Switch Transformer's auxiliary loss), from each
/// mixture layer's statistics (Backend.moeRouterStatistics: top-k counts C and probability sums P per
/// expert over the unpadded tokens). transformers sums both over the layers before normalising:
///
///     aux = E · Σ_e (C_e / N) · (P_e / N),   N = layers · unpadded tokens
///
/// The counts come from top-k (no gradient), so dAux/dp[layer, t, e] = E · C_e / N² for every
/// unpadded token of every layer: one vector, which the backward adds to dL/dp.
enum RouterLoadBalancing {
    /// (aux, dAux/dp per expert). `statistics`: one [2 · experts] array per layer.
    static func loss(statistics: [[Float]], experts: Int, tokens: Int) -> (aux: Double, gradient: [Double]) {
        let n = Double(statistics.count * tokens)
        guard n > 0 else { return (0, [Double](repeating: 0, count: experts)) }
        var counts = [Double](repeating: 0, count: experts), mass = counts
        for layer in statistics {
            for e in 0..<experts {
                counts[e] += Double(layer[e])
                mass[e] += Double(layer[experts + e])
            }
        }
        let e = Double(experts)
        let aux = e * zip(counts, mass).reduce(0) { $0 + ($1.0 / n) * ($1.1 / n) }
        return (aux, counts.map { e * $0 / (n * n) })
    }
}
