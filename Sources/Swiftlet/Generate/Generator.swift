import Foundation

/// Autoregressive generation with a KV cache: one prefill step over the (left-padded) prompts,
/// then one decode step per new token, each row stopping on an EOS id or its `shouldStop`.
///
/// Prompts are left-padded so every row's next token lands in the same cache column and the
/// prefill's last column is every row's last prompt token; padding is masked out of attention
/// and RoPE positions count real tokens only (transformers' position_ids from the attention mask).
public final class Generator {
    public let model: LlamaModel
    public var eosTokenIds: Set<Int32>

    public struct Result {
        /// Each row's new tokens, ending with the EOS id when it stopped on one.
        public var tokens: [[Int32]]
        public var prefillTokens = 0, decodeTokens = 0
        public var prefillSeconds = 0.0, decodeSeconds = 0.0
    }

    public init(model: LlamaModel, eosTokenIds: [Int32]) {
        self.model = model
        self.eosTokenIds = Set(eosTokenIds)
    }

    /// `onToken(row, token)` sees each token as it is chosen; `shouldStop(row, tokensSoFar)` ends
    /// a row early (stop strings).
    public func generate(prompts: [[Int32]], maxNewTokens: Int, options: SamplingOptions = SamplingOptions(),
                         onToken: ((Int, Int32) -> Void)? = nil,
                         shouldStop: ((Int, [Int32]) -> Bool)? = nil) throws -> Result {
        try options.validate()
        for (r, p) in prompts.enumerated() where p.isEmpty { throw GenerationError.emptyPrompt(row: r) }
        let rows = prompts.count, width = prompts.map(\.count).max() ?? 0
        var result = Result(tokens: Array(repeating: [], count: rows))
        guard rows > 0, maxNewTokens > 0 else { return result }
        let cache = try KVCache(model: model, rows: rows, capacity: width + maxNewTokens)

        var tokens: [Int32] = [], positions: [Int32] = [], valid: [Bool] = []
        for p in prompts {
            let pad = width - p.count
            tokens += [Int32](repeating: p[0], count: pad) + p  // any id in the vocabulary: masked
            positions += [Int32](repeating: 0, count: pad) + (0..<p.count).map(Int32.init)
            valid += [Bool](repeating: false, count: pad) + [Bool](repeating: true, count: p.count)
        }
        let clock = Date()
        let logits = try model.decodeStep(tokens: tokens, positions: positions, valid: valid, cache: cache)
        result.prefillTokens = prompts.map(\.count).reduce(0, +)
        result.prefillSeconds = Date().timeIntervalSince(clock)
        try decode(from: logits, cache: cache, seen: prompts, lengths: prompts.map(\.count), maxNewTokens: maxNewTokens,
                   options: options, onToken: onToken, shouldStop: shouldStop, into: &result)
        return result
    }

    /// One sequence continued on a cache that already holds `context` (rows 1, no padding, so a
    /// token's position is its column): `tokens` are prefilled after it, then up to `maxNewTokens`
    /// are generated (fewer where the cache fills). A chat turn reuses the conversation's cache
    /// this way. The last new token is not run, so afterwards the cache holds
    /// context + tokens + result.tokens[0].dropLast().
    public func generate(continuing cache: KVCache, context: [Int32], tokens: [Int32], maxNewTokens: Int,
                         options: SamplingOptions = SamplingOptions(), onToken: ((Int32) -> Void)? = nil,
                         shouldStop: (([Int32]) -> Bool)? = nil) throws -> Result {
        try options.validate()
        precondition(cache.rows == 1 && cache.length == context.count, "a one-row cache holding exactly `context`")
        guard !tokens.isEmpty else { throw GenerationError.emptyPrompt(row: 0) }
        var result = Result(tokens: [[]])
        let end = cache.length + tokens.count
        guard end <= cache.capacity else { throw GenerationError.cacheFull(capacity: cache.capacity) }
        let clock = Date()
        let logits = try model.decodeStep(tokens: tokens, positions: (cache.length..<end).map(Int32.init),
                                          valid: [Bool](repeating: true, count: tokens.count), cache: cache)
        result.prefillTokens = tokens.count
        result.prefillSeconds = Date().timeIntervalSince(clock)
        try decode(from: logits, cache: cache, seen: [context + tokens], lengths: [end],
                   maxNewTokens: Swift.min(maxNewTokens, cache.capacity - end + 1), options: options,
                   onToken: onToken.map { f in { _, token in f(token) } },
                   shouldStop: shouldStop.map { f in { _, tokens in f(tokens) } }, into: &result)
        return result
    }

    /// The decode loop after a prefill that gave `logits`: `seen` is each row's context (for the
    /// repetition penalty), `lengths` its real tokens so far (the next position + 1).
    private func decode(from prefillLogits: [Float], cache: KVCache, seen: [[Int32]], lengths: [Int],
                        maxNewTokens: Int, options: SamplingOptions, onToken: ((Int, Int32) -> Void)?,
                        shouldStop: ((Int, [Int32]) -> Bool)?, into result: inout Result) throws {
        let rows = seen.count, vocab = model.config.vocabSize
        var random = SplitMix64(seed: options.seed)
        var logits = prefillLogits, lengths = lengths
        var finished = [Bool](repeating: false, count: rows)
        let clock = Date()
        defer { result.decodeSeconds = Date().timeIntervalSince(clock) }
        for step in 0..<maxNewTokens {
            var next = [Int32](repeating: 0, count: rows)
            for r in 0..<rows where !finished[r] {
                let row = Array(logits[(r * vocab)..<((r + 1) * vocab)])
                let token = LogitsProcessors.choose(row, seen: seen[r] + result.tokens[r], options: options,
                                                    random: &random)
                next[r] = token
                result.tokens[r].append(token)
                onToken?(r, token)
                if eosTokenIds.contains(token) || shouldStop?(r, result.tokens[r]) == true { finished[r] = true }
            }
            if finished.allSatisfy({ $0 }) || step == maxNewTokens - 1 { break }
            // Finished rows still take a step (the batch moves together) with a masked token.
            let active = finished.map { !$0 }
            for r in 0..<rows where active[r] { lengths[r] += 1 }
            logits = try model.decodeStep(tokens: next.enumerated().map { finished[$0.offset] ? 0 : $0.element },
                                          positions: (0..<rows).map { Int32(lengths[$0] - 1) },
                                          valid: active, cache: cache)
            result.decodeTokens += active.filter { $0 }.count
        }
    }

    /// The EOS ids of a model folder: generation_config.json's eos_token_id (an id or a list),
    /// else config.json's.
    public static func eosTokenIds(modelDirectory: URL) -> [Int32] {
        for file in ["generation_config.json", "config.json"] {
            guard let data = try? Data(contentsOf: modelDirectory.appendingPathComponent(file)),
                  let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { continue }
            if let id = json["eos_token_id"] as? Int { return [Int32(id)] }
            if let ids = json["eos_token_id"] as? [Int], !ids.isEmpty { return ids.map(Int32.init) }
        }
        return []
    }
}
