import Foundation
import XCTest
@testable import Swiftlet

/// What each model family adds beyond the fixtures' loss and gradients (ModelFixtureTests): LoRA
/// targets by PEFT's names for the family, adapters that round-trip, QLoRA on fused weights and
/// head norms, and GGUF names.
final class ModelFamilyTests: XCTestCase {
    func fixture(_ name: String) throws -> URL {
        try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).appendingPathComponent(name)
    }

    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("model-family-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// Backend.copyColumns: the parts of a fused [rows, 3+2+2] output come out as the right columns and
    /// go back in place (f32 and i32 element sizes).
    func testCopyColumnsSplitsAndConcatenates() throws {
        let cpu = CPUBackend(), rows = 3, widths = [3, 2, 2]
        let values = (0..<(rows * 7)).map { Float($0) }
        let fused = try cpu.upload(values, [rows, 7], .f32)
        let back = try cpu.zeros([rows, 7], .f32)
        var column = 0
        for width in widths {
            let part = try cpu.zeros([rows, width], .f32)
            cpu.copyColumns(fused, sourceColumn: column, into: part, destinationColumn: 0, width: width)
            XCTAssertEqual(cpu.download(part), (0..<rows).flatMap { r in (0..<width).map { Float(r * 7 + column + $0) } })
            cpu.copyColumns(part, sourceColumn: 0, into: back, destinationColumn: column, width: width)
            column += width
        }
        XCTAssertEqual(cpu.download(back), values)
        let ints = try cpu.upload((0..<12).map(Int32.init), [3, 4]), slice = try cpu.upload([Int32](repeating: 0, count: 3), [3, 1])
        cpu.copyColumns(ints, sourceColumn: 2, into: slice, destinationColumn: 0, width: 1)
        XCTAssertEqual(cpu.downloadInts(slice), [2, 6, 10])
    }

    func testPhi3LoRATargetsAreItsFusedLinears() throws {
        let model = try LlamaModel.load(directory: try fixture("phi3_fused"), on: CPUBackend())
        // "All" (the default) means Phi-3's own four linears.
        try model.addLoRA(LoRAConfig(r: 2, alpha: 4), seed: 1)
        XCTAssertEqual(model.loraConfig?.targets, [.qkv, .o, .gateUp, .down])
        XCTAssertEqual(model.adapters.map(\.module).prefix(4), ["model.layers.0.self_attn.qkv_proj", "model.layers.0.self_attn.o_proj",
                                                                "model.layers.0.mlp.gate_up_proj", "model.layers.0.mlp.down_proj"])
        XCTAssertEqual(model.adapters[0].outFeatures, model.config.qWidth + 2 * model.config.kvWidth)
        XCTAssertEqual(model.adapters[2].outFeatures, 2 * model.config.intermediateSize)
        // A linear the family does not have is an error naming the ones it has.
        XCTAssertThrowsError(try model.addLoRA(LoRAConfig(r: 2, targets: [.q, .v]), seed: 1)) { error in
            XCTAssertTrue("\(error)".contains("q_proj") && "\(error)".contains("qkv_proj, o_proj, gate_up_proj, down_proj"), "\(error)")
        }
        let llama = try LlamaModel.load(directory: try fixture("llama_gqa"), on: CPUBackend())
        XCTAssertThrowsError(try llama.addLoRA(LoRAConfig(r: 2, targets: [.qkv]), seed: 1))
        try llama.addLoRA(LoRAConfig(r: 2), seed: 1)
        XCTAssertEqual(llama.loraConfig?.targets, [.q, .k, .v, .o, .gate, .up, .down])
    }

    /// DPO's reference model: adapters switched off on every family (Llama has no qkv_proj, Phi-3
    /// no q_proj: the names a family lacks are skipped).
    func testAdaptersDisabledGiveTheBaseModel() throws {
        for name in ["llama_gqa", "qwen3_qknorm", "phi3_fused", "gemma2_softcap"] {
            let directory = try fixture(name)
            let batch = try Batch(huggingFaceFile: directory.appendingPathComponent("batch.json"))
            let base = try LlamaModel.load(directory: directory, on: CPUBackend())
            let adapted = try LlamaModel.load(directory: directory, on: CPUBackend())
            try PEFTAdapter.load(directory: directory.appendingPathComponent("adapter"), into: adapted)
            let withAdapters = try adapted.logits(batch)
            XCTAssertEqual(try adapted.withAdaptersDisabled { try adapted.logits(batch) }, try base.logits(batch), name)
            XCTAssertEqual(try adapted.logits(batch), withAdapters, "\(name): adapters are back")
            XCTAssertNotEqual(withAdapters, try base.logits(batch), name)
        }
    }

    func testFusedAdapterRoundTripsThroughPEFTFiles() throws {
        let directory = try fixture("phi3_fused")
        let model = try LlamaModel.load(directory: directory, on: CPUBackend())
        let config = try PEFTAdapter.load(directory: directory.appendingPathComponent("adapter"), into: model)
        let out = try temporaryDirectory()
        try PEFTAdapter.save(model, config: config, to: out)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("adapter_config.json"))) as? [String: Any])
        XCTAssertEqual(json["target_modules"] as? [String], ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"])
        let again = try LlamaModel.load(directory: directory, on: CPUBackend())
        try PEFTAdapter.load(directory: out, into: again)
        XCTAssertEqual(again.adapters.count, model.adapters.count)
        for (a, b) in zip(again.adapters, model.adapters) {
            XCTAssertEqual(a.module, b.module)
            XCTAssertEqual(again.backend.download(a.b), model.backend.download(b.b), a.module)
        }
    }

    /// QLoRA: the 4-bit model computes what the dense model does on the dequantized weights, for
    /// Phi-3's fused weights and with Qwen3's and Gemma 3's head norms (which stay 16-bit, as transformers
    /// keeps them), and Gemma 2's four norms per layer.
    func testQLoRAEqualsDenseOnDequantizedWeights() throws {
        for name in ["phi3_fused", "qwen3_qknorm", "gemma2_softcap", "gemma3_text"] {
            let directory = try fixture(name)
            let batch = try Batch(huggingFaceFile: directory.appendingPathComponent("batch.json"))
            let quantized = try LlamaModel.load(directory: directory, on: CPUBackend(), loadIn4bit: true)
            XCTAssertTrue(quantized.isQuantized4bit, name)
            let dense = try LlamaModel.load(directory: directory, on: CPUBackend())
            for i in dense.layers.indices {
                for target in LoRAConfig.Target.allCases {
                    guard let linear = quantized.layers[i][target] else { continue }
                    XCTAssertTrue(linear.weight.isQuantized, "\(name) \(target.rawValue)")
                    dense.layers[i][target]!.weight = .dense(try dense.backend.upload(linear.weight.floats(), linear.weight.shape, .f32))
                }
            }
            for model in [quantized, dense] {
                try PEFTAdapter.load(directory: directory.appendingPathComponent("adapter"), into: model)
            }
            let n = Float(batch.targetCount)
            let lossQ = try quantized.step(batch, gradScale: 1 / n), lossD = try dense.step(batch, gradScale: 1 / n)
            XCTAssertEqual(lossQ, lossD, accuracy: 1e-6 * abs(lossD), name)
            let original = try LlamaModel.load(directory: directory, on: CPUBackend())
            let lossOriginal = try original.step(batch, gradScale: nil)
            XCTAssertNotEqual(lossQ, lossOriginal, "\(name): 4-bit weights should differ from the originals")
            for (a, b) in zip(quantized.adapters, dense.adapters) {
                XCTAssertEqual(quantized.backend.download(a.gradA), dense.backend.download(b.gradA), "\(name) \(a.module)")
            }
        }
    }

    func testGGUFNamesOfQwen3HeadNormsAndPhi3FusedLinears() throws {
        XCTAssertEqual(GGUFExport.tensorName("model.layers.3.self_attn.q_norm.weight"), "blk.3.attn_q_norm.weight")
        XCTAssertEqual(GGUFExport.tensorName("model.layers.3.self_attn.k_norm.weight"), "blk.3.attn_k_norm.weight")
        XCTAssertEqual(GGUFExport.tensorName("model.layers.0.self_attn.qkv_proj.weight"), "blk.0.attn_qkv.weight")
        XCTAssertEqual(GGUFExport.tensorName("model.layers.0.mlp.gate_up_proj.weight"), "blk.0.ffn_up.weight")
        let out = try temporaryDirectory()
        let qwen3 = try LlamaModel.load(directory: try fixture("qwen3_qknorm"), on: CPUBackend())
        XCTAssertEqual(try GGUFExport.architecture(qwen3.config), "qwen3")
        let summary = try GGUFExport.write(model: qwen3, to: out.appendingPathComponent("q.gguf"), name: "qwen3", tokenizerDirectory: nil)
        // token_embd, output_norm, and per layer 2 norms + 2 head norms + 7 linears (tied: no output).
        XCTAssertEqual(summary.tensors, 2 + qwen3.config.layers * 11)
        let phi3 = try LlamaModel.load(directory: try fixture("phi3_fused"), on: CPUBackend())
        XCTAssertEqual(try GGUFExport.architecture(phi3.config), "phi3")
        let phi3Summary = try GGUFExport.write(model: phi3, to: out.appendingPathComponent("p.gguf"), name: "phi3", tokenizerDirectory: nil)
        // token_embd, output_norm, output, and per layer 2 norms + 4 linears.
        XCTAssertEqual(phi3Summary.tensors, 3 + phi3.config.layers * 6)
        let metadata = try GGUFExport.modelMetadata(phi3.config, name: "p", quant: .f16)
        XCTAssertTrue(metadata.contains { $0.0 == "phi3.attention.sliding_window" }, "\(metadata.map(\.0))")
        XCTAssertThrowsError(try GGUFExport.q4KMType("blk.0.attn_qkv.weight", rowLength: 256, layers: 2, hasOutput: true, arch: "phi3"))
    }

    /// Gemma's LoRA targets are PEFT's seven names; its four norms per layer load by their HF names and
    /// are written back under them (the pre-MLP norm is pre_feedforward_layernorm, post_attention_layernorm
    /// the attention output's norm).
    func testGemmaLoRATargetsAndNormNames() throws {
        for name in ["gemma2_softcap", "gemma3_text"] {
            let model = try LlamaModel.load(directory: try fixture(name), on: CPUBackend())
            try model.addLoRA(LoRAConfig(r: 2, alpha: 4), seed: 1)
            XCTAssertEqual(model.loraConfig?.targets, [.q, .k, .v, .o, .gate, .up, .down], name)
            let names = model.namedWeights.map(\.name)
            for norm in ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"] {
                XCTAssertTrue(names.contains("model.layers.1.\(norm).weight"), "\(name): \(norm)")
            }
            let file = try SafetensorsFile(url: try fixture(name).appendingPathComponent("model.safetensors"))
            XCTAssertEqual(model.backend.download(model.layers[0].postAttentionNorm),
                           try file.floats("model.layers.0.pre_feedforward_layernorm.weight"), "the norm before the MLP")
            XCTAssertEqual(model.backend.download(try XCTUnwrap(model.layers[0].attentionOutputNorm)),
                           try file.floats("model.layers.0.post_attention_layernorm.weight"), "the attention output's norm")
            XCTAssertEqual(model.config.parameterCount, try file.names.reduce(0) { $0 + (try file.info($1).shape.count) }, name)
        }
    }
}
