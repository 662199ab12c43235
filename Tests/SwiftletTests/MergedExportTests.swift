import Foundation
import XCTest
@testable import Swiftlet

/// `MergedExport`: a merged folder loaded with no adapter gives base + adapter's logits; sharding
/// writes transformers' index; bf16 export rounds each merged weight once.
final class MergedExportTests: XCTestCase {
    func fixture(_ name: String) throws -> URL {
        try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).appendingPathComponent(name)
    }

    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("merged-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// Base + adapter on the CPU.
    func adapted(_ name: String) throws -> (LlamaModel, URL) {
        let directory = try fixture(name)
        let model = try LlamaModel.load(directory: directory, on: CPUBackend())
        try PEFTAdapter.load(directory: directory.appendingPathComponent("adapter"), into: model)
        return (model, directory)
    }

    func testF32MergedLogitsMatchBasePlusAdapter() throws {
        for name in ["llama_gqa", "qwen2_bias", "llama32_tied", "qwen3_qknorm", "phi3_fused", "phi3_longrope",
                     "gemma2_softcap", "gemma3_text"] {
            let (model, directory) = try adapted(name)
            XCTAssertFalse(model.adapters.isEmpty, name)
            let batch = try Batch(huggingFaceFile: directory.appendingPathComponent("batch.json"))
            let expected = try model.logits(batch)
            let out = try temporaryDirectory()
            let summary = try MergedExport.write(model: model, to: out, dtype: .f32, sourceDirectory: directory)
            XCTAssertEqual(summary.files, ["model.safetensors"])
            XCTAssertEqual(summary.mergedModules, model.adapters.count)

            let merged = try LlamaModel.load(directory: out, on: CPUBackend())
            XCTAssertTrue(merged.adapters.isEmpty)
            let logits = try merged.logits(batch)
            XCTAssertLessThan(relativeError(logits, expected), 1e-5, "\(name) merged logits")

            // The merge did something: the base alone differs from base + adapter.
            let base = try LlamaModel.load(directory: directory, on: CPUBackend())
            XCTAssertGreaterThan(relativeError(try base.logits(batch), expected), 1e-4, "\(name): adapter is a no-op")

            let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as? [String: Any])
            XCTAssertEqual(config["torch_dtype"] as? String, "float32")
            XCTAssertEqual(config["dtype"] as? String, "float32")
            let file = try SafetensorsFile(url: out.appendingPathComponent("model.safetensors"))
            XCTAssertEqual(try file.info("model.embed_tokens.weight").dtype, .f32)
            XCTAssertEqual(file.contains("lm_head.weight"), !model.config.tieWordEmbeddings, name)
            // generation_config.json copied from the source
            XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("generation_config.json")),
                           try Data(contentsOf: directory.appendingPathComponent("generation_config.json")))
        }
    }

    func testShardedExportWritesIndexAndLoads() throws {
        let (model, directory) = try adapted("llama_gqa")
        let batch = try Batch(huggingFaceFile: directory.appendingPathComponent("batch.json"))
        let expected = try model.logits(batch)
        let out = try temporaryDirectory()
        // A stale single file from an earlier export must not shadow the new index.
        try MergedExport.write(model: model, to: out, dtype: .f32, sourceDirectory: nil)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors").path))

        let maxBytes = 16 * 1024
        let summary = try MergedExport.write(model: model, to: out, dtype: .f32, maxShardBytes: maxBytes, sourceDirectory: nil)
        let n = summary.files.count
        XCTAssertGreaterThan(n, 2)
        XCTAssertEqual(summary.files.first, String(format: "model-00001-of-%05d.safetensors", n))
        XCTAssertEqual(summary.files.last, String(format: "model-%05d-of-%05d.safetensors", n, n))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors").path))

        let index = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Data(contentsOf: out.appendingPathComponent("model.safetensors.index.json"))) as? [String: Any])
        let weightMap = try XCTUnwrap(index["weight_map"] as? [String: String])
        let totalSize = try XCTUnwrap((index["metadata"] as? [String: Any])?["total_size"] as? Int)
        XCTAssertEqual(Set(weightMap.keys), Set(model.namedWeights.map(\.name)))
        XCTAssertEqual(Set(weightMap.values), Set(summary.files))
        var bytes = 0
        for (shardIndex, shard) in summary.files.enumerated() {
            let file = try SafetensorsFile(url: out.appendingPathComponent(shard))
            XCTAssertEqual(Set(file.names), Set(weightMap.filter { $0.value == shard }.keys))
            let shardBytes = try file.names.reduce(0) { try $0 + file.info($1).shape.count * 4 }
            // Over the limit only when the shard is one tensor too big to split.
            if shardBytes > maxBytes { XCTAssertEqual(file.names.count, 1, "shard \(shardIndex)") }
            bytes += shardBytes
        }
        XCTAssertEqual(totalSize, bytes)
        XCTAssertEqual(totalSize, summary.totalSize)

        let merged = try LlamaModel.load(directory: out, on: CPUBackend())
        XCTAssertLessThan(relativeError(try merged.logits(batch), expected), 1e-5)
    }

    func testBF16ExportRoundsMergedWeights() throws {
        let (model, directory) = try adapted("llama_gqa")
        let out = try temporaryDirectory()
        try MergedExport.write(model: model, to: out, dtype: .bf16, sourceDirectory: directory)
        let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as? [String: Any])
        XCTAssertEqual(config["torch_dtype"] as? String, "bfloat16")
        let file = try SafetensorsFile(url: out.appendingPathComponent("model.safetensors"))

        // A merged linear: bf16(W + s·B·A), B·A computed here independently in Double.
        let adapter = try XCTUnwrap(model.adapters.first)
        let name = adapter.module + ".weight"
        XCTAssertEqual(try file.info(name).dtype, .bf16)
        let linear = try XCTUnwrap(model.layers[0].linears.first { $0.lora === adapter })
        let w = try linear.weight.floats()
        let a = model.backend.download(adapter.a), b = model.backend.download(adapter.b)
        let (r, inF, outF) = (adapter.rank, adapter.inFeatures, adapter.outFeatures)
        var expected = [Float](repeating: 0, count: outF * inF)
        var changed = 0
        for o in 0..<outF {
            for i in 0..<inF {
                var d = 0.0
                for k in 0..<r { d += Double(b[o * r + k]) * Double(a[k * inF + i]) }
                let value = Float(Double(w[o * inF + i]) + d * Double(adapter.scaling))
                expected[o * inF + i] = BFloat16.round(value)
                if BFloat16.round(value) != BFloat16.round(w[o * inF + i]) { changed += 1 }
            }
        }
        XCTAssertGreaterThan(changed, 0, "the adapter should change some bf16 weights")
        let stored = try file.floats(name)
        var mismatches = 0, beyondOneStep = 0
        for (x, y) in zip(stored, expected) where x != y {
            // Float32 vs Double accumulation may land on the other side of a rounding boundary:
            // then the two differ by one bf16 step.
            if abs(x - y) > abs(y) * 0x1p-7 { beyondOneStep += 1 }
            mismatches += 1
        }
        XCTAssertEqual(beyondOneStep, 0, "merged bf16 weights more than one bf16 step off")
        XCTAssertLessThan(mismatches, max(1, stored.count / 100), "merged bf16 weights not rounded from W + s·B·A")
        // An unmerged weight is the bf16 rounding of the original.
        let norm = model.backend.download(model.layers[0].inputNorm)
        XCTAssertEqual(try file.floats("model.layers.0.input_layernorm.weight"), norm.map(BFloat16.round))
    }

    func testShardPlanAndNames() {
        XCTAssertEqual(MergedExport.planShards(sizes: [4, 4, 4, 10, 1], maxBytes: 8), [[0, 1], [2], [3], [4]])
        XCTAssertEqual(MergedExport.planShards(sizes: [1, 2, 3], maxBytes: 100), [[0, 1, 2]])
        XCTAssertEqual(MergedExport.shardName(0, of: 3), "model-00001-of-00003.safetensors")
    }

}
