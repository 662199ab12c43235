import ArgumentParser
import Foundation
import Swiftlet

/// Timed training steps (or, with --generate, generations) on random weights of a named shape,
/// printing one `RESULT {json}` line with the keys of the baseline script (hf_peft.py;
/// bench/generate_baseline.py for --generate), so the two can be compared side by side.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time LoRA training steps, or generation (--generate), on random weights of a model shape (GPU benchmark).")

    @Option(help: "Model shape: \(LlamaConfig.presetNames.joined(separator: ", ")).") var arch = "tinyllama"
    @Option(help: "Rows per step (default 2; 1 with --generate).") var batchSize: Int?
    @Option(help: "Tokens per row (default 2048; with --generate the prompt's tokens, default 512).") var seq: Int?
    @Option(help: "Timed steps (after 2 warm-up steps); with --generate, timed generations (after 1 warm-up).") var steps = 10
    @Option(help: "LoRA rank (alpha = r, all seven projections).") var r = 16
    @Option(help: "Gradient checkpointing: off, on (keep each layer's input, recompute the layer in the backward) or offload (as on, with the inputs in host memory).")
    var gradientCheckpointing: GradientCheckpointing = .off
    @Flag(name: .customLong("load-in-4bit"), help: "QLoRA: 4-bit NF4 base weights (double quantization), dequantized for each GEMM.") var loadIn4bit = false
    @Option(help: "cpu, cuda or auto.") var device: Device = .auto
    @Option(help: "GPU storage: auto (bf16 where supported, else fp16), bf16 or fp16.") var precision: Precision = .auto
    @Flag(help: "After timing, run one more step with every op timed by device events and print the per-op table.")
    var profile = false
    @Flag(help: "Time greedy generation instead (no LoRA): prefill of --seq prompt tokens, then --new-tokens decode steps with the KV cache.")
    var generate = false
    @Option(help: "With --generate: tokens generated per prompt.") var newTokens = 128

    func run() throws {
        let backend = try device.makeBackend(precision: precision) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        if generate { return try runGeneration(on: backend) }
        let batchSize = self.batchSize ?? 2, seq = self.seq ?? 2048
        let config = try LlamaConfig.preset(arch)
        let model = try LlamaModel.random(config: config, seed: 0, on: backend)
        if loadIn4bit { try model.quantizeLinearsToNF4() }
        try model.addLoRA(LoRAConfig(r: r, alpha: Float(r)), seed: 0)
        model.gradientCheckpointing = gradientCheckpointing
        var arguments = TrainingArguments()
        arguments.learningRate = 2e-4
        arguments.maxGradNorm = 0
        arguments.scheduler = .constant
        let optimizer = try LoRAOptimizer(adapters: model.adapters, arguments: arguments)
        var generator = SplitMix64(seed: 1)
        func batch() -> Batch {
            let examples = (0..<batchSize).map { _ in
                Example(inputIds: (0..<seq).map { _ in Int32(generator.next() % UInt64(config.vocabSize)) })
            }
            return Batch(examples: examples)
        }
        backend.memory.resetPeak()
        var times: [Double] = []
        var loss = 0.0
        for _ in 0..<(steps + 2) {
            let b = batch()
            backend.synchronize()
            let start = Date()
            optimizer.zeroGradients()
            loss = try model.step(b, gradScale: 1 / Float(b.targetCount)) / Double(b.targetCount)
            optimizer.step(lr: Float(arguments.learningRate))
            backend.synchronize()
            times.append(Date().timeIntervalSince(start))
        }
        let timed = times.dropFirst(2).sorted()
        let median = timed[timed.count / 2]
        let result: [String: Any] = [
            "system": "swiftlet-\(backend.name)", "arch": arch, "bsz": batchSize, "seq": seq,
            "gc": model.gradientCheckpointing.recomputes ? 1 : 0, "offload": model.gradientCheckpointing == .offload ? 1 : 0,
            "fourbit": model.isQuantized4bit ? 1 : 0, "attn": "swiftlet", "r": r,
            "step_s": (median * 1e4).rounded() / 1e4,
            "tok_s": (Double(batchSize * seq) / median * 10).rounded() / 10,
            "peak_gib": (Double(backend.memory.peak) / Double(1 << 30) * 100).rounded() / 100,
            "loss": (loss * 1e4).rounded() / 1e4,
        ]
        let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
        print("RESULT " + String(decoding: json, as: UTF8.self))
        if profile, let cuda = backend as? CUDABackend {
            cuda.startProfiling()
            let b = batch()
            optimizer.zeroGradients()
            _ = try model.step(b, gradScale: 1 / Float(b.targetCount))
            optimizer.step(lr: Float(arguments.learningRate))
            print("per-op device time of one step (\(arch), \(batchSize)×\(seq)), each op synchronised:")
            print(cuda.profileReport())
        }
    }
}
