import Foundation

/// Generation on the GPU against the CPU engine on the reference fixtures: a left-padded prefill of
/// two prompts and six decode steps with the KV cache, fed the same tokens on both backends (so a
/// near tie cannot send them down different paths), every step's logits compared. This runs the
/// cached attention kernels inside the real decode step: cache layout, padding mask, positions,
/// sliding window (mistral_window), GQA.
public enum CUDAGenerationSelfTest {
    public static func run(fixtures: URL, gpu: CUDABackend, say: (String) -> Void) throws -> Bool {
        let names = try FileManager.default.contentsOfDirectory(atPath: fixtures.path).sorted().filter {
            FileManager.default.fileExists(atPath: fixtures.appendingPathComponent("\($0)/adapter/adapter_config.json").path)
        }
        var passed = true
        for name in names {
            let directory = fixtures.appendingPathComponent(name)
            var steps: [[[Float]]] = []  // [backend][step] logits
            for backend in [CPUBackend(), gpu] as [any Backend] {
                let model = try LlamaModel.load(directory: directory, on: backend)
                if let cpu = backend as? CPUBackend { CUDAModelSelfTest.roundWeights(model, on: cpu, to: gpu.computeType) }
                try PEFTAdapter.load(directory: directory.appendingPathComponent("adapter"), into: model)
                steps.append(try teacherForced(model))
            }
            // Relative to the largest logit: bf16 activations through a few layers, as the
            // training check's bounds; an indexing bug gives errors of order 1.
            var worst = 0.0
            for (c, g) in zip(steps[0], steps[1]) {
                let e = ErrorMeasure.measure(gpu: g, cpu: c)
                worst = max(worst, e.nanCount > 0 ? .infinity : e.maxRelative)
            }
            let ok = worst < 3e-2
            passed = passed && ok
            say("  \(ok ? "PASS" : "FAIL")  \(name.padding(toLength: 16, withPad: " ", startingAt: 0)) prefill + 6 decode steps: worst max rel logit error \(fmt(worst)) (< 3e-2)")
        }
        return passed
    }

    /// Logits of the prefill (prompts of 5 and 9 tokens, left-padded) and of six decode steps.
    static func teacherForced(_ model: LlamaModel) throws -> [[Float]] {
        let prompts: [[Int32]] = [[5, 17, 99, 3, 42], [7, 8, 9, 10, 11, 12, 13, 14, 15]]
        let width = 9, decodeSteps = 6, vocab = model.config.vocabSize
        let cache = try KVCache(model: model, rows: 2, capacity: width + decodeSteps)
        var tokens: [Int32] = [], positions: [Int32] = [], valid: [Bool] = []
        for p in prompts {
            let pad = width - p.count
            tokens += [Int32](repeating: 1, count: pad) + p
            positions += [Int32](repeating: 0, count: pad) + (0..<p.count).map(Int32.init)
            valid += [Bool](repeating: false, count: pad) + [Bool](repeating: true, count: p.count)
        }
        var logits = [try model.decodeStep(tokens: tokens, positions: positions, valid: valid, cache: cache)]
        var lengths = prompts.map(\.count)
        for step in 0..<decodeSteps {
            let next = (0..<2).map { Int32((step * 31 + $0 * 7 + 3) % vocab) }
            lengths = lengths.map { $0 + 1 }
            logits.append(try model.decodeStep(tokens: next, positions: lengths.map { Int32($0 - 1) },
                                               valid: [true, true], cache: cache))
        }
        return logits
    }
}
