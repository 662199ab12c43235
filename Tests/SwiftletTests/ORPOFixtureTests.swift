import Foundation
import XCTest
@testable import Swiftlet

/// ORPO on the CPU against TRL 1.16's own ORPOTrainer.get_batch_loss_metrics in torch + PEFT (fixture
/// made by scripts/make_orpo_fixtures.py on the llama_gqa model and adapter): loss, metrics and LoRA
/// gradients for two betas, on pairs that include one whose rejected prompt differs in its last token.
final class ORPOFixtureTests: XCTestCase {
    func testLossMetricsAndGradientsMatchTRL() throws {
        let f = try PreferenceFixture("orpo")
        XCTAssertNotNil(f.pairs[1].rejectedPromptIds, "the fixture covers prompts that differ between the sides")
        let batch = ORPOObjective.batch(f.pairs)
        let variants = try XCTUnwrap(f.expected["variants"] as? [String: [String: Any]])
        XCTAssertEqual(Set(variants.keys), ["beta0.1", "beta1"])
        for (name, v) in variants.sorted(by: { $0.key < $1.key }) {
            let loss = ORPOLoss(beta: (v["beta"] as! NSNumber).doubleValue)
            f.model.backend.zero(f.model.adapters.flatMap { [$0.gradA, $0.gradB] })
            let result = try ORPOStep.run(model: f.model, batch: batch, loss: loss)
            let expectedLoss = (v["loss"] as! NSNumber).doubleValue
            XCTAssertEqual(result.loss, expectedLoss, accuracy: 1e-5 * max(1, abs(expectedLoss)), "\(name) loss")
            // TRL also logs logits/chosen and logits/rejected (the mean logit over every position and the
            // vocabulary, padding included), which we do not compute.
            let metrics = (v["metrics"] as! [String: Double]).filter { !$0.key.hasPrefix("logits/") }
            XCTAssertEqual(Set(result.metrics.keys), Set(metrics.keys), "TRL's metric names")
            for (key, value) in metrics {
                XCTAssertEqual(result.metrics[key] ?? .nan, value, accuracy: 1e-5 * max(1, abs(value)), "\(name) \(key)")
            }
            for adapter in f.model.adapters {
                for (tensor, peftName) in [(adapter.gradA, adapter.peftNameA), (adapter.gradB, adapter.peftNameB)] {
                    let error = relativeError(f.model.backend.download(tensor),
                                              try f.tensors.floats("\(name).grad.\(peftName)"))
                    XCTAssertLessThan(error, 1e-4, "\(name) gradient of \(peftName)")
                }
            }
            // Evaluation computes the same loss and metrics without gradients.
            let evaluated = try ORPOStep.evaluate(model: f.model, batch: batch, loss: loss)
            XCTAssertEqual(evaluated.loss, result.loss, accuracy: 1e-12)
        }
    }

    /// The chosen prompt is a target of the NLL term only: the collated batch trains it on chosen rows,
    /// not on rejected rows, and the spans split each chosen row where the completion's targets start.
    func testCollationTargetsAndSpans() throws {
        let pair = PreferencePair(promptIds: [1, 5, 6], chosenIds: [7, 2], rejectedIds: [8, 9, 2], rejectedPromptIds: [1, 5, 4])
        let b = ORPOObjective.batch([pair])
        XCTAssertEqual(b.batch.columns, 6)
        XCTAssertEqual(Array(b.batch.targets[0..<6]), [5, 6, 7, 2, -100, -100])
        XCTAssertEqual(Array(b.batch.tokens[6..<12]), [1, 5, 4, 8, 9, 2])
        XCTAssertEqual(Array(b.batch.targets[6..<12]), [-100, -100, 8, 9, 2, -100])
        XCTAssertEqual(b.completionCounts, [2, 3])
        XCTAssertEqual(ORPOStep.spans(b), [0..<2, 2..<6, 6..<12])
    }

    /// The loss's derivatives by each summed log-prob against central differences in Double.
    func testLossGradientMatchesFiniteDifferences() {
        let loss = ORPOLoss(beta: 0.7)
        let chosen = [-3.0, -9.5], rejected = [-2.0, -14.0], counts = [3, 5], rCounts = [2, 7]
        let sequence = -20.0, targets = 11
        let r = loss.evaluate(chosenSequence: sequence, chosenTargets: targets, chosen: chosen, chosenCounts: counts,
                              rejected: rejected, rejectedCounts: rCounts)
        let h = 1e-6
        func value(_ s: Double, _ c: [Double], _ rj: [Double]) -> Double {
            loss.evaluate(chosenSequence: s, chosenTargets: targets, chosen: c, chosenCounts: counts, rejected: rj,
                          rejectedCounts: rCounts).loss
        }
        XCTAssertEqual(r.sequenceGradient, (value(sequence + h, chosen, rejected) - value(sequence - h, chosen, rejected)) / (2 * h),
                       accuracy: 1e-7)
        for i in 0..<2 {
            var up = chosen, down = chosen
            up[i] += h; down[i] -= h
            XCTAssertEqual(r.chosenGradient[i], (value(sequence, up, rejected) - value(sequence, down, rejected)) / (2 * h), accuracy: 1e-7)
            up = rejected; down = rejected
            up[i] += h; down[i] -= h
            XCTAssertEqual(r.rejectedGradient[i], (value(sequence, chosen, up) - value(sequence, chosen, down)) / (2 * h), accuracy: 1e-7)
        }
        XCTAssertEqual(r.metrics["nll_loss"]!, 20.0 / 11, accuracy: 1e-12)
    }

    /// Recomputing layers in the backward (gradient checkpointing) gives the same ORPO gradients.
    func testGradientCheckpointingKeepsTheGradients() throws {
        let f = try PreferenceFixture("orpo")
        let batch = ORPOObjective.batch(f.pairs)
        let grads: (GradientCheckpointing) throws -> [Float] = { mode in
            f.model.gradientCheckpointing = mode
            f.model.backend.zero(f.model.adapters.flatMap { [$0.gradA, $0.gradB] })
            _ = try ORPOStep.run(model: f.model, batch: batch, loss: ORPOLoss(beta: 0.1))
            return f.model.adapters.flatMap { f.model.backend.download($0.gradA) + f.model.backend.download($0.gradB) }
        }
        XCTAssertLessThan(relativeError(try grads(.on), try grads(.off)), 1e-6)
    }

    /// The doctor's DPO/ORPO GPU check, run with the CPU in the GPU's place: it passes, with equal numbers.
    func testDoctorPreferenceCheckRunsOnTheFixtures() throws {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        var lines: [String] = []
        XCTAssertTrue(try CUDAPreferenceSelfTest.run(fixtures: root, gpu: CPUBackend()) { lines.append($0) })
        XCTAssertEqual(lines.count, 2)
        XCTAssertTrue(lines.allSatisfy { $0.contains("PASS") && $0.contains("worst cosine 1.000000") }, "\(lines)")
    }
}
