import Foundation
import XCTest
@testable import Swiftlet

/// The CPU engine against PyTorch + transformers + PEFT on the same weights (fixtures made by
/// scripts/make_fixtures.py): loss, logits, every LoRA gradient, one AdamW step, and three SGD
/// steps continuing from a PEFT-made adapter.
final class ModelFixtureTests: XCTestCase {
    static let fixtures = ["llama_gqa", "llama_packed", "mistral_window", "qwen2_bias", "llama32_tied", "qwen3_qknorm",
                           "phi3_fused", "phi3_longrope", "phi3_longrope_short", "gemma2_softcap", "gemma3_text"]

    struct Fixture {
        var directory: URL
        var model: LlamaModel
        var lora: LoRAConfig
        var batch: Batch
        var expected: [String: Any]
        var tensors: SafetensorsFile

        init(_ name: String) throws {
            directory = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
                .appendingPathComponent(name)
            model = try LlamaModel.load(directory: directory, on: CPUBackend())
            lora = try PEFTAdapter.load(directory: directory.appendingPathComponent("adapter"), into: model)
            batch = try Fixture.batch(directory.appendingPathComponent("batch.json"))
            expected = try XCTUnwrap(JSONSerialization.jsonObject(
                with: Data(contentsOf: directory.appendingPathComponent("expected.json"))) as? [String: Any])
            tensors = try SafetensorsFile(url: directory.appendingPathComponent("expected.safetensors"))
        }

        static func batch(_ url: URL) throws -> Batch { try Batch(huggingFaceFile: url) }

        func expectedTensor(_ name: String) throws -> [Float] { try tensors.floats(name) }
        var loss: Double { expected["loss"] as! Double }
    }

    func testLossLogitsAndGradientsMatchPyTorch() throws {
        for name in Self.fixtures {
            let f = try Fixture(name)
            let n = f.batch.targetCount
            XCTAssertEqual(n, f.expected["num_target_tokens"] as? Int, name)

            // logits, at tokens that are not padding
            let logits = try f.model.logits(f.batch)
            let expected = try f.expectedTensor("logits")
            let vocab = f.model.config.vocabSize
            var mine: [Float] = [], theirs: [Float] = []
            for token in 0..<f.batch.tokenCount where f.batch.sequenceIds[token] >= 0 {
                mine += logits[(token * vocab)..<((token + 1) * vocab)]
                theirs += expected[(token * vocab)..<((token + 1) * vocab)]
            }
            XCTAssertLessThan(relativeError(mine, theirs), 1e-5, "\(name) logits")

            // loss and LoRA gradients
            let lossSum = try f.model.step(f.batch, gradScale: 1 / Float(n))
            let loss = lossSum / Double(n)
            XCTAssertEqual(loss, f.loss, accuracy: 1e-5 * abs(f.loss), "\(name) loss")
            for adapter in f.model.adapters {
                for (tensor, peftName) in [(adapter.gradA, adapter.peftNameA), (adapter.gradB, adapter.peftNameB)] {
                    let error = relativeError(f.model.backend.download(tensor), try f.expectedTensor("grad." + peftName))
                    XCTAssertLessThan(error, 1e-4, "\(name) gradient of \(peftName)")
                }
            }

            // one AdamW step from these gradients
            let hyper = try XCTUnwrap(f.expected["adamw"] as? [String: Any])
            var arguments = TrainingArguments()
            arguments.optimizer = .adamw
            arguments.maxGradNorm = 0
            arguments.weightDecay = (hyper["weight_decay"] as! NSNumber).floatValue
            arguments.adamEpsilon = (hyper["eps"] as! NSNumber).floatValue
            let optimizer = try LoRAOptimizer(adapters: f.model.adapters, arguments: arguments)
            optimizer.step(lr: (hyper["lr"] as! NSNumber).floatValue)
            for adapter in f.model.adapters {
                for (tensor, peftName) in [(adapter.a, adapter.peftNameA), (adapter.b, adapter.peftNameB)] {
                    let error = relativeError(f.model.backend.download(tensor), try f.expectedTensor("adamw." + peftName))
                    XCTAssertLessThan(error, 1e-5, "\(name) AdamW step of \(peftName)")
                }
            }
        }
    }

    func testSGDContinuingFromPEFTAdapterMatchesPyTorch() throws {
        for name in Self.fixtures {
            let f = try Fixture(name)
            let sgd = try XCTUnwrap(f.expected["sgd"] as? [String: Any])
            let steps = (sgd["steps"] as! NSNumber).intValue
            var arguments = TrainingArguments()
            arguments.optimizer = .sgd
            arguments.maxGradNorm = 0
            let optimizer = try LoRAOptimizer(adapters: f.model.adapters, arguments: arguments)
            for _ in 0..<steps {
                optimizer.zeroGradients()
                _ = try f.model.step(f.batch, gradScale: 1 / Float(f.batch.targetCount))
                optimizer.step(lr: (sgd["lr"] as! NSNumber).floatValue)
            }
            for adapter in f.model.adapters {
                for (tensor, peftName) in [(adapter.a, adapter.peftNameA), (adapter.b, adapter.peftNameB)] {
                    let error = relativeError(f.model.backend.download(tensor), try f.expectedTensor("sgd." + peftName))
                    XCTAssertLessThan(error, 1e-4, "\(name) SGD of \(peftName)")
                }
            }
        }
    }
}
