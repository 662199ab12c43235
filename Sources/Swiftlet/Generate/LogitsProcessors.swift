import Foundation

/// transformers' logits processors on one row of logits, each as its class defines it
/// (min_tokens_to_keep = 1). `choose` applies them in generate's order — repetition penalty,
/// then the warpers temperature, top-k, top-p, min-p — and picks the token.
/// Removed tokens become −∞, as transformers' filter_value.
public enum LogitsProcessors {
    /// RepetitionPenaltyLogitsProcessor: every token seen (prompt and output, each once) has its
    /// logit divided by the penalty when positive, multiplied when negative.
    public static func repetitionPenalty(_ logits: inout [Float], seen: [Int32], penalty: Float) {
        guard penalty != 1 else { return }
        for id in Set(seen) where id >= 0 && Int(id) < logits.count {
            let x = logits[Int(id)]
            logits[Int(id)] = x < 0 ? x * penalty : x / penalty
        }
    }

    /// TemperatureLogitsWarper.
    public static func temperature(_ logits: inout [Float], _ t: Float) {
        guard t != 1 else { return }
        for i in logits.indices { logits[i] /= t }
    }

    /// TopKLogitsWarper: drops every logit below the k-th largest (ties with it stay).
    public static func topK(_ logits: inout [Float], _ k: Int) {
        guard k > 0, k < logits.count else { return }
        let threshold = logits.sorted(by: >)[k - 1]
        for i in logits.indices where logits[i] < threshold { logits[i] = -.infinity }
    }

    /// TopPLogitsWarper: sorts ascending (stable), and drops the tokens whose cumulative
    /// probability from the bottom is ≤ 1 − p, keeping at least the most likely one.
    public static func topP(_ logits: inout [Float], _ p: Float) {
        guard p < 1 else { return }
        let order = logits.indices.sorted { logits[$0] < logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        let probabilities = softmax(order.map { logits[$0] })
        var cumulative: Float = 0
        for (rank, index) in order.enumerated() where rank < order.count - 1 {
            cumulative += probabilities[rank]
            if cumulative <= 1 - p { logits[index] = -.infinity }
        }
    }

    /// MinPLogitsWarper: drops tokens whose probability is below minP × the top probability,
    /// keeping the most likely token.
    public static func minP(_ logits: inout [Float], _ minP: Float) {
        guard minP > 0 else { return }
        let probabilities = softmax(logits)
        let threshold = minP * (probabilities.max() ?? 0)
        let best = argmax(logits)
        for i in logits.indices where probabilities[i] < threshold && i != best { logits[i] = -.infinity }
    }

    /// softmax in Float32 with the max subtracted, as torch computes it.
    public static func softmax(_ x: [Float]) -> [Float] {
        let m = x.max() ?? 0
        guard m.isFinite else { return x.map { _ in 1 / Float(x.count) } }
        let e = x.map { expf($0 - m) }
        let total = e.reduce(0, +)
        return e.map { $0 / total }
    }

    /// The first index of the largest value (torch.argmax's choice on ties).
    public static func argmax(_ x: [Float]) -> Int {
        var best = 0
        for i in x.indices where x[i] > x[best] { best = i }
        return best
    }

    /// The next token: repetition penalty, then greedy argmax or the warpers and a draw from
    /// the softmax with `random`.
    public static func choose(_ logits: [Float], seen: [Int32], options o: SamplingOptions,
                              random: inout SplitMix64) -> Int32 {
        var x = logits
        repetitionPenalty(&x, seen: seen, penalty: o.repetitionPenalty)
        if o.isGreedy { return Int32(argmax(x)) }
        temperature(&x, o.temperature)
        topK(&x, o.topK)
        topP(&x, o.topP)
        minP(&x, o.minP)
        return Int32(sample(softmax(x), random: &random))
    }

    /// Inverse-CDF draw: the first index whose cumulative probability exceeds u ∈ [0, 1).
    public static func sample(_ probabilities: [Float], random: inout SplitMix64) -> Int {
        let u = Double(random.next() >> 11) / Double(1 << 53)
        var cumulative = 0.0
        var last = 0
        for (i, p) in probabilities.enumerated() where p > 0 {
            cumulative += Double(p)
            last = i
            if u < cumulative { return i }
        }
        return last  // rounding left the total just under 1
    }
}
