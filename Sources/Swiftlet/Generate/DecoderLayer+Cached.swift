extension DecoderLayer {
    /// The forward of `forward(_:_:)` for generation: the new tokens' keys and values join the
    /// cache of this layer, and the queries attend to the whole cache. No activations are kept
    /// and LoRA runs unmerged, as in training (dropout off).
    func forwardCached(_ h: Tensor, _ step: StepContext, keys: Tensor, values: Tensor, cache: KVCache,
                       layout: CachedAttentionLayout) throws -> Tensor {
        let backend = h.backend, tokens = h.shape[0], config = step.config
        let rstd1 = try backend.empty([tokens], .f32)
        let n1 = try backend.empty(h.shape, backend.computeType)
        backend.rmsNorm(h, weight: inputNorm, eps: config.rmsNormEps, into: n1, rstd: rstd1)
        let qOut = try q.forward(n1, dropoutSeed: nil).0
        let kOut = try k.forward(n1, dropoutSeed: nil).0
        let vOut = try v.forward(n1, dropoutSeed: nil).0
        backend.rope(qOut, positions: step.positions, table: step.rope, heads: config.heads, inverse: false)
        backend.rope(kOut, positions: step.positions, table: step.rope, heads: config.kvHeads, inverse: false)
        cache.store(kOut, into: keys, queries: layout.queries)
        cache.store(vOut, into: values, queries: layout.queries)
        let attention = try backend.empty([tokens, config.qWidth], backend.computeType)
        backend.cachedAttention(qOut, keys: keys, values: values, layout: layout, into: attention)
        let h2 = try o.forward(attention, dropoutSeed: nil).0
        backend.add(h, into: h2, alpha: 1)

        let rstd2 = try backend.empty([tokens], .f32)
        let n2 = try backend.empty(h.shape, backend.computeType)
        backend.rmsNorm(h2, weight: postAttentionNorm, eps: config.rmsNormEps, into: n2, rstd: rstd2)
        let g = try gate.forward(n2, dropoutSeed: nil).0
        let u = try up.forward(n2, dropoutSeed: nil).0
        let m = try backend.empty(g.shape, backend.computeType)
        backend.swiglu(gate: g, up: u, into: m)
        let d = try down.forward(m, dropoutSeed: nil).0
        backend.add(h2, into: d, alpha: 1)
        return d
    }
}
