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
        var random = SplitMix64(seed: options.seed)

        var tokens: [Int32] = [], positions: [Int32] = [], valid: [Bool] = []
        for p in prompts {
            let pad = width - p.count
            tokens += [Int32](repeating: p[0], count: pad) + p  // any id in the vocabulary: masked
            positions += [Int32](repeating: 0, count: pad) + (0..<p.count).map(Int32.init)
            valid += [Bool](repeating: false, count: pad) + [Bool](repeating: true, count: p.count)
        }
        var clock = Date()
        var logits = try model.decodeStep(tokens: tokens, positions: positions, valid: valid, cache: cache)
        result.prefillTokens = prompts.map(\.count).reduce(0, +)
        result.prefillSeconds = Date().timeIntervalSince(clock)
        clock = Date()

        let vocab = model.config.vocabSize
        var finished = [Bool](repeating: false, count: rows)
        var lengths = prompts.map(\.count)
        for step in 0..<maxNewTokens {
            var next = [Int32](repeating: 0, count: rows)
            for r in 0..<rows where !finished[r] {
                let row = Array(logits[(r * vocab)..<((r + 1) * vocab)])
                let token = LogitsProcessors.choose(row, seen: prompts[r] + result.tokens[r], options: options,
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
        result.decodeSeconds = Date().timeIntervalSince(clock)
        return result
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
