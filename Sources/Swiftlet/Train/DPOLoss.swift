import Foundation

/// TRL's DPO losses on per-sequence completion log-probs, with their derivative by each
/// sequence's log-prob computed in Double on the host (the model's backward takes it from there).
public struct DPOLoss: Equatable, Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        /// −(1−ε)·logσ(βΔ) − ε·logσ(−βΔ): conservative DPO; TRL 1.16's "sigmoid" is the ε = 0 case
        /// (it no longer reads label_smoothing there).
        case sigmoid
        /// (Δ/len − 1/(2β))², with each log-ratio divided by its completion length, as TRL does.
        case ipo
        /// relu(1 − βΔ)
        case hinge
    }

    public var kind: Kind
    public var beta: Double
    public var labelSmoothing: Double

    public init(kind: Kind = .sigmoid, beta: Double = 0.1, labelSmoothing: Double = 0) {
        self.kind = kind; self.beta = beta; self.labelSmoothing = labelSmoothing
    }

    public struct Result: Equatable, Sendable {
        /// Mean over pairs.
        public var loss: Double
        /// dLoss/dlogp of each row ([chosen…, rejected…]).
        public var gradient: [Double]
        /// TRL's names: rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins,
        /// logps/chosen, logps/rejected (means over pairs).
        public var metrics: [String: Double]
    }

    /// `policy` and `reference`: Σ log p of each row's completion, chosen rows then rejected rows.
    public func evaluate(policy: [Double], reference: [Double], completionCounts: [Int]) -> Result {
        precondition(policy.count == reference.count && policy.count == completionCounts.count && policy.count % 2 == 0)
        let n = policy.count / 2
        var loss = 0.0
        var gradient = [Double](repeating: 0, count: 2 * n)
        var metrics = ["rewards/chosen": 0.0, "rewards/rejected": 0, "rewards/accuracies": 0, "rewards/margins": 0,
                       "logps/chosen": 0, "logps/rejected": 0]
        for i in 0..<n {
            let chosen = policy[i] - reference[i], rejected = policy[n + i] - reference[n + i]
            let delta = chosen - rejected
            var dChosen = 0.0, dRejected = 0.0
            switch kind {
            case .sigmoid:
                let eps = labelSmoothing, x = beta * delta
                loss += -(1 - eps) * Self.logSigmoid(x) - eps * Self.logSigmoid(-x)
                let dDelta = beta * (-(1 - eps) * Self.sigmoid(-x) + eps * Self.sigmoid(x))
                dChosen = dDelta; dRejected = -dDelta
            case .hinge:
                let margin = 1 - beta * delta
                loss += Swift.max(margin, 0)
                let dDelta = margin > 0 ? -beta : 0
                dChosen = dDelta; dRejected = -dDelta
            case .ipo:
                let lc = Double(Swift.max(completionCounts[i], 1)), lr = Double(Swift.max(completionCounts[n + i], 1))
                let d = chosen / lc - rejected / lr - 1 / (2 * beta)
                loss += d * d
                dChosen = 2 * d / lc; dRejected = -2 * d / lr
            }
            gradient[i] = dChosen / Double(n); gradient[n + i] = dRejected / Double(n)
            let rc = beta * chosen, rr = beta * rejected
            metrics["rewards/chosen"]! += rc / Double(n)
            metrics["rewards/rejected"]! += rr / Double(n)
            metrics["rewards/accuracies"]! += (rc > rr ? 1 : 0) / Double(n)
            metrics["rewards/margins"]! += (rc - rr) / Double(n)
            metrics["logps/chosen"]! += policy[i] / Double(n)
            metrics["logps/rejected"]! += policy[n + i] / Double(n)
        }
        return Result(loss: loss / Double(Swift.max(n, 1)), gradient: gradient, metrics: metrics)
    }

    static func sigmoid(_ x: Double) -> Double { x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)) }
    static func logSigmoid(_ x: Double) -> Double { x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)) }
}
