import Foundation
import XCTest
@testable import Swiftlet

/// DPO on the CPU against TRL 1.16's collation and loss in torch + PEFT (fixture made by
/// scripts/make_dpo_fixtures.py on the llama_gqa model and adapter): the collated batch, the
/// reference log-probs (adapters off), each loss type's loss, metrics and LoRA gradients.
final class DPOFixtureTests: XCTestCase {
    func testCollationMatchesTRL() throws {
        let f = try PreferenceFixture("dpo")
        let b = f.batch
        let ids = try XCTUnwrap(f.expected["input_ids"] as? [[Int]])
        let mask = try XCTUnwrap(f.expected["attention_mask"] as? [[Int]])
        let completion = try XCTUnwrap(f.expected["completion_mask"] as? [[Int]])
        XCTAssertEqual(b.batch.rows, ids.count)
        XCTAssertEqual(b.batch.columns, ids[0].count)
        for r in ids.indices {
            for t in ids[r].indices where mask[r][t] == 1 {
                XCTAssertEqual(Int(b.batch.tokens[r * b.batch.columns + t]), ids[r][t], "row \(r) token \(t)")
            }
            for t in ids[r].indices {
                let target = b.batch.targets[r * b.batch.columns + t]
                let isTarget = t + 1 < ids[r].count && completion[r][t + 1] == 1
                XCTAssertEqual(target, isTarget ? Int32(ids[r][t + 1]) : Batch.ignoreIndex, "row \(r) target \(t)")
            }
            XCTAssertEqual(b.completionCounts[r], completion[r].reduce(0, +))
        }
    }

    func testReferenceLogProbsAreTheBaseModelWithoutAdapters() throws {
        let f = try PreferenceFixture("dpo")
        let expected = try XCTUnwrap(f.expected["ref_logps"] as? [Double])
        let ref = try DPOStep.referenceLogProbs(model: f.model, batch: f.batch)
        for (a, b) in zip(ref, expected) { XCTAssertEqual(a, b, accuracy: 1e-5 * max(1, abs(b))) }
        // The same numbers from a model that never had adapters; and the adapters are back afterwards.
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let bare = try LlamaModel.load(directory: root.appendingPathComponent("llama_gqa"), on: CPUBackend())
        XCTAssertEqual(try bare.rowLogProbs(f.batch.batch), ref)
        XCTAssertEqual(f.model.adapters.count, 14)
        XCTAssertNotEqual(try f.model.rowLogProbs(f.batch.batch), ref)
    }

    func testLossMetricsAndGradientsMatchTRL() throws {
        let f = try PreferenceFixture("dpo")
        let variants = try XCTUnwrap(f.expected["variants"] as? [String: [String: Any]])
        XCTAssertEqual(Set(variants.keys), ["sigmoid", "sigmoid_smoothed", "ipo", "hinge"])
        for (name, v) in variants.sorted(by: { $0.key < $1.key }) {
            let loss = DPOLoss(kind: try XCTUnwrap(DPOLoss.Kind(rawValue: v["loss_type"] as! String)),
                               beta: (v["beta"] as! NSNumber).doubleValue,
                               labelSmoothing: (v["label_smoothing"] as! NSNumber).doubleValue)
            f.model.backend.zero(f.model.adapters.flatMap { [$0.gradA, $0.gradB] })
            let result = try DPOStep.run(model: f.model, batch: f.batch, loss: loss)
            let expectedLoss = (v["loss"] as! NSNumber).doubleValue
            XCTAssertEqual(result.loss, expectedLoss, accuracy: 1e-5 * max(1, abs(expectedLoss)), "\(name) loss")
            for (a, b) in zip(result.policyLogProbs, v["logps"] as! [Double]) {
                XCTAssertEqual(a, b, accuracy: 1e-5 * max(1, abs(b)), "\(name) logps")
            }
            let metrics = v["metrics"] as! [String: Double]
            XCTAssertEqual(Set(result.metrics.keys), Set(metrics.keys))
            for (key, value) in metrics {
                XCTAssertEqual(result.metrics[key]!, value, accuracy: 1e-5 * max(1, abs(value)), "\(name) \(key)")
            }
            for adapter in f.model.adapters {
                for (tensor, peftName) in [(adapter.gradA, adapter.peftNameA), (adapter.gradB, adapter.peftNameB)] {
                    let error = relativeError(f.model.backend.download(tensor),
                                              try f.tensors.floats("\(name).grad.\(peftName)"))
                    XCTAssertLessThan(error, 1e-4, "\(name) gradient of \(peftName)")
                }
            }
        }
    }

    /// Recomputing layers in the backward (gradient checkpointing) gives the same DPO gradients.
    func testGradientCheckpointingKeepsTheGradients() throws {
        let f = try PreferenceFixture("dpo")
        let loss = DPOLoss(kind: .sigmoid, beta: 0.1)
        let grads: (GradientCheckpointing) throws -> [Float] = { mode in
            f.model.gradientCheckpointing = mode
            f.model.backend.zero(f.model.adapters.flatMap { [$0.gradA, $0.gradB] })
            _ = try DPOStep.run(model: f.model, batch: f.batch, loss: loss)
            return f.model.adapters.flatMap { f.model.backend.download($0.gradA) + f.model.backend.download($0.gradB) }
        }
        XCTAssertLessThan(relativeError(try grads(.on), try grads(.off)), 1e-6)
    }

    /// A few AdamW steps on the fixture's pairs: the DPO loss falls and the chosen rewards overtake.
    func testLossFallsUnderAdamW() throws {
        let f = try PreferenceFixture("dpo")
        var arguments = TrainingArguments()
        arguments.optimizer = .adamw
        let optimizer = try LoRAOptimizer(adapters: f.model.adapters, arguments: arguments)
        let loss = DPOLoss(kind: .sigmoid, beta: 0.1)
        let reference = try DPOStep.referenceLogProbs(model: f.model, batch: f.batch)
        var first: DPOStep.Result?, last: DPOStep.Result?
        for _ in 0..<30 {
            optimizer.zeroGradients()
            let r = try DPOStep.run(model: f.model, batch: f.batch, loss: loss, reference: reference)
            if first == nil { first = r }
            last = r
            optimizer.step(lr: 1e-2)
        }
        let start = try XCTUnwrap(first), end = try XCTUnwrap(last)
        XCTAssertLessThan(end.loss, start.loss * 0.5)
        XCTAssertEqual(end.metrics["rewards/accuracies"], 1)
        XCTAssertGreaterThan(end.metrics["rewards/margins"]!, start.metrics["rewards/margins"]!)
    }
}

private extension PreferenceFixture {
    /// The pairs collated as TRL's DPO collator does, at the fixture's max_length.
    var batch: PreferenceBatch { PreferenceBatch(pairs: pairs, maxLength: expected["max_length"] as? Int) }
}
