extension LlamaModel {
    /// One generation step, shared by prefill (all prompt tokens) and decode (one token per row):
    /// runs the layers for `tokens` ([rows·queries], row-major, left-padded), appending their keys
    /// and values to `cache`, and returns the logits [rows, vocab] of each row's last new token
    /// (the next token's distribution). `valid` flags real tokens (false: padding); `positions`
    /// are the tokens' RoPE positions (their index among the row's real tokens).
    public func decodeStep(tokens: [Int32], positions: [Int32], valid: [Bool], cache: KVCache) throws -> [Float] {
        let rows = cache.rows, queries = tokens.count / Swift.max(rows, 1)
        precondition(tokens.count == rows * queries && positions.count == tokens.count && valid.count == tokens.count)
        guard cache.length + queries <= cache.capacity else {
            throw GenerationError.cacheFull(capacity: cache.capacity)
        }
        for (n, id) in tokens.enumerated() where id < 0 || Int(id) >= config.vocabSize {
            throw ModelError.tokenOutOfRange(id: Int(id), index: n, vocabSize: config.vocabSize)
        }
        if crossesLongRoPEContext(cache: cache, queries: queries) {
            return try refill(cache, tokens: tokens, positions: positions, valid: valid)
        }
        for r in 0..<rows {
            for i in 0..<queries {
                let column = r * cache.capacity + cache.length + i
                cache.keyValid[column] = valid[r * queries + i] ? 1 : 0
                cache.tokenIds[column] = tokens[r * queries + i]
                cache.tokenPositions[column] = positions[r * queries + i]
            }
        }
        // Keys are cached already rotated, so the table covers the whole cache; its frequencies
        // follow the longest position so far, as transformers' dynamic RoPE (and longrope outside
        // Phi-3) does during generate: each forward picks them by max(position_ids) + 1 and the
        // cached keys keep theirs. The table is made again only when they change.
        let longest = Int(positions.max() ?? 0) + 1
        let frequencies = RoPEFrequencies.inverse(config, sequenceLength: longest)
            + (config.localRope.map { RoPEFrequencies.inverse(config, rope: $0, sequenceLength: longest) } ?? [])
        if cache.rope?.frequencies != frequencies {
            func table(_ rope: RoPEScaling) throws -> RoPETable {
                try RoPEFrequencies.table(config, rope: rope, positions: cache.capacity, sequenceLength: longest, on: backend)
            }
            cache.rope = (frequencies, try table(config.rope), try config.localRope.map(table))
        }
        let keyValid = try backend.upload(cache.keyValid, [rows * cache.capacity])
        func layout(window: Int?) -> CachedAttentionLayout {
            CachedAttentionLayout(rows: rows, queries: queries, start: cache.length, capacity: cache.capacity,
                                  heads: config.heads, kvHeads: config.kvHeads, headDim: config.headDim,
                                  keyValid: keyValid, slidingWindow: window, scale: config.attentionScale,
                                  softcap: config.attentionSoftcap)
        }
        // Gemma's global layers see the whole cache, its sliding layers their window.
        let global = layout(window: config.slidingLayers == nil ? config.slidingWindow : nil)
        let sliding = layout(window: config.slidingWindow)
        // The training layout is unused by the cached layer; it only fills StepContext.
        let unused = AttentionLayout(rows: rows, columns: queries, heads: config.heads, kvHeads: config.kvHeads,
                                     headDim: config.headDim, sequenceIds: keyValid, slidingWindow: nil)
        let step = StepContext(config: config, positions: try backend.upload(positions, [tokens.count]),
                               rope: cache.rope!.table, layout: unused, layerSeed: nil, slidingRope: cache.rope!.sliding)
        var h = try embed(ids: try backend.upload(tokens, [tokens.count]))
        for (i, layer) in layers.enumerated() {
            h = try layer.forwardCached(h, step.forLayer(i), keys: cache.keys[i], values: cache.values[i], cache: cache,
                                        layout: config.isSliding(layer: i) ? sliding : global)
        }
        cache.length += queries

        // Only each row's last token reaches the head.
        let last = try backend.empty([rows, config.hiddenSize], backend.computeType)
        for r in 0..<rows {
            let n = r * queries + queries - 1
            backend.copy(h.rows(n..<(n + 1)), into: last.rows(r..<(r + 1)))
        }
        return try outputLogits(last)
    }

    /// Phi-3 with longrope: transformers' Phi3ForCausalLM.prepare_inputs_for_generation drops the
    /// cache at the first step whose columns (padding included) run past
    /// original_max_position_embeddings while the cache holds no more than that, so the whole
    /// sequence is run again with the long factors instead of mixing keys rotated with the short
    /// ones. Other families keep the cache (their keys stay as rotated).
    func crossesLongRoPEContext(cache: KVCache, queries: Int) -> Bool {
        guard config.modelType == .phi3, case let .longrope(longrope) = config.rope.kind else { return false }
        let original = longrope.originalMaxPositions
        return cache.length > 0 && cache.length <= original && cache.length + queries > original
    }

    /// Empties `cache` and runs every column it held plus the new tokens as one prefill.
    private func refill(_ cache: KVCache, tokens: [Int32], positions: [Int32], valid: [Bool]) throws -> [Float] {
        let rows = cache.rows, queries = tokens.count / Swift.max(rows, 1), held = cache.length
        var allTokens: [Int32] = [], allPositions: [Int32] = [], allValid: [Bool] = []
        for r in 0..<rows {
            let start = r * cache.capacity
            allTokens += cache.tokenIds[start..<(start + held)] + tokens[(r * queries)..<((r + 1) * queries)]
            allPositions += cache.tokenPositions[start..<(start + held)] + positions[(r * queries)..<((r + 1) * queries)]
            allValid += cache.keyValid[start..<(start + held)].map { $0 != 0 } + valid[(r * queries)..<((r + 1) * queries)]
        }
        cache.truncate(to: 0)
        return try decodeStep(tokens: allTokens, positions: allPositions, valid: allValid, cache: cache)
    }
}
