import Foundation
import XCTest
@testable import Swiftlet

/// 4-bit base weights: a bitsandbytes checkpoint saved by transformers (Fixtures/llama_gqa_nf4,
/// scripts/make_qlora_fixtures.py) loads bit-exact and gives transformers' loss; quantizing
/// while loading gives the same bytes as transformers + bitsandbytes; QLoRA training learns.
final class QLoRATests: XCTestCase {
    func fixture(_ name: String) throws -> URL {
        try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).appendingPathComponent(name)
    }

    func linears(_ model: LlamaModel) -> [(String, Linear)] {
        model.layers.indices.flatMap { i in
            LoRAConfig.Target.allCases.compactMap { t in
                model.layers[i][t].map { (LlamaModel.modulePath(layer: i, t) + ".weight", $0) }
            }
        }
    }

    func testPrequantizedCheckpointDequantizesLikeBitsandbytes() throws {
        let directory = try fixture("llama_gqa_nf4")
        let model = try LlamaModel.load(directory: directory, on: CPUBackend())
        XCTAssertTrue(model.isQuantized4bit)
        let expected = try SafetensorsFile(url: directory.appendingPathComponent("expected.safetensors"))
        let all = linears(model)
        XCTAssertEqual(all.count, expected.names.count)
        for (name, linear) in all {
            XCTAssertTrue(linear.weight.isQuantized, name)
            XCTAssertEqual(try linear.weight.floats().map(\.bitPattern), try expected.floats(name).map(\.bitPattern), name)
        }
    }

    func testPrequantizedLossMatchesTransformers() throws {
        let directory = try fixture("llama_gqa_nf4")
        let model = try LlamaModel.load(directory: directory, on: CPUBackend())
        let batch = try Batch(huggingFaceFile: directory.appendingPathComponent("batch.json"))
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("expected.json"))) as? [String: Any])
        let expected = try XCTUnwrap(json["loss"] as? Double)
        let loss = try model.step(batch, gradScale: nil) / Double(batch.targetCount)
        XCTAssertEqual(loss, expected, accuracy: 1e-5)
        // and the 16-bit model's loss is measurably different: the 4-bit weights are in use
        let dense = try LlamaModel.load(directory: try fixture("llama_gqa"), on: CPUBackend())
        XCTAssertGreaterThan(abs(try dense.step(batch, gradScale: nil) / Double(batch.targetCount) - expected), 1e-4)
    }

    /// --load-in-4bit on the 16-bit fixture = what transformers + bitsandbytes saved from it.
    func testLoadIn4bitGivesTransformersBytes() throws {
        let model = try LlamaModel.load(directory: try fixture("llama_gqa"), on: CPUBackend(), loadIn4bit: true)
        let checkpoint = try Checkpoint(directory: try fixture("llama_gqa_nf4"))
        for (name, linear) in linears(model) {
            guard case let .nf4(w) = linear.weight else { return XCTFail("\(name) is not 4-bit") }
            let theirs = try BnbNF4Layout.read(name, from: checkpoint, expectedShape: w.shape)
            XCTAssertEqual(w.host(), theirs, name)
        }
        XCTAssertFalse(model.embedding.dtype == .u8)
    }

    func testNF4LinearEqualsDenseLinearOnItsDequantizedWeight() throws {
        let cpu = CPUBackend()
        let values = (0..<(48 * 40)).map { Float(sin(Double($0) * 0.37)) * 0.1 }
        let q = try NF4Weight(quantizing: values, shape: [48, 40], doubleQuant: true, on: cpu)
        let quantized = Linear(weight: .nf4(q)), dense = Linear(weight: try q.dequantized())
        let x = try cpu.upload((0..<(5 * 40)).map { Float(cos(Double($0))) }, [5, 40], .f32)
        let (y1, s1) = try quantized.forward(x), (y2, s2) = try dense.forward(x)
        XCTAssertEqual(cpu.download(y1), cpu.download(y2))
        let dy = try cpu.upload((0..<(5 * 48)).map { Float($0 % 7) - 3 }, [5, 48], .f32)
        XCTAssertEqual(cpu.download(try quantized.backward(dy, saved: s1, accumulateInto: nil)),
                       cpu.download(try dense.backward(dy, saved: s2, accumulateInto: nil)))
        // 4-bit really is lossy: the dequantized weight is not the original
        XCTAssertNotEqual(cpu.download(try q.dequantized()), values)
    }

    func testUnsupportedQuantizationsNameTheField() throws {
        let base: [String: Any] = ["quant_method": "bitsandbytes", "load_in_4bit": true, "bnb_4bit_quant_type": "nf4"]
        XCTAssertNoThrow(try BnbQuantizationConfig.parse(base, path: "config.json"))
        var fp4 = base; fp4["bnb_4bit_quant_type"] = "fp4"
        var int8 = base; int8["load_in_4bit"] = false; int8["load_in_8bit"] = true
        var gptq = base; gptq["quant_method"] = "gptq"
        for (config, field) in [(fp4, "bnb_4bit_quant_type"), (int8, "load_in_8bit"), (gptq, "quant_method")] {
            XCTAssertThrowsError(try BnbQuantizationConfig.parse(config, path: "config.json")) { error in
                XCTAssertTrue("\(error)".contains("quantization_config.\(field)"), "\(error)")
            }
        }
    }

    /// `swiftlet train --load-in-4bit` on the demo: the same path with 4-bit base weights learns.
    func testQLoRADemoLearns() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("qlora-demo-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        try DemoTask.write(to: folder)
        let modelURL = folder.appendingPathComponent("model")
        let model = try LlamaModel.load(directory: modelURL, on: CPUBackend(), loadIn4bit: true)
        XCTAssertTrue(model.isQuantized4bit)
        let tokenizer = try Tokenizer(directory: modelURL)
        let data = try TextDataset.load(url: folder.appendingPathComponent("chat.jsonl"), tokenizer: tokenizer,
                                        options: DatasetOptions(trainOnResponsesOnly: true, maxSeqLength: 96))
        try model.addLoRA(DemoTask.lora, seed: 42)
        var a = DemoTask.arguments
        a.maxSteps = 40
        a.warmupSteps = 0
        a.scheduler = .constant
        var losses: [Double] = []
        try Trainer(model: model, examples: Array(data.examples.prefix(128)), arguments: a).train(onStep: { losses.append($0.loss) })
        XCTAssertLessThan(losses.suffix(5).reduce(0, +) / 5, losses[0] - 1.5, "\(losses)")
    }
}

/// `swiftlet quantize` and merged export from a 4-bit base.
final class QLoRAExportTests: XCTestCase {
    func fixture(_ name: String) throws -> URL {
        try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).appendingPathComponent(name)
    }

    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("qlora-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// Our quantize of llama_gqa = transformers' save_pretrained of its 4-bit load, tensor by tensor.
    func testQuantizeWritesTransformersLayout() throws {
        let out = try temporaryDirectory()
        let summary = try BnbNF4Export.write(from: try fixture("llama_gqa"), to: out, doubleQuant: true, computeDType: "float32")
        XCTAssertEqual(summary.quantized, 14)
        let ours = try Checkpoint(directory: out), theirs = try Checkpoint(directory: try fixture("llama_gqa_nf4"))
        XCTAssertEqual(ours.names, theirs.names)
        for name in theirs.names {
            XCTAssertEqual(try ours.info(name).dtype, try theirs.info(name).dtype, name)
            if name.hasSuffix(BnbNF4Layout.stateSuffix) {
                let a = try JSONSerialization.jsonObject(with: Data(try ours.rawBytes(name))) as? NSDictionary
                let b = try JSONSerialization.jsonObject(with: Data(try theirs.rawBytes(name))) as? NSDictionary
                XCTAssertEqual(a, b, name)
            } else {
                XCTAssertEqual(try ours.info(name).shape, try theirs.info(name).shape, name)
                XCTAssertEqual(Array(try ours.rawBytes(name)), Array(try theirs.rawBytes(name)), name)
            }
        }
        XCTAssertNotNil(try BnbQuantizationConfig.load(out.appendingPathComponent("config.json")))
        // transformers' BitsAndBytesConfig rejects an integer threshold
        let configText = try String(contentsOf: out.appendingPathComponent("config.json"), encoding: .utf8)
        XCTAssertTrue(configText.contains("\"llm_int8_threshold\" : 6.0"), configText)
        let back = try LlamaModel.load(directory: out, on: CPUBackend())
        XCTAssertTrue(back.isQuantized4bit)
    }

    /// Merged export of 4-bit base + adapter: the merged f32 model's logits are the adapted 4-bit
    /// model's.
    func testMergedExportFrom4bitBase() throws {
        let base = try fixture("llama_gqa_nf4")
        let model = try LlamaModel.load(directory: base, on: CPUBackend())
        try PEFTAdapter.load(directory: try fixture("llama_gqa").appendingPathComponent("adapter"), into: model)
        let batch = try Batch(huggingFaceFile: base.appendingPathComponent("batch.json"))
        let expected = try model.logits(batch)
        let out = try temporaryDirectory()
        let summary = try MergedExport.write(model: model, to: out, dtype: .f32, sourceDirectory: base)
        XCTAssertEqual(summary.mergedModules, model.adapters.count)
        let merged = try LlamaModel.load(directory: out, on: CPUBackend())
        XCTAssertFalse(merged.isQuantized4bit)
        XCTAssertNil(try BnbQuantizationConfig.load(out.appendingPathComponent("config.json")))
        let logits = try merged.logits(batch)
        let diff = zip(logits, expected).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThan(diff, 1e-4)
    }
}
