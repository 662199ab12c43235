extension DecoderLayer {
    /// The layer's forward for generation: the new tokens' keys and values join this layer's
    /// cache and the queries attend to the whole cache. LoRA runs unmerged, as in training (no
    /// dropout); nothing is kept for a backward.
    func forwardCached(_ h: Tensor, _ step: StepContext, keys: Tensor, values: Tensor, cache: KVCache,
                       layout: CachedAttentionLayout) throws -> Tensor {
        try forward(h, step) { q, k, v in
            let backend = h.backend
            cache.store(k, into: keys, queries: layout.queries)
            cache.store(v, into: values, queries: layout.queries)
            let attention = try backend.empty([h.shape[0], step.config.qWidth], backend.computeType)
            backend.cachedAttention(q, keys: keys, values: values, layout: layout, into: attention)
            // No log-sum-exp: it only serves a backward, which generation never runs.
            return (attention, try backend.empty([0], .f32))
        }.0
    }
}
