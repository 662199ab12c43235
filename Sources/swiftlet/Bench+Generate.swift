import Foundation
import Swiftlet

/// `swiftlet bench --generate`: greedy generation on random weights, the side of
/// bench/generate_baseline.py (transformers' generate on the same shape). Every generation makes
/// exactly --new-tokens tokens (no EOS), as the baseline's min_new_tokens does.
extension Bench {
    func runGeneration(on backend: any Backend) throws {
        let rows = batchSize ?? 1, prompt = seq ?? 512
        let config = try LlamaConfig.preset(arch)
        // 4-bit: each linear quantized as it is filled (a random Mixtral 8x7B never exists in 16-bit).
        let model = try LlamaModel.random(config: config, seed: 0, loadIn4bit: loadIn4bit, on: backend)
        let generator = Generator(model: model, eosTokenIds: [])
        var random = SplitMix64(seed: 1)
        func prompts() -> [[Int32]] {
            (0..<rows).map { _ in (0..<prompt).map { _ in Int32(random.next() % UInt64(config.vocabSize)) } }
        }
        backend.memory.resetPeak()
        var prefill: [Double] = [], decode: [Double] = []
        for run in 0..<(steps + 1) {
            let result = try generator.generate(prompts: prompts(), maxNewTokens: newTokens)
            precondition(result.tokens.allSatisfy { $0.count == newTokens }, "a generation ended early")
            guard run > 0 else { continue }  // the first compiles kernels and plans
            prefill.append(result.prefillSeconds)
            decode.append(result.decodeSeconds)
        }
        func median(_ x: [Double]) -> Double { x.sorted()[x.count / 2] }
        // Decode steps run every token but the first (which the prefill's logits give).
        let prefillSeconds = median(prefill), decodeSeconds = median(decode)
        let result: [String: Any] = [
            "system": "swiftlet-\(backend.name)", "mode": "generate", "arch": arch, "bsz": rows, "prompt": prompt,
            "new": newTokens, "fourbit": model.isQuantized4bit ? 1 : 0,
            "prefill_s": (prefillSeconds * 1e4).rounded() / 1e4, "decode_s": (decodeSeconds * 1e4).rounded() / 1e4,
            "prefill_tok_s": (Double(rows * prompt) / prefillSeconds * 10).rounded() / 10,
            "decode_tok_s": (Double(rows * (newTokens - 1)) / decodeSeconds * 10).rounded() / 10,
            "peak_gib": (Double(backend.memory.peak) / Double(1 << 30) * 100).rounded() / 100,
            // as PyTorch's max_memory_allocated counts (each request rounded up to 512 bytes)
            "peak_requested_gib": (Double(backend.memory.requestedPeak) / Double(1 << 30) * 100).rounded() / 100,
        ]
        let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
        print("RESULT " + String(decoding: json, as: UTF8.self))
        if profile, let cuda = backend as? CUDABackend {
            cuda.startProfiling()
            _ = try generator.generate(prompts: prompts(), maxNewTokens: newTokens)
            print("per-op device time of one generation (\(arch), \(rows)×\(prompt) + \(newTokens)), each op synchronised:")
            print(cuda.profileReport())
        }
    }
}
