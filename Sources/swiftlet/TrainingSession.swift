import ArgumentParser
import Foundation
import Swiftlet

/// What `train` and `dpo` do once their trainer is built: resume, the loop with the progress display,
/// metrics.jsonl (each logged step carries the means over the steps since the last log, as the HF
/// Trainer and TRL log), evaluation every --eval-steps and at the end, Ctrl-C (save a checkpoint,
/// exit 130), then the PEFT adapter, the summary line of metrics.jsonl and loss.svg.
struct TrainingSession {
    var options: TrainingOptions
    var trainer: Trainer
    var model: LlamaModel
    var lora: LoRAConfig
    /// The base model's folder (recorded in the adapter and the checkpoints).
    var baseModel: String
    /// The command, for the loss curve's title.
    var command: String
    /// Evaluates, logs into the metrics, and returns the line to show; nil without eval data.
    var evaluate: (_ metrics: MetricsLog, _ step: Int, _ epoch: Double) throws -> String?

    /// Runs to the end (or to Ctrl-C, which throws ExitCode(130) after saving); returns the history.
    func run() throws -> [Trainer.StepLog] {
        let outputURL = URL(fileURLWithPath: options.output)
        trainer.checkpointDirectory = outputURL
        trainer.loraConfig = lora
        trainer.baseModel = baseModel
        var checkpoint = options.resumeFrom.map { URL(fileURLWithPath: $0) }
        if options.resume {
            guard let latest = TrainingCheckpoint.latest(in: outputURL) else {
                throw CheckpointError.noCheckpoint(directory: outputURL.path)
            }
            checkpoint = latest
        }
        if let checkpoint {
            // Every rank reads the checkpoint (rank 0's adapters are broadcast again before the first step).
            try trainer.resume(from: checkpoint)
            if trainer.writesOutputs {
                print("resumed from \(checkpoint.path) at step \(trainer.globalStep)/\(trainer.arguments.maxSteps)")
            }
        }
        if !trainer.writesOutputs { return try runWithoutOutputs() }
        let metricsURL = outputURL.appendingPathComponent("metrics.jsonl")
        if checkpoint == nil { try? FileManager.default.removeItem(at: metricsURL) }  // a fresh run starts a fresh log
        let metrics = try MetricsLog(url: metricsURL)
        let progress = ProgressDisplay(total: trainer.arguments.maxSteps, every: options.loggingSteps)
        trainer.onCheckpoint = { progress.message("checkpoint saved: \($0.path)") }
        func runEvaluation(step: Int, epoch: Double) throws {
            if let line = try evaluate(metrics, step, epoch) { progress.message(line) }
        }
        let started = Date()
        TrainingInterrupt.install()
        defer { TrainingInterrupt.uninstall() }
        let backend = model.backend
        var seenTokens = trainer.logHistory.reduce(0) { $0 + $1.tokens }
        var window: [Trainer.StepLog] = []
        let finished = try trainer.train(stopWhen: { TrainingInterrupt.requested }) { log in
            seenTokens += log.tokens
            window.append(log)
            let memory = backend is CUDABackend ? backend.memory.peak : nil
            progress.update(log, memoryBytes: memory)
            if log.step % options.loggingSteps == 0 || log.step == log.maxSteps {
                var logged = log
                logged.loss = window.map(\.loss).reduce(0, +) / Double(window.count)
                logged.metrics = log.metrics.map { last in
                    Dictionary(uniqueKeysWithValues: last.keys.map { key in
                        (key, window.map { $0.metrics?[key] ?? 0 }.reduce(0, +) / Double(window.count))
                    })
                }
                logged.gradientSumSeconds = log.gradientSumSeconds.map { _ in
                    window.map { $0.gradientSumSeconds ?? 0 }.reduce(0, +) / Double(window.count)
                }
                window.removeAll()
                try metrics.log(logged, numTokens: seenTokens, memoryBytes: memory)
            }
            if options.evalSteps > 0, log.step % options.evalSteps == 0, log.step < log.maxSteps {
                try runEvaluation(step: log.step, epoch: log.epoch)
            }
        }
        progress.finish()
        if !finished {
            let saved = try trainer.saveCheckpoint(to: outputURL)
            print("interrupted: checkpoint saved to \(saved.path); continue with --resume")
            throw ExitCode(130)
        }
        try PEFTAdapter.save(model, config: lora, to: outputURL, baseModel: baseModel)
        try runEvaluation(step: trainer.globalStep, epoch: trainer.logHistory.last?.epoch ?? 0)
        let history = trainer.logHistory
        try metrics.logSummary(runtime: Date().timeIntervalSince(started), steps: history.count,
                               tokens: history.reduce(0) { $0 + $1.tokens }, step: trainer.globalStep)
        let curve = LossCurve.series(from: try MetricsLog.read(url: metricsURL))
        try LossCurve.write(to: outputURL.appendingPathComponent("loss.svg"), train: curve.train, eval: curve.eval,
                            title: "\(command): \(URL(fileURLWithPath: baseModel).lastPathComponent)")
        return history
    }

    /// A data-parallel rank other than 0: the same steps (it computes its share of each), no
    /// progress, metrics, evaluation, checkpoints or adapter, which rank 0 writes.
    private func runWithoutOutputs() throws -> [Trainer.StepLog] {
        TrainingInterrupt.install()
        defer { TrainingInterrupt.uninstall() }
        let finished = try trainer.train(stopWhen: { TrainingInterrupt.requested })
        if !finished { throw ExitCode(130) }
        return trainer.logHistory
    }
}
