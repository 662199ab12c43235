#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The learning-rate schedules of `transformers.get_scheduler` (`SchedulerType` names).
public enum LRScheduler: String, CaseIterable, Codable, Sendable {
    case constant
    case constantWithWarmup = "constant_with_warmup"
    case linear
    case cosine
}

/// A `transformers` schedule: `torch.optim.lr_scheduler.LambdaLR` with the lambdas of
/// `transformers.optimization` (`lr = base_lr * lambda(step)`), computed in Double as Python does.
///
/// `step` is the 0-based optimizer-step index: the HF Trainer calls `optimizer.step()` and then
/// `lr_scheduler.step()`, so the first update uses `lr(atStep: 0)` — which is 0 when
/// `warmupSteps > 0`. Steps past `totalSteps` follow the same formulas (linear stays at 0; the
/// cosine is not clamped in progress, exactly like transformers).
public struct LRSchedule: Sendable, Equatable {
    public var kind: LRScheduler
    public var baseLR: Double
    public var warmupSteps: Int
    public var totalSteps: Int

    public init(kind: LRScheduler, baseLR: Double, warmupSteps: Int, totalSteps: Int) {
        self.kind = kind; self.baseLR = baseLR; self.warmupSteps = warmupSteps; self.totalSteps = totalSteps
    }

    /// The LambdaLR multiplier at 0-based optimizer step `step`.
    public func multiplier(atStep step: Int) -> Double {
        let warmup = warmupSteps, total = totalSteps
        switch kind {
        case .constant:
            return 1
        case .constantWithWarmup:
            if step < warmup { return Double(step) / Double(max(1, warmup)) }
            return 1
        case .linear:
            if step < warmup { return Double(step) / Double(max(1, warmup)) }
            return max(0, Double(total - step) / Double(max(1, total - warmup)))
        case .cosine:
            if step < warmup { return Double(step) / Double(max(1, warmup)) }
            let progress = Double(step - warmup) / Double(max(1, total - warmup))
            let numCycles = 0.5
            return max(0, 0.5 * (1 + cos(Double.pi * numCycles * 2 * progress)))
        }
    }

    /// The learning rate the optimizer uses at 0-based optimizer step `step`
    /// (`scheduler.get_last_lr()` before the `step`-th `scheduler.step()`).
    public func lr(atStep step: Int) -> Float {
        Float(baseLR * multiplier(atStep: step))
    }

    /// `TrainingArguments.get_warmup_steps` for a fractional warmup (`warmup_ratio`, or
    /// `warmup_steps < 1` in transformers 5): `math.ceil(num_training_steps * ratio)`, in Double —
    /// so e.g. ratio 0.07 of 100 steps is ceil(7.000000000000001) = 8, as in HF.
    public static func warmupSteps(ratio: Double, totalSteps: Int) -> Int {
        Int((Double(totalSteps) * ratio).rounded(.up))
    }
}
