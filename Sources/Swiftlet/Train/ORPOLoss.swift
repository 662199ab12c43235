import Foundation

/// TRL's ORPO loss (`ORPOTrainer.odds_ratio_loss` and `get_batch_loss_metrics`), with its derivatives
/// by each summed log-prob computed in Double on the host:
///
///     loss = nll − β · mean_i logσ(log_odds_i)
///     log_odds = (c − r) − (log(1 − eᶜ) − log(1 − eʳ))
///
/// where c and r are the chosen and rejected completions' log-probs averaged per token
/// (`average_log_prob=True`), and nll is the cross-entropy averaged over every target token of the
/// chosen sequences — prompt included ("orpo chosen nll loss is computed over the full prompt and response").
public struct ORPOLoss: Equatable, Sendable {
    /// λ of the paper, TRL's `beta` (ORPOConfig's default 0.1).
    public var beta: Double

    public init(beta: Double = 0.1) { self.beta = beta }

    public struct Result: Equatable, Sendable {
        public var loss: Double
        /// dLoss/d(Σ log p) of every chosen target token (the NLL term's share): −1/targets.
        public var sequenceGradient: Double
        /// dLoss/d(Σ log p over each chosen completion), the odds-ratio term's share (add `sequenceGradient`).
        public var chosenGradient: [Double]
        /// dLoss/d(Σ log p over each rejected completion).
        public var rejectedGradient: [Double]
        /// TRL's names, means over pairs: rewards/chosen, rewards/rejected, rewards/accuracies,
        /// rewards/margins, logps/chosen, logps/rejected, nll_loss, log_odds_ratio, log_odds_chosen.
        public var metrics: [String: Double]
    }

    /// `chosenSequence`: Σ log p over every target of the chosen rows (prompt and completion), over
    /// `chosenTargets` tokens. `chosen`/`rejected`: Σ log p over each completion, of `chosenCounts`/
    /// `rejectedCounts` tokens (each at least one).
    public func evaluate(chosenSequence: Double, chosenTargets: Int, chosen: [Double], chosenCounts: [Int],
                         rejected: [Double], rejectedCounts: [Int]) -> Result {
        let n = chosen.count
        precondition(rejected.count == n && chosenCounts.count == n && rejectedCounts.count == n)
        let nll = -chosenSequence / Double(Swift.max(chosenTargets, 1))
        var result = Result(loss: 0, sequenceGradient: -1 / Double(Swift.max(chosenTargets, 1)),
                            chosenGradient: [Double](repeating: 0, count: n),
                            rejectedGradient: [Double](repeating: 0, count: n), metrics: [:])
        var ratioSum = 0.0, oddsSum = 0.0, rewardChosen = 0.0, rewardRejected = 0.0, accuracy = 0.0
        var logpChosen = 0.0, logpRejected = 0.0
        for i in 0..<n {
            let c = chosen[i] / Double(chosenCounts[i]), r = rejected[i] / Double(rejectedCounts[i])
            let logOdds = (c - r) - (Self.log1mexp(c) - Self.log1mexp(r))
            ratioSum += DPOLoss.logSigmoid(logOdds)
            oddsSum += logOdds
            // d(−β·mean logσ(lo))/dlo, then dlo/dc = −1/expm1(c), dlo/dr = 1/expm1(r), then d(avg)/d(Σ) = 1/count.
            let dLogOdds = -beta * DPOLoss.sigmoid(-logOdds) / Double(n)
            result.chosenGradient[i] = dLogOdds * (-1 / expm1(c)) / Double(chosenCounts[i])
            result.rejectedGradient[i] = dLogOdds * (1 / expm1(r)) / Double(rejectedCounts[i])
            rewardChosen += beta * c; rewardRejected += beta * r
            accuracy += beta * c > beta * r ? 1 : 0
            logpChosen += c; logpRejected += r
        }
        let pairs = Double(Swift.max(n, 1))
        result.loss = nll - beta * ratioSum / pairs
        result.metrics = [
            "rewards/chosen": rewardChosen / pairs, "rewards/rejected": rewardRejected / pairs,
            "rewards/accuracies": accuracy / pairs, "rewards/margins": (rewardChosen - rewardRejected) / pairs,
            "logps/chosen": logpChosen / pairs, "logps/rejected": logpRejected / pairs,
            "nll_loss": nll, "log_odds_ratio": ratioSum / pairs, "log_odds_chosen": oddsSum / pairs,
        ]
        return result
    }

    /// log(1 − eˣ), branching at −ln 2 as TRL's `log1mexp` does to avoid cancellation.
    static func log1mexp(_ x: Double) -> Double {
        x < -0.6931471805599453 ? log1p(-exp(x)) : log(-expm1(x))
    }
}
