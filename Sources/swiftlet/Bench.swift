import ArgumentParser
import Foundation
import Swiftlet

/// Timed training steps (or, with --generate, generations) on random weights of a named shape,
/// printing one `RESULT {json}` line with the keys of the baseline script (hf_peft.py;
/// bench/dpo_baseline.py for `--objective dpo`; bench/generate_baseline.py for --generate), so the
/// two can be compared side by side.
struct Bench: ParsableCommand {
    /// What a timed step trains.
    enum Objective: String, ExpressibleByArgument {
        /// Next-token cross-entropy over every token.
        case sft
        /// DPO (sigmoid, beta 0.1) as `DPOStep` runs it: reference log-probs from a forward with the
        /// adapters off, then the policy's forward and backward over chosen and rejected rows at once.
        case dpo
    }

    /// One step's random input.
    enum StepInput {
        case rows(Batch)
        case pairs(PreferenceBatch)
    }

    static let configuration = CommandConfiguration(
        abstract: "Time LoRA training steps, or generation (--generate), on random weights of a model shape (GPU benchmark).")

    @Option(help: "Model shape: \(LlamaConfig.presetNames.joined(separator: ", ")).") var arch = "tinyllama"
    @Option(help: "sft (next-token loss) or dpo (reference forward with adapters off + policy forward/backward of chosen and rejected rows).")
    var objective: Objective = .sft
    @Option(help: "Rows per step (dpo: preference pairs per step, two rows each; default 2; 1 with --generate).") var batchSize: Int?
    @Option(help: "Tokens per row (default 2048; with --generate the prompt's tokens, default 512).") var seq: Int?
    @Option(help: "dpo: prompt tokens of each row (the rest is the completion); default half of --seq.") var promptLength: Int?
    @Option(help: "Timed steps (after the warm-up steps); with --generate, timed generations (after 1 warm-up).") var steps = 10
    @Option(help: "Untimed training steps first (kernel compiles, allocator growth); 0 for one long step that only measures memory.")
    var warmupSteps = 2
    @Option(help: "LoRA rank (alpha = r, all seven projections).") var r = 16
    @Option(help: "Gradient checkpointing: off, on (keep each layer's input, recompute the layer in the backward) or offload (as on, with the inputs in host memory).")
    var gradientCheckpointing: GradientCheckpointing = .off
    @Option(name: .customLong("checkpoint-budget-gib"), help: "With checkpointing: after the first warm-up step, the last layers skip the recompute as far as this much device memory allows.")
    var checkpointBudgetGiB: Double?
    @Flag(name: .customLong("load-in-4bit"), help: "QLoRA: 4-bit NF4 base weights (double quantization), dequantized for each GEMM.") var loadIn4bit = false
    @Option(help: "cpu, cuda or auto.") var device: Device = .auto
    @Option(help: "GPU storage: auto (bf16 where supported, else fp16), bf16 or fp16.") var precision: Precision = .auto
    @Flag(help: "After timing, run one more step with every op timed by device events and print the per-op table.")
    var profile = false
    @Flag(help: "Time greedy generation instead (no LoRA): prefill of --seq prompt tokens, then --new-tokens decode steps with the KV cache.")
    var generate = false
    @Option(help: "With --generate: tokens generated per prompt.") var newTokens = 128

    func validate() throws {
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1") }
        guard warmupSteps >= 0 else { throw ValidationError("--warmup-steps must not be negative") }
    }

    func run() throws {
        let backend = try device.makeBackend(precision: precision) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        if generate { return try runGeneration(on: backend) }
        let batchSize = self.batchSize ?? 2, seq = self.seq ?? 2048
        let config = try LlamaConfig.preset(arch)
        // 4-bit: each linear quantized as it is filled (a random Mixtral 8x7B never exists in 16-bit).
        let model = try LlamaModel.random(config: config, seed: 0, loadIn4bit: loadIn4bit, on: backend)
        try model.addLoRA(LoRAConfig(r: r, alpha: Float(r)), seed: 0)
        model.gradientCheckpointing = gradientCheckpointing
        var arguments = TrainingArguments()
        arguments.learningRate = 2e-4
        arguments.maxGradNorm = 0
        arguments.scheduler = .constant
        let optimizer = try LoRAOptimizer(adapters: model.adapters, arguments: arguments)
        var generator = SplitMix64(seed: 1)
        func ids(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(generator.next() % UInt64(config.vocabSize)) } }
        let prompt = min(max(promptLength ?? seq / 2, 0), seq - 1)
        func batch() -> Batch {
            Batch(examples: (0..<batchSize).map { _ in Example(inputIds: ids(seq)) })
        }
        func pairs() -> PreferenceBatch {
            PreferenceBatch(pairs: (0..<batchSize).map { _ in
                PreferencePair(promptIds: ids(prompt), chosenIds: ids(seq - prompt), rejectedIds: ids(seq - prompt))
            })
        }
        let dpoLoss = DPOLoss(kind: .sigmoid, beta: 0.1)
        // The step's random rows are made before its clock starts.
        func nextInput() -> StepInput { objective == .dpo ? .pairs(pairs()) : .rows(batch()) }
        /// One optimizer step of the objective; returns its loss.
        func trainingStep(_ input: StepInput) throws -> Double {
            optimizer.zeroGradients()
            let loss: Double
            switch input {
            case .rows(let b): loss = try model.step(b, gradScale: 1 / Float(b.targetCount)) / Double(b.targetCount)
            case .pairs(let b): loss = try DPOStep.run(model: model, batch: b, loss: dpoLoss).loss
            }
            backend.memory.phase = "optimizer"
            optimizer.step(lr: Float(arguments.learningRate))
            backend.memory.phase = ""
            return loss
        }
        let rowsPerStep = objective == .dpo ? 2 * batchSize : batchSize
        backend.memory.resetPeak()
        var times: [Double] = []
        var loss = 0.0
        for index in 0..<(steps + warmupSteps) {
            let input = nextInput()
            backend.synchronize()
            let start = Date()
            loss = try trainingStep(input)
            backend.synchronize()
            times.append(Date().timeIntervalSince(start))
            if index == 0, let budget = checkpointBudgetGiB {
                CheckpointPlanner.plan(model, budgetBytes: Int(budget * Double(1 << 30)), checkpointedPeakBytes: backend.memory.peak)
                backend.memory.resetPeak()
            }
        }
        let timed = times.dropFirst(warmupSteps).sorted()
        let median = timed[timed.count / 2]
        // model FLOPs utilisation against this GPU's measured GEMM rate (after the timing: no effect on it);
        // a DPO step is the policy's training step on its chosen and rejected rows plus the reference forward
        var flops = TrainingFLOPs(config: config, rows: rowsPerStep, rowLength: seq, rank: r,
                                  recompute: model.gradientCheckpointing.recomputes)
        if objective == .dpo {
            let reference = TrainingFLOPs(config: config, rows: rowsPerStep, rowLength: seq, rank: 0, recompute: false).forward
            flops.model += reference
            flops.withRecompute += reference
        }
        if model.gradientCheckpointing.recomputes {   // layers kept whole are not recomputed
            let layers = Double(config.layers)
            flops.withRecompute = flops.model + (flops.withRecompute - flops.model) * (layers - Double(model.layersKeptWhole)) / layers
        }
        // The peaks before the GEMM rate's 3 × 8192² operands, which the steps never hold.
        let (peak, requestedPeak, peakPhase) = (backend.memory.peak, backend.memory.requestedPeak, backend.memory.requestedPeakPhase)
        let resident = backend.memory.requestedCurrent
        let gemm = backend is CUDABackend ? try measuredGEMMRate(on: backend) : 0
        let utilisation = { (count: Double) in gemm > 0 ? (count / median / 1e12 / gemm * 1000).rounded() / 1000 : 0 }
        var result: [String: Any] = [
            "system": "swiftlet-\(backend.name)", "arch": arch, "bsz": batchSize, "seq": seq, "objective": objective.rawValue,
            "gc": model.gradientCheckpointing.recomputes ? 1 : 0, "offload": model.gradientCheckpointing == .offload ? 1 : 0,
            "fourbit": model.isQuantized4bit ? 1 : 0,
            "attn": (backend as? CUDABackend).map { $0.attentionKernels == .cudnn && $0.cudnnDescription != nil ? "cudnn" : $0.attentionKernels.rawValue } ?? "cpu", "r": r, "layers_kept_whole": model.layersKeptWhole,
            "step_s": (median * 1e4).rounded() / 1e4,
            // Tokens of the rows trained (dpo: chosen and rejected rows; its reference forward is extra work).
            "tok_s": (Double(rowsPerStep * seq) / median * 10).rounded() / 10,
            "peak_gib": (Double(peak) / Double(1 << 30) * 100).rounded() / 100,
            // as PyTorch's max_memory_allocated counts (each request rounded up to 512 bytes)
            "peak_requested_gib": (Double(requestedPeak) / Double(1 << 30) * 100).rounded() / 100,
            // where that peak was reached, and what stays between steps (weights, adapters, optimizer state)
            "peak_phase": peakPhase,
            "resident_requested_gib": (Double(resident) / Double(1 << 30) * 100).rounded() / 100,
            "loss": (loss * 1e4).rounded() / 1e4,
            "model_tflops_per_step": (flops.model / 1e10).rounded() / 100,
            "gemm_tflops": gemm.rounded(), "mfu": utilisation(flops.model), "hfu": utilisation(flops.withRecompute),
        ]
        if objective == .dpo { result["prompt"] = prompt }
        let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
        print("RESULT " + String(decoding: json, as: UTF8.self))
        if profile, let cuda = backend as? CUDABackend {
            cuda.startProfiling()
            _ = try trainingStep(nextInput())
            print("per-op device time of one \(objective.rawValue) step (\(arch), \(rowsPerStep)×\(seq)), each op synchronised:")
            print(cuda.profileReport())
        }
    }
}
