import Foundation

/// Appends one JSON object per line to a `metrics.jsonl` file, with the key names of HF Trainer's
/// `log_history` / TRL where they exist:
///
/// - train step: `step`, `epoch`, `loss`, `grad_norm`, `learning_rate`, `num_tokens` (cumulative,
///   TRL's name), `tokens_per_second`, and when known `mean_token_accuracy`, the objective's metrics
///   (DPO: `rewards/chosen`, `rewards/rejected`, `rewards/accuracies`, `rewards/margins`, `logps/chosen`,
///   `logps/rejected`), `memory_gib`.
/// - DPO eval: `step`, `epoch`, `eval_loss`, and `eval_` + each DPO metric.
/// - eval: `step`, `epoch`, `eval_loss`, `eval_perplexity`, `eval_num_tokens`.
/// - summary: `step`, `train_runtime`, `train_loss` (mean step loss over the run, as HF's final
///   `train_loss`), `train_steps_per_second`, `train_tokens_per_second`.
///
/// Each entry is one `write(2)`, so a crash loses at most the line being written. Opening an
/// existing file (resume) continues it: running totals (`num_tokens`, the mean loss) are seeded
/// from its train entries, a later entry for the same step replacing an earlier one.
/// Non-finite numbers are written as `null` (JSON has no NaN).
public final class MetricsLog {
    public let url: URL
    private let handle: FileHandle
    /// Loss per step over the whole run (including entries from before a resume).
    private var lossByStep: [Int: Double] = [:]
    /// Cumulative tokens seen, when the caller does not pass `numTokens`.
    public private(set) var numTokens = 0
    public private(set) var lastStep = 0

    public init(url: URL) throws {
        self.url = url
        let fm = FileManager.default
        try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        var needsNewline = false
        if fm.fileExists(atPath: url.path) {
            let data = try Data(contentsOf: url)
            needsNewline = !data.isEmpty && data.last != UInt8(ascii: "\n")
            for entry in MetricsLog.parse(data) where entry["loss"] != nil {
                guard let step = (entry["step"] as? NSNumber)?.intValue else { continue }
                if let loss = (entry["loss"] as? NSNumber)?.doubleValue { lossByStep[step] = loss }
                if let n = (entry["num_tokens"] as? NSNumber)?.intValue { numTokens = n }
                lastStep = step
            }
        } else {
            guard fm.createFile(atPath: url.path, contents: nil) else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path])
            }
        }
        handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
        // A crash mid-line left a partial entry: end it so the next entry starts on its own line.
        if needsNewline { try handle.write(contentsOf: Data("\n".utf8)) }
    }

    deinit { try? handle.close() }

    /// Logs a training step. `numTokens` is the cumulative token count; when nil the log keeps
    /// its own running total of `step.tokens`.
    public func log(_ step: Trainer.StepLog, numTokens: Int? = nil, memoryBytes: Int? = nil,
                    meanTokenAccuracy: Double? = nil) throws {
        self.numTokens = numTokens ?? (self.numTokens + step.tokens)
        lossByStep[step.step] = step.loss
        lastStep = step.step
        var fields: [(String, JSONValue)] = [
            ("step", .int(step.step)),
            ("epoch", .double(step.epoch)),
            ("loss", .double(step.loss)),
            ("grad_norm", .double(step.gradNorm)),
            ("learning_rate", .double(Double(step.learningRate))),
            ("num_tokens", .int(self.numTokens)),
            ("tokens_per_second", .double(Double(step.tokens) / max(step.seconds, 1e-9))),
        ]
        if let meanTokenAccuracy { fields.append(("mean_token_accuracy", .double(meanTokenAccuracy))) }
        for (name, value) in (step.metrics ?? [:]).sorted(by: { $0.key < $1.key }) { fields.append((name, .double(value))) }
        if let memoryBytes { fields.append(("memory_gib", .double(Double(memoryBytes) / 1_073_741_824))) }
        if let seconds = step.gradientSumSeconds { fields.append(("allreduce_ms", .double(seconds * 1000))) }
        try write(fields)
    }

    public func logEval(step: Int, epoch: Double, _ e: Evaluation) throws {
        try write([
            ("step", .int(step)),
            ("epoch", .double(epoch)),
            ("eval_loss", .double(e.loss)),
            ("eval_perplexity", .double(e.perplexity)),
            ("eval_num_tokens", .int(e.tokens)),
        ])
    }

    /// A DPO or ORPO evaluation, with TRL's `eval_` names.
    public func logEval(step: Int, epoch: Double, _ e: PreferenceEvaluation) throws {
        try write([("step", .int(step)), ("epoch", .double(epoch)), ("eval_loss", .double(e.loss))]
            + e.metrics.sorted { $0.key < $1.key }.map { ("eval_" + $0.key, .double($0.value)) })
    }

    /// Mean step loss over every train step logged in this file (HF's final `train_loss`).
    public var meanLoss: Double? {
        let finite = lossByStep.values.filter { $0.isFinite }
        return finite.isEmpty ? nil : finite.reduce(0, +) / Double(finite.count)
    }

    /// Writes the final summary. `steps` and `tokens` are those done in `runtime` seconds (this
    /// process, for a resumed run); `step` defaults to the last logged step.
    public func logSummary(runtime: Double, steps: Int, tokens: Int, step: Int? = nil) throws {
        let seconds = max(runtime, 1e-9)
        try write([
            ("step", .int(step ?? lastStep)),
            ("train_runtime", .double(runtime)),
            ("train_loss", meanLoss.map { .double($0) } ?? .null),
            ("train_steps_per_second", .double(Double(steps) / seconds)),
            ("train_tokens_per_second", .double(Double(tokens) / seconds)),
        ])
    }

    /// Every parseable entry of a metrics file, in order (a partial last line is skipped).
    public static func read(url: URL) throws -> [[String: Any]] {
        parse(try Data(contentsOf: url))
    }

    static func parse(_ data: Data) -> [[String: Any]] {
        data.split(separator: UInt8(ascii: "\n")).compactMap {
            try? JSONSerialization.jsonObject(with: Data($0)) as? [String: Any]
        }
    }

    // MARK: - Writing

    enum JSONValue {
        case int(Int), double(Double), null

        var text: String {
            switch self {
            case .int(let i): return String(i)
            case .double(let d):
                guard d.isFinite else { return "null" }
                if d == d.rounded(), abs(d) < 1e15 { return String(format: "%.1f", d) }
                return "\(d)"  // shortest round-trip form, e.g. 0.0002 or 1e-05: valid JSON
            case .null: return "null"
            }
        }
    }

    private func write(_ fields: [(String, JSONValue)]) throws {
        let line = "{" + fields.map { "\"\($0.0)\": \($0.1.text)" }.joined(separator: ", ") + "}\n"
        try handle.write(contentsOf: Data(line.utf8))
    }
}
