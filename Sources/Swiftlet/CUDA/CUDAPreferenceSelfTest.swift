import Foundation

/// A DPO step (sigmoid) and an ORPO step on the GPU against the CPU engine — which matches TRL 1.16 on
/// the same pairs (DPOFixtureTests, ORPOFixtureTests) — on the llama_gqa fixture with the pairs of the
/// dpo/ and orpo/ fixtures: the loss, and every LoRA gradient by cosine similarity and relative error.
/// The CPU twin gets the GPU's rounded base weights, as in `CUDAModelSelfTest`. The loss bound is looser
/// than the SFT step's: a preference loss depends on differences of log-probs, where bf16 rounding of the
/// activations weighs more (not yet calibrated on the H200; an indexing or formula bug shows as errors of order 1).
public enum CUDAPreferenceSelfTest {
    /// `gpu` is any backend so the tests can run this against the CPU itself.
    public static func run(fixtures: URL, gpu: any Backend, say: (String) -> Void) throws -> Bool {
        let base = fixtures.appendingPathComponent("llama_gqa")
        var passed = true
        for objective in ["dpo", "orpo"] {
            let pairsURL = fixtures.appendingPathComponent("\(objective)/pairs.json")
            guard FileManager.default.fileExists(atPath: pairsURL.path) else { continue }
            let pairs = try loadPairs(pairsURL)
            var results: [(loss: Double, gradients: [[Float]])] = []
            for backend in [CPUBackend(), gpu] as [any Backend] {
                let model = try LlamaModel.load(directory: base, on: backend)
                if let cpu = backend as? CPUBackend, gpu.computeType != .f32 {
                    CUDAModelSelfTest.roundWeights(model, on: cpu, to: gpu.computeType)
                }
                _ = try PEFTAdapter.load(directory: base.appendingPathComponent("adapter"), into: model)
                let loss = objective == "dpo"
                    ? try DPOStep.run(model: model, batch: PreferenceBatch(pairs: pairs), loss: DPOLoss(kind: .sigmoid, beta: 0.1)).loss
                    : try ORPOStep.run(model: model, batch: ORPOObjective.batch(pairs), loss: ORPOLoss(beta: 0.1)).loss
                results.append((loss, model.adapters.flatMap { [backend.download($0.gradA), backend.download($0.gradB)] }))
            }
            let (cpu, cuda) = (results[0], results[1])
            let lossError = abs(cuda.loss - cpu.loss) / max(abs(cpu.loss), 1e-12)
            let (worstCosine, worstRelative) = CUDAModelSelfTest.gradientAgreement(gpu: cuda.gradients, cpu: cpu.gradients)
            let ok = lossError < 5e-3 && worstCosine > 0.995 && worstRelative < 0.1
            passed = passed && ok
            say("  \(ok ? "PASS" : "FAIL")  \(objective.uppercased().padding(toLength: 16, withPad: " ", startingAt: 0)) loss cpu "
                + "\(String(format: "%.6f", cpu.loss)) gpu \(String(format: "%.6f", cuda.loss)) (rel \(fmt(lossError)) < 5e-3); "
                + "LoRA grads: worst cosine \(String(format: "%.6f", worstCosine)) (> 0.995), worst rel \(fmt(worstRelative)) (< 0.1)")
        }
        return passed
    }

    /// pairs.json of the dpo/ and orpo/ fixtures: prompt_ids, chosen_ids, rejected_ids (and rejected_prompt_ids).
    static func loadPairs(_ url: URL) throws -> [PreferencePair] {
        struct Row: Decodable {
            var prompt_ids: [Int32]; var chosen_ids: [Int32]; var rejected_ids: [Int32]; var rejected_prompt_ids: [Int32]?
        }
        return try JSONDecoder().decode([Row].self, from: Data(contentsOf: url)).map {
            PreferencePair(promptIds: $0.prompt_ids, chosenIds: $0.chosen_ids, rejectedIds: $0.rejected_ids,
                           rejectedPromptIds: $0.rejected_prompt_ids)
        }
    }
}
