import Foundation
import XCTest
@testable import Swiftlet

/// Mixtral and Qwen3-MoE on the CPU against transformers + PEFT (fixtures by
/// scripts/make_moe_fixtures.py): logits, loss with and without the load-balancing loss, every LoRA
/// gradient (attention, router, the experts' 3-D parameters); the routing ops on their own; the
/// adapter files; QLoRA of the experts; merging.
final class MixtureOfExpertsTests: XCTestCase {
    static let fixtures = ["mixtral_moe", "qwen3_moe"]

    func fixture(_ name: String) throws -> URL {
        try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).appendingPathComponent(name)
    }

    /// Every adapter's gradient (or weight) under its PEFT name, the experts' joined as PEFT stores them
    /// (`PEFTAdapter.tensors`, what the adapter files and `swiftlet gradients` write).
    func byPEFTName(_ model: LlamaModel, _ pick: (LoRAAdapter) -> (Tensor, Tensor)) -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for entry in PEFTAdapter.tensors(of: model, { pick($0) }) {
            XCTAssertEqual(entry.dtype, .f32)
            out[entry.name] = entry.bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        return out
    }

    func testLossLogitsAndGradientsMatchTransformers() throws {
        for name in Self.fixtures {
            let directory = try fixture(name)
            let expected = try XCTUnwrap(JSONSerialization.jsonObject(
                with: Data(contentsOf: directory.appendingPathComponent("expected.json"))) as? [String: Any])
            let tensors = try SafetensorsFile(url: directory.appendingPathComponent("expected.safetensors"))
            let batch = try Batch(huggingFaceFile: directory.appendingPathComponent("batch.json"))
            let n = batch.targetCount
            XCTAssertEqual(n, expected["num_target_tokens"] as? Int, name)

            for withAux in [true, false] {
                let model = try LlamaModel.load(directory: directory, on: CPUBackend())
                try PEFTAdapter.load(directory: directory.appendingPathComponent("adapter"), into: model)
                XCTAssertEqual(model.config.moe?.auxLossEnabled, true, name)
                if withAux {
                    let logits = try model.logits(batch), theirs = try tensors.floats("logits"), vocab = model.config.vocabSize
                    var a: [Float] = [], b: [Float] = []
                    for token in 0..<batch.tokenCount where batch.sequenceIds[token] >= 0 {
                        a += logits[(token * vocab)..<((token + 1) * vocab)]
                        b += theirs[(token * vocab)..<((token + 1) * vocab)]
                    }
                    XCTAssertLessThan(relativeError(a, b), 1e-5, "\(name) logits")
                }
                let ce = try model.step(batch, gradScale: 1 / Float(n), routerAuxScale: withAux ? 1 : nil) / Double(n)
                let aux = try XCTUnwrap(model.lastRouterAuxLoss)
                let coefficient = Double(model.config.moe!.auxLossCoefficient)
                XCTAssertEqual(ce, expected["loss_ce"] as! Double, accuracy: 1e-5 * ce, "\(name) cross-entropy")
                XCTAssertEqual(aux, expected["aux"] as! Double, accuracy: 1e-5 * aux, "\(name) aux loss")
                XCTAssertEqual(ce + coefficient * aux, expected["loss"] as! Double, accuracy: 1e-5 * ce, "\(name) loss")
                let gradients = byPEFTName(model) { ($0.gradA, $0.gradB) }
                XCTAssertEqual(Set(gradients.keys).count * 2, tensors.names.filter { $0.hasPrefix("grad") }.count, name)
                for (peftName, gradient) in gradients {
                    let want = try tensors.floats((withAux ? "grad." : "grad_no_aux.") + peftName)
                    XCTAssertLessThan(relativeError(gradient, want), 1e-4, "\(name) gradient of \(peftName) (aux \(withAux))")
                }
            }
        }
    }

    /// The PEFT files: what Swiftlet writes equals what PEFT wrote (tensors bit for bit, targets,
    /// gate_up's doubled rank), and the experts' adapters are split as PEFT's ParamWrapper reads them.
    func testAdapterRoundTripsThroughPEFTFiles() throws {
        for name in Self.fixtures {
            let directory = try fixture(name)
            let model = try LlamaModel.load(directory: directory, on: CPUBackend())
            let config = try PEFTAdapter.load(directory: directory.appendingPathComponent("adapter"), into: model)
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("moe-adapter-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: out) }
            try PEFTAdapter.save(model, config: config, to: out)
            let theirs = try SafetensorsFile(url: directory.appendingPathComponent("adapter/adapter_model.safetensors"))
            let mine = try SafetensorsFile(url: out.appendingPathComponent("adapter_model.safetensors"))
            XCTAssertEqual(Set(mine.names), Set(theirs.names), name)
            for tensor in theirs.names {
                XCTAssertEqual(try mine.info(tensor).shape, try theirs.info(tensor).shape, tensor)
                XCTAssertEqual(try mine.floats(tensor), try theirs.floats(tensor), tensor)
            }
            func json(_ url: URL) throws -> [String: Any] {
                try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url.appendingPathComponent("adapter_config.json"))) as? [String: Any])
            }
            let (a, b) = (try json(out), try json(directory.appendingPathComponent("adapter")))
            for key in ["target_modules", "target_parameters"] {
                XCTAssertEqual(Set(a[key] as? [String] ?? []), Set(b[key] as? [String] ?? []), "\(name) \(key)")
            }
            XCTAssertEqual(a["rank_pattern"] as? [String: Int], b["rank_pattern"] as? [String: Int], name)
            XCTAssertEqual(a["alpha_pattern"] as? [String: Int], b["alpha_pattern"] as? [String: Int], name)
        }
        // Expert e's B is column j·E + e of PEFT's B.
        let (a, b) = ExpertLoRALayout.split(a: (0..<12).map(Float.init), b: (0..<12).map(Float.init), expert: 1, experts: 3,
                                            rank: 2, outFeatures: 2)
        XCTAssertEqual(a, [4, 5, 6, 7])
        XCTAssertEqual(b, [1, 4, 7, 10])
    }

    /// The counting sort puts each expert's assignments in one block, tokens in order; gather and
    /// combine are a permutation and its weighted inverse; the combine's backward is its transpose.
    func testSortGatherCombine() throws {
        let cpu = CPUBackend(), tokens = 7, k = 3, experts = 5, width = 4
        var g = SplitMix64(seed: 3)
        let chosen: [Int32] = (0..<tokens).flatMap { _ -> [Int32] in
            var picked: [Int32] = []
            while picked.count < k { let e = Int32(g.next() % UInt64(experts)); if !picked.contains(e) { picked.append(e) } }
            return picked
        }
        let counts = try cpu.zeros([experts], .i32), rows = try cpu.zeros([tokens * k], .i32)
        cpu.moeSort(experts: try cpu.upload(chosen, [tokens, k]), expertCount: experts, counts: counts, rows: rows)
        let r = cpu.downloadInts(rows).map(Int.init), c = cpu.downloadInts(counts).map(Int.init)
        XCTAssertEqual(Set(r), Set(0..<(tokens * k)), "a permutation")
        var start = 0
        for e in 0..<experts {
            let mine = (0..<(tokens * k)).filter { chosen[$0] == Int32(e) }
            XCTAssertEqual(c[e], mine.count)
            XCTAssertEqual(mine.map { r[$0] }, Array(start..<(start + mine.count)), "expert \(e): one block, tokens in order")
            start += mine.count
        }
        let x = (0..<(tokens * width)).map { _ in g.uniform(in: -1..<1) }
        let w = (0..<(tokens * k)).map { _ in g.uniform(in: 0..<1) }
        let sorted = try cpu.zeros([tokens * k, width], .f32)
        cpu.moeGather(try cpu.upload(x, [tokens, width], .f32), rows: rows, into: sorted)
        let out = try cpu.zeros([tokens, width], .f32), weights = try cpu.upload(w, [tokens, k], .f32)
        cpu.moeCombine(sorted, rows: rows, weights: weights, into: out)
        let o = cpu.download(out)
        for t in 0..<tokens {
            let total = (0..<k).reduce(Float(0)) { $0 + w[t * k + $1] }
            for h in 0..<width { XCTAssertEqual(o[t * width + h], total * x[t * width + h], accuracy: 1e-6) }
        }
        // <dOut, combine(y)> = <combineBackward(dOut), y> and dWeights = dOut · y of each slot.
        let y = (0..<(tokens * k * width)).map { _ in g.uniform(in: -1..<1) }, d = (0..<(tokens * width)).map { _ in g.uniform(in: -1..<1) }
        let yT = try cpu.upload(y, [tokens * k, width], .f32)
        cpu.moeCombine(yT, rows: rows, weights: weights, into: out)
        let dSorted = try cpu.zeros([tokens * k, width], .f32), dWeights = try cpu.zeros([tokens, k], .f32)
        cpu.moeCombineBackward(dOut: try cpu.upload(d, [tokens, width], .f32), sorted: yT, rows: rows, weights: weights,
                               dSorted: dSorted, dWeights: dWeights)
        let lhs = zip(d, cpu.download(out)).reduce(0.0) { $0 + Double($1.0 * $1.1) }
        let rhs = zip(cpu.download(dSorted), y).reduce(0.0) { $0 + Double($1.0 * $1.1) }
        XCTAssertEqual(lhs, rhs, accuracy: 1e-5)
        let dW = cpu.download(dWeights)
        for t in 0..<tokens {
            for j in 0..<k {
                let row = r[t * k + j]
                let dot = (0..<width).reduce(Float(0)) { $0 + d[t * width + $1] * y[row * width + $1] }
                XCTAssertEqual(dW[t * k + j], dot, accuracy: 1e-5)
            }
        }
    }

    /// The router's backward (renormalised or not, with the load-balancing term on unpadded tokens)
    /// against central differences of L = Σ c·weights + Σ aux_e·p[t, e]·[token unpadded].
    func testRoutingBackwardMatchesFiniteDifferences() throws {
        let cpu = CPUBackend(), tokens = 5, experts = 6, k = 3
        var g = SplitMix64(seed: 9)
        let logits = (0..<(tokens * experts)).map { _ in g.uniform(in: -2..<2) }
        let c = (0..<(tokens * k)).map { _ in g.uniform(in: -1..<1) }
        let aux = (0..<experts).map { _ in g.uniform(in: -1..<1) }
        let sequenceIds: [Int32] = [0, 0, 1, -1, 1]
        for normalize in [true, false] {
            func route(_ l: [Float]) throws -> (p: [Float], chosen: [Int32], w: [Float]) {
                let p = try cpu.zeros([tokens, experts], .f32), e = try cpu.zeros([tokens, k], .i32), w = try cpu.zeros([tokens, k], .f32)
                cpu.moeRoute(logits: try cpu.upload(l, [tokens, experts], .f32), topK: k, normalize: normalize,
                             probabilities: p, experts: e, weights: w)
                return (cpu.download(p), cpu.downloadInts(e), cpu.download(w))
            }
            func objective(_ l: [Float]) throws -> Double {
                let (p, _, w) = try route(l)
                var total = zip(c, w).reduce(0.0) { $0 + Double($1.0 * $1.1) }
                for t in 0..<tokens where sequenceIds[t] >= 0 {
                    for e in 0..<experts { total += Double(aux[e] * p[t * experts + e]) }
                }
                return total
            }
            let (p, chosen, _) = try route(logits)
            let dLogits = try cpu.zeros([tokens, experts], .f32)
            cpu.moeRouteBackward(dWeights: try cpu.upload(c, [tokens, k], .f32), probabilities: try cpu.upload(p, [tokens, experts], .f32),
                                 experts: try cpu.upload(chosen, [tokens, k]), normalize: normalize,
                                 auxGradient: try cpu.upload(aux, [experts], .f32),
                                 sequenceIds: try cpu.upload(sequenceIds, [tokens]), into: dLogits)
            let analytic = cpu.download(dLogits)
            for i in 0..<logits.count {
                var plus = logits, minus = logits
                plus[i] += 1e-2; minus[i] -= 1e-2
                let numeric = (try objective(plus) - objective(minus)) / 2e-2
                XCTAssertEqual(Double(analytic[i]), numeric, accuracy: 2e-3, "normalize \(normalize) logit \(i)")
            }
        }
    }

    /// QLoRA: experts in NF4 (gate and up quantized apart, as bitsandbytes quantizes w1 and w3; the
    /// router stays dense) compute what the dense model does on the dequantized weights.
    func testQLoRAExpertsEqualDenseOnDequantizedWeights() throws {
        let directory = try fixture("mixtral_moe")
        let batch = try Batch(huggingFaceFile: directory.appendingPathComponent("batch.json"))
        let quantized = try LlamaModel.load(directory: directory, on: CPUBackend(), loadIn4bit: true)
        let dense = try LlamaModel.load(directory: directory, on: CPUBackend())
        let moe = try XCTUnwrap(quantized.layers[0].mixture)
        XCTAssertFalse(moe.router.weight.isQuantized)
        guard case .nf4Rows = moe.experts[0].gateUp.linears[0].weight else { return XCTFail("gate_up should be two NF4 parts") }
        for i in dense.layers.indices {
            var layer = quantized.layers[i]
            var weights: [FrozenWeight] = []
            layer.updateLinears { weights.append($0.weight) }
            var index = 0
            try dense.layers[i].updateLinears { linear in
                linear.weight = .dense(try dense.backend.upload(weights[index].floats(), weights[index].shape, .f32))
                index += 1
            }
        }
        for model in [quantized, dense] { try PEFTAdapter.load(directory: directory.appendingPathComponent("adapter"), into: model) }
        let n = Float(batch.targetCount)
        let lossQ = try quantized.step(batch, gradScale: 1 / n), lossD = try dense.step(batch, gradScale: 1 / n)
        XCTAssertEqual(lossQ, lossD, accuracy: 1e-6 * abs(lossD))
        for (a, b) in zip(quantized.adapters, dense.adapters) {
            XCTAssertEqual(quantized.backend.download(a.gradA), dense.backend.download(b.gradA), a.module)
        }
        // quantizeLinearsToNF4 on a loaded dense model gives the same 4-bit model.
        let later = try LlamaModel.load(directory: directory, on: CPUBackend())
        try later.quantizeLinearsToNF4()
        XCTAssertEqual(try later.logits(batch), try LlamaModel.load(directory: directory, on: CPUBackend(), loadIn4bit: true).logits(batch))
    }

    /// The experts run together (`ExpertLinears`: each product one op over every expert's block of
    /// rows) give the bits of the experts run one by one, dense and in 4-bit, with the dequantized
    /// experts taken one chunk at a time; and with adapters on only some experts, or off the fused
    /// low-rank ops, they run one by one.
    func testExpertsTogetherEqualExpertByExpert() throws {
        let runsTogether = MixtureOfExperts.runsTogether, budget = ExpertLinears.dequantizedBytes
        defer { MixtureOfExperts.runsTogether = runsTogether; ExpertLinears.dequantizedBytes = budget }
        for name in Self.fixtures {
            for fourBit in [false, true] {
                let directory = try fixture(name)
                let batch = try Batch(huggingFaceFile: directory.appendingPathComponent("batch.json"))
                var results: [(loss: Double, gradients: [[Float]])] = []
                for together in [false, true] {
                    MixtureOfExperts.runsTogether = together
                    // two experts' dequantized gate_up at most: several chunks a projection
                    ExpertLinears.dequantizedBytes = fourBit ? 2 * 4 * 64 * 32 : budget
                    let model = try LlamaModel.load(directory: directory, on: CPUBackend(), loadIn4bit: fourBit)
                    try PEFTAdapter.load(directory: directory.appendingPathComponent("adapter"), into: model)
                    XCTAssertEqual(model.layers.compactMap { $0.mixture?.together }.count, together ? model.layers.count : 0, name)
                    let loss = try model.step(batch, gradScale: 1 / Float(batch.targetCount), routerAuxScale: 1)
                    results.append((loss, model.adapters.flatMap { [model.backend.download($0.gradA), model.backend.download($0.gradB)] }))
                }
                XCTAssertEqual(results[0].loss, results[1].loss, "\(name) 4-bit \(fourBit): loss")
                XCTAssertTrue(results[0].gradients == results[1].gradients, "\(name) 4-bit \(fourBit): LoRA gradients")
                XCTAssertTrue(results[1].gradients.contains { $0.contains { $0 != 0 } }, name)
            }
        }
        MixtureOfExperts.runsTogether = true
        let model = try LlamaModel.load(directory: try fixture("mixtral_moe"), on: CPUBackend())
        var moe = try XCTUnwrap(model.layers[0].mixture)
        XCTAssertNotNil(moe.together, "no adapters anywhere: together")
        try model.addLoRA(LoRAConfig(r: 4, alpha: 8, targets: [.q, .gate, .up, .down]), seed: 3)
        moe = try XCTUnwrap(model.layers[0].mixture)
        XCTAssertNotNil(moe.together, "adapters on every expert: together")
        moe.experts[1].down.lora = nil
        XCTAssertNil(moe.together, "an expert without the others' adapter runs alone")
        let big = try LlamaModel.load(directory: try fixture("mixtral_moe"), on: CPUBackend())
        try big.addLoRA(LoRAConfig(r: LoRAShapes.maxRank, alpha: 8, targets: [.gate, .up, .down]), seed: 3)
        XCTAssertNil(try XCTUnwrap(big.layers[0].mixture).together, "gate_up's doubled rank is past the fused ops'")
    }

    /// Adapters merged into the experts' and router's weights give the same logits, and the merged
    /// model saves under the checkpoint's own names (w1/w3 split back out of gate_up).
    func testMergedAdaptersAndSavedWeights() throws {
        for name in Self.fixtures {
            let directory = try fixture(name)
            let batch = try Batch(huggingFaceFile: directory.appendingPathComponent("batch.json"))
            let model = try LlamaModel.load(directory: directory, on: CPUBackend())
            try PEFTAdapter.load(directory: directory.appendingPathComponent("adapter"), into: model)
            let unmerged = try model.logits(batch)
            try model.mergeAdapters()
            XCTAssertTrue(model.adapters.isEmpty)
            XCTAssertLessThan(relativeError(try model.logits(batch), unmerged), 1e-5, name)
            let checkpoint = try Checkpoint(directory: directory)
            XCTAssertEqual(Set(model.namedWeights.map(\.name)), Set(checkpoint.names), "\(name): the checkpoint's names")
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("moe-merged-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: out) }
            try model.save(directory: out)
            let again = try LlamaModel.load(directory: out, on: CPUBackend())
            XCTAssertEqual(again.config, model.config, name)
            XCTAssertEqual(try again.logits(batch), try model.logits(batch), name)
        }
    }

    /// What the one decoder does not compute is refused with the field named; LoRA on only one of the
    /// fused gate/up, or with dropout on the experts, as PEFT refuses it.
    func testRefusals() throws {
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: try fixture("mixtral_moe").appendingPathComponent("config.json"))) as? [String: Any])
        json["router_jitter_noise"] = 0.1
        XCTAssertThrowsError(try HFConfig.parse(json, file: "c.json")) { XCTAssertTrue("\($0)".contains("router_jitter_noise"), "\($0)") }
        var qwen = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: try fixture("qwen3_moe").appendingPathComponent("config.json"))) as? [String: Any])
        qwen["mlp_only_layers"] = [0]
        XCTAssertThrowsError(try HFConfig.parse(qwen, file: "c.json")) { XCTAssertTrue("\($0)".contains("mlp_only_layers"), "\($0)") }
        let model = try LlamaModel.load(directory: try fixture("mixtral_moe"), on: CPUBackend())
        XCTAssertThrowsError(try model.addLoRA(LoRAConfig(r: 2, targets: try LoRAConfig.targets(parsing: "q_proj,w1")), seed: 1)) {
            XCTAssertTrue("\($0)".contains("gate_proj and up_proj"), "\($0)")
        }
        XCTAssertThrowsError(try model.addLoRA(LoRAConfig(r: 2, dropout: 0.1, targets: try LoRAConfig.targets(parsing: "w1,w3")), seed: 1))
        try model.addLoRA(LoRAConfig(r: 2), seed: 1)
        XCTAssertEqual(model.loraConfig?.targets, [.q, .k, .v, .o, .gate, .up, .down, .router])
        // per layer: 4 attention + router + 4 experts × (gate_up, down)
        XCTAssertEqual(model.adapters.count, model.config.layers * (4 + 1 + 2 * 4))
    }

    /// DPO and ORPO do not add the load-balancing loss yet: with output_router_logits set they refuse,
    /// naming the field, instead of training a loss other than TRL's; without it they build.
    func testPreferenceTrainersRefuseTheRouterAuxLoss() throws {
        let source = try fixture("mixtral_moe")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swiftlet-moe-aux-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: source, to: dir)
        defer { try? FileManager.default.removeItem(at: dir) }
        let configURL = dir.appendingPathComponent("config.json")
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        let pairs = PreferenceTrainingData(train: [PreferencePair(promptIds: [1, 2], chosenIds: [3, 4], rejectedIds: [5])])
        var arguments = TrainingArguments()
        arguments.maxSteps = 1
        for enabled in [true, false] {
            json["output_router_logits"] = enabled
            try JSONSerialization.data(withJSONObject: json).write(to: configURL)
            let model = try LlamaModel.load(directory: dir, on: CPUBackend())
            try model.addLoRA(LoRAConfig(r: 2), seed: 1)
            if enabled {
                XCTAssertThrowsError(try DPOTrainer(model: model, data: pairs, arguments: arguments)) {
                    XCTAssertTrue("\($0)".contains("output_router_logits"), "\($0)")
                }
                XCTAssertThrowsError(try ORPOTrainer(model: model, data: pairs, arguments: arguments)) {
                    XCTAssertTrue("\($0)".contains("output_router_logits"), "\($0)")
                }
            } else {
                XCTAssertNoThrow(try DPOTrainer(model: model, data: pairs, arguments: arguments))
                XCTAssertNoThrow(try ORPOTrainer(model: model, data: pairs, arguments: arguments))
            }
        }
    }

    /// The bench presets have the real models' parameter counts (transformers' own count of
    /// MixtralForCausalLM / Qwen3MoeForCausalLM built on the meta device with these configs).
    func testPresetsHaveTheModelsParameterCounts() throws {
        XCTAssertEqual(try LlamaConfig.preset("mixtral-8x7b").parameterCount, 46_702_792_704)
        XCTAssertEqual(try LlamaConfig.preset("qwen3-30b-a3b").parameterCount, 30_532_122_624)
        // FLOPs count the top-k experts a token runs through, not all of them.
        let mixtral = try LlamaConfig.preset("mixtral-8x7b")
        var dense = mixtral
        dense.moe = nil
        let sparse = TrainingFLOPs(config: mixtral, rows: 1, rowLength: 1024, rank: 0, recompute: false).model
        let allDense = TrainingFLOPs(config: dense, rows: 1, rowLength: 1024, rank: 0, recompute: false).model
        // without adapters each frozen weight costs 4 FLOPs per token (forward, input gradient)
        let (h, i) = (4096.0, 14336.0)
        XCTAssertEqual(sparse - allDense, 32 * 1024 * 4 * (2 * 3 * h * i + h * 8 - 3 * h * i), accuracy: 1)
    }

    /// A pre-quantized bitsandbytes checkpoint (`swiftlet quantize`, transformers 4's per-expert
    /// layout: w1 w3 w2 each NF4, the router 16-bit) loads as the 4-bit model `--load-in-4bit` makes.
    func testPreQuantizedCheckpointLoads() throws {
        let directory = try fixture("mixtral_moe")
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("moe-bnb-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let summary = try BnbNF4Export.write(from: directory, to: out)
        // per layer: q k v o, and w1 w3 w2 of 4 experts
        XCTAssertEqual(summary.quantized, 2 * (4 + 3 * 4))
        let batch = try Batch(huggingFaceFile: directory.appendingPathComponent("batch.json"))
        let loaded = try LlamaModel.load(directory: out, on: CPUBackend())
        XCTAssertTrue(loaded.isQuantized4bit)
        XCTAssertFalse(try XCTUnwrap(loaded.layers[0].mixture).router.weight.isQuantized)
        XCTAssertEqual(try loaded.logits(batch), try LlamaModel.load(directory: directory, on: CPUBackend(), loadIn4bit: true).logits(batch))
    }

    /// Merged export folds the experts' and router's adapters in under the checkpoint's names: the
    /// exported folder loads (no adapter) with the adapted model's logits.
    func testMergedExportFoldsExpertAdapters() throws {
        for name in Self.fixtures {
            let directory = try fixture(name)
            let batch = try Batch(huggingFaceFile: directory.appendingPathComponent("batch.json"))
            let model = try LlamaModel.load(directory: directory, on: CPUBackend())
            try PEFTAdapter.load(directory: directory.appendingPathComponent("adapter"), into: model)
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("moe-export-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: out) }
            let summary = try MergedExport.write(model: model, to: out, dtype: .f32, sourceDirectory: directory)
            // Mixtral: 4 attention + router + 4 experts × (w1, w3, w2); Qwen3-MoE: q, o + 8 × 3
            XCTAssertEqual(summary.mergedModules, name == "mixtral_moe" ? 2 * (5 + 12) : 2 * (2 + 24), name)
            let exported = try LlamaModel.load(directory: out, on: CPUBackend())
            XCTAssertLessThan(relativeError(try exported.logits(batch), try model.logits(batch)), 1e-5, name)
        }
    }

    /// Gradient checkpointing recomputes the routing as it was (same experts, same bits), and greedy
    /// generation through the KV cache picks each step's argmax of the full recompute's logits.
    func testCheckpointingAndGeneration() throws {
        let directory = try fixture("qwen3_moe")
        let batch = try Batch(huggingFaceFile: directory.appendingPathComponent("batch.json"))
        var results: [[Float]] = []
        for checkpointing in [GradientCheckpointing.off, .on] {
            let model = try LlamaModel.load(directory: directory, on: CPUBackend())
            try PEFTAdapter.load(directory: directory.appendingPathComponent("adapter"), into: model)
            model.gradientCheckpointing = checkpointing
            _ = try model.step(batch, gradScale: 1 / Float(batch.targetCount), routerAuxScale: 1)
            results.append(model.adapters.flatMap { model.backend.download($0.gradA) + model.backend.download($0.gradB) })
        }
        XCTAssertEqual(results[0], results[1])

        let model = try LlamaModel.load(directory: directory, on: CPUBackend())
        try PEFTAdapter.load(directory: directory.appendingPathComponent("adapter"), into: model)
        let prompt: [Int32] = [5, 17, 99, 3, 42]
        let generated = try Generator(model: model, eosTokenIds: []).generate(prompts: [prompt], maxNewTokens: 5).tokens[0]
        var sequence = prompt
        for token in generated {
            let logits = try model.logits(Batch(examples: [Example(inputIds: sequence)]))
            let last = Array(logits.suffix(model.config.vocabSize))
            XCTAssertEqual(Int32(last.indices.max { last[$0] < last[$1] }!), token)
            sequence.append(token)
        }
    }

    /// GGUF as convert_hf_to_gguf.py lays a mixture out: Mixtral as `llama` and Qwen3-MoE as `qwen3moe`,
    /// the router as `ffn_gate_inp`, every expert of a layer stacked into `ffn_{gate,up,down}_exps`
    /// ([experts, out, in]; ggml dims reversed), expert counts in the metadata; adapters merged.
    func testGGUFExportStacksTheExperts() throws {
        let directory = try fixture("mixtral_moe")
        let model = try LlamaModel.load(directory: directory, on: CPUBackend())
        try PEFTAdapter.load(directory: directory.appendingPathComponent("adapter"), into: model)
        let c = model.config, moe = try XCTUnwrap(c.moe)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("moe-\(UUID().uuidString).gguf")
        defer { try? FileManager.default.removeItem(at: url) }
        for quant in [GGUFExport.Quant.f16, .q8_0] {
            try GGUFExport.write(model: model, to: url, quant: quant, name: "mixtral_moe", tokenizerDirectory: nil)
            let g = try GGUFExportTests.Parsed(Data(contentsOf: url))
            XCTAssertEqual(g.metadata["general.architecture"] as? String, "llama")
            XCTAssertEqual(g.metadata["llama.expert_count"] as? UInt32, UInt32(moe.experts))
            XCTAssertEqual(g.metadata["llama.expert_used_count"] as? UInt32, UInt32(moe.topK))
            // embeddings, output norm, output + per layer: 2 norms, q k v o, router, 3 expert stacks
            XCTAssertEqual(g.tensors.count, 3 + c.layers * 10)
            let up = try XCTUnwrap(g.tensors.first { $0.name == "blk.1.ffn_up_exps.weight" })
            XCTAssertEqual(up.dims, [c.hiddenSize, moe.intermediateSize, moe.experts])
            XCTAssertEqual(g.tensors.first { $0.name == "blk.1.ffn_down_exps.weight" }?.dims, [moe.intermediateSize, c.hiddenSize, moe.experts])
            XCTAssertEqual(g.tensors.first { $0.name == "blk.0.ffn_gate_inp.weight" }?.dims, [c.hiddenSize, moe.experts])
            // Expert 2's up rows: the second half of its merged gate_up (w3 + the adapter's up part).
            let expert = try XCTUnwrap(model.layers[1].mixture).experts[2].gateUp.linears[0]
            let merged = try MergedExport.mergedWeight(expert.weight, adapter: expert.lora)
            let block = moe.intermediateSize * c.hiddenSize
            let want = Array(merged[block..<(2 * block)])
            let got = Array(g.floats("blk.1.ffn_up_exps.weight")[(2 * block)..<(3 * block)])
            XCTAssertEqual(got, quant == .f16 ? want.map { Half.float(Half.bits($0)) } : GGMLQ8_0.dequantize(GGMLQ8_0.quantize(want)))
        }
        XCTAssertThrowsError(try GGUFExport.write(model: model, to: url, quant: .q4_k_m, name: "m", tokenizerDirectory: nil))
        // Qwen3-MoE: llama.cpp renormalises always, so norm_topk_prob false is refused.
        let qwen = try LlamaModel.load(directory: try fixture("qwen3_moe"), on: CPUBackend())
        XCTAssertThrowsError(try GGUFExport.write(model: qwen, to: url, name: "q", tokenizerDirectory: nil)) {
            XCTAssertTrue("\($0)".contains("norm_topk_prob"), "\($0)")
        }
        var config = qwen.config
        config.moe?.normalizeTopK = true
        let metadata = try GGUFExport.modelMetadata(config, name: "q", quant: .f16)
        XCTAssertEqual(metadata.first?.1, .string("qwen3moe"))
        XCTAssertTrue(metadata.contains { $0.0 == "qwen3moe.expert_feed_forward_length" && $0.1 == .uint32(24) })
    }
}
