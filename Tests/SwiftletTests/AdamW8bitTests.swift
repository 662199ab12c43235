import Foundation
import XCTest
@testable import Swiftlet

/// bitsandbytes' AdamW8bit (Train/AdamW8bit.swift): the quantizer, a replay of a run of the real
/// bitsandbytes, checkpoint resume and training.
final class AdamW8bitTests: XCTestCase {
    /// bnb's binary-search quantizer picks the nearest code. Random values, uniform and log-uniform
    /// in magnitude (the code book is dense near zero); the only allowed disagreement is a value
    /// within two ulps of the Float midpoint of two adjacent codes, where the midpoint's own rounding
    /// decides (bnb sends an exact tie to the code the search ended on, not to a fixed side).
    func testQuantizeIsNearestCode() {
        var g = SplitMix64(seed: 1)
        for (codebook, signed) in [(DynamicMap.signed, true), (DynamicMap.unsigned, false)] {
            var ties = 0
            for k in 0..<200_000 {
                let magnitude = k % 2 == 0 ? g.uniform(in: 0..<1) : Float(pow(10, Double(g.uniform(in: -8..<0))))
                let x = signed && g.next() % 2 == 0 ? -magnitude : magnitude
                let ours = Int(AdamW8bit.quantize(x, codebook: codebook, signed: signed))
                let distances = codebook.map { abs(Double($0) - Double(x)) }
                let nearest = distances.indices.min { distances[$0] < distances[$1] }!
                if ours == nearest { continue }
                let midpoint = (codebook[ours] + codebook[nearest]) * 0.5
                let nearTie = abs(ours - nearest) == 1 && abs(x - midpoint) <= 2 * midpoint.ulp
                XCTAssertTrue(nearTie, "x \(x): code \(ours) (\(codebook[ours])), nearest \(nearest) (\(codebook[nearest]))")
                ties += 1
                if !nearTie { return }
            }
            XCTAssertLessThan(ties, 10, "ties are rare")
        }
        // The ends and zero.
        XCTAssertEqual(AdamW8bit.quantize(1, codebook: DynamicMap.signed, signed: true), 255)
        XCTAssertEqual(AdamW8bit.quantize(-1, codebook: DynamicMap.signed, signed: true), 0)
        XCTAssertEqual(DynamicMap.signed[Int(AdamW8bit.quantize(0, codebook: DynamicMap.signed, signed: true))], 0)
        XCTAssertEqual(AdamW8bit.quantize(0, codebook: DynamicMap.unsigned, signed: false), 0)
        XCTAssertEqual(AdamW8bit.quantize(.nan, codebook: DynamicMap.signed, signed: true), 0, "0/0 of an all-zero block")
    }

    /// An all-zero gradient on a fresh state (LoRA A's first step): every block's max is 0, so s/max
    /// is 0/0 = NaN, which bnb's search maps to code 0 (−1.0); its sign fix then moves the code of
    /// +0 to 0 − 1 = 255 (uint8 wraps). The parameters only decay. With absmax 0 these codes mean 0,
    /// so the next step starts from zero moments as a fresh state would.
    func testAllZeroGradientGivesCode255AndOnlyDecays() throws {
        let cpu = CPUBackend()
        let n = 4096 + 300
        var g = SplitMix64(seed: 2)
        let initial = (0..<n).map { _ in g.uniform(in: -1..<1) }
        let p = try cpu.upload(initial, [n], .f32)
        let state = try AdamW8bitState.zeros(for: p)
        guard case let .quantized(codes1, codes2, absmax1, absmax2) = state else { return XCTFail("4396 elements are 8-bit") }
        let hyper = AdamWHyper(lr: 1e-3, weightDecay: 0.01)
        cpu.adamw8bit(parameter: p, gradient: try cpu.zeros([n], .f32), state: state, step: 1, hyper: hyper)
        XCTAssertEqual(Set(cpu.downloadBytes(codes1)), [255])
        XCTAssertEqual(Set(cpu.downloadBytes(codes2)), [0])
        XCTAssertEqual(Set(cpu.download(absmax1) + cpu.download(absmax2)), [0])
        XCTAssertEqual(cpu.download(p), initial.map { $0 * (1 - hyper.lr * hyper.weightDecay) })

        // Step 2 with a gradient: the same moments as a fresh state's first update would hold.
        let gradient = (0..<n).map { _ in g.uniform(in: -0.01..<0.01) }
        cpu.adamw8bit(parameter: p, gradient: try cpu.upload(gradient, [n], .f32), state: state, step: 2, hyper: hyper)
        let fresh = try AdamW8bitState.zeros(for: p)
        cpu.adamw8bit(parameter: try cpu.upload(initial, [n], .f32), gradient: try cpu.upload(gradient, [n], .f32),
                      state: fresh, step: 2, hyper: hyper)
        for (ours, theirs) in zip(state.tensors, fresh.tensors) {
            XCTAssertEqual(cpu.downloadBytes(ours.tensor), cpu.downloadBytes(theirs.tensor), ours.suffix)
        }
    }

    static var cpuFixture: URL {
        get throws {
            try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
                .appendingPathComponent("bnb/adamw8bit_cpu.safetensors")
        }
    }

    /// Against the real bitsandbytes 0.50.2, run on the CPU (Fixtures/bnb/adamw8bit_cpu.safetensors, from
    /// scripts/make_adamw8bit_fixtures.py): 5 steps, lr 1e-3, weight decay 0.01, on a 3000-element tensor
    /// (32-bit state), a 5000-element one (8-bit, last block partial) and a 4096-element one whose first
    /// gradient is all zero. This is the replay `swiftlet doctor --adamw8bit-fixture` runs: each step
    /// from bnb's own state after the step before, and the free-running trajectory.
    ///
    /// Not bit-equal, because bnb's CPU backend is not the CUDA kernel we follow (scripts/check_adamw8bit_bnb.py
    /// checks that one, on a GPU, with tight bounds):
    /// - it computes with Python-double hyperparameters: 1 − β₂ is 0.001 there, 9.99987e-4 from float32
    ///   β₂ in the kernel, so second moments and their absmax differ by 1.3e-5 relative;
    /// - its C++ quantizer is coarse near zero: values under about 3e-5 of the block's absmax often get
    ///   code 7 (1.56e-5) where the nearest is 0…8, so a few percent of the second moment's codes differ
    ///   by up to 7 indices while their values differ by < 3e-5 of the absmax;
    /// - it has no first-moment sign fix, decays the weights before the step rather than after, and codes
    ///   an all-zero block 0 where the kernel gives 255 (both mean 0 with absmax 0: counted apart, and all
    ///   4096 codes of the all-zero first step must show it).
    /// Hence per step: parameters within 1e-5 relative (of the largest), 32-bit moments and absmax within
    /// 2e-5, codes equal in ≥ 95% of entries, dequantized moments within one code step at the top of the
    /// code book (2e-2 of the largest). Over the free trajectory a differently rounded small second moment
    /// changes later steps (the code book is sparse there), so there parameters are within 1e-3.
    func testReplayMatchesBitsandbytes() throws {
        let fixture = try AdamW8bitReplay.Fixture(url: try Self.cpuFixture)
        XCTAssertEqual(fixture.names, ["small", "large", "lora_a"])
        XCTAssertEqual(fixture.steps, 5)
        let results = try AdamW8bitReplay.run(fixture, on: CPUBackend())
        XCTAssertEqual(results.map(\.quantized), [false, true, true])
        for r in results {
            XCTAssertLessThanOrEqual(r.paramMaxRelative, 1e-5, "\(r)")
            XCTAssertLessThanOrEqual(r.trajectoryParamMaxRelative, 1e-3, "\(r)")
            if r.quantized {
                XCTAssertLessThanOrEqual(Double(r.state1Mismatches + r.state2Mismatches), 0.05 * Double(2 * r.count), "\(r)")
                XCTAssertLessThanOrEqual(r.state1MaxRelative, 2e-2, "\(r)")
                XCTAssertLessThanOrEqual(r.state2MaxRelative, 2e-2, "\(r)")
                XCTAssertLessThanOrEqual(r.absmaxMaxRelative, 2e-5, "\(r)")
                XCTAssertEqual(r.zeroBlockCodeMismatches, r.name == "lora_a" ? r.count : 0, "\(r)")
            } else {
                XCTAssertLessThanOrEqual(r.state1MaxRelative, 2e-5, "\(r)")
                XCTAssertLessThanOrEqual(r.state2MaxRelative, 2e-5, "\(r)")
            }
        }
        // The comparison can fail: other hyperparameters move parameters and states beyond the bounds.
        var wrong = fixture
        wrong.hyper.lr *= 1.5
        wrong.hyper.beta1 = 0.8
        for r in try AdamW8bitReplay.run(wrong, on: CPUBackend()) {
            XCTAssertGreaterThan(r.paramMaxRelative, 1e-5, r.name)
            XCTAssertGreaterThan(r.state1MaxRelative, 2e-2, r.name)
        }
        // The doctor prints these as JSON.
        let json = try JSONEncoder().encode(results)
        XCTAssertEqual(try JSONDecoder().decode([AdamW8bitReplay.TensorResult].self, from: json), results)
    }

    // MARK: Training and checkpoints

    /// hidden 256 and r 16, so the A matrices and the q/o B matrices (4096 elements) take 8-bit state
    /// and the k/v B and MLP B matrices (< 4096) 32-bit state.
    static let config = LlamaConfig(vocabSize: 64, hiddenSize: 256, intermediateSize: 48, layers: 2, heads: 4, kvHeads: 2,
                                    rmsNormEps: 1e-5, maxPositionEmbeddings: 64)

    func model(loraSeed: UInt64 = 11) throws -> LlamaModel {
        let m = try LlamaModel.random(config: Self.config, seed: 3, on: CPUBackend())
        try m.addLoRA(LoRAConfig(r: 16, alpha: 16, dropout: 0.1), seed: loraSeed)
        return m
    }

    func data(_ count: Int = 22) -> [Example] {
        var g = SplitMix64(seed: 5)
        return (0..<count).map { i in
            let start = Int32(g.next() % 64)
            return Example(inputIds: (0..<(8 + i % 5)).map { (start + Int32($0)) % 64 })
        }
    }

    func arguments(steps: Int = 10, optimizer: TrainingArguments.OptimizerKind = .adamw8bit) -> TrainingArguments {
        var a = TrainingArguments()
        a.batchSize = 3
        a.gradientAccumulation = 2
        a.maxSteps = steps
        a.learningRate = 1e-2
        a.scheduler = .cosine
        a.warmupSteps = 2
        a.weightDecay = 0.05
        a.optimizer = optimizer
        return a
    }

    func weights(_ m: LlamaModel) -> [[Float]] { m.adapters.flatMap { [m.backend.download($0.a), m.backend.download($0.b)] } }

    func testTrainingReducesTheLossWithBothStateKinds() throws {
        let m = try model()
        let t = try Trainer(model: m, examples: data(), arguments: arguments(steps: 15))
        let kinds = t.optimizer.adamW8bitStates.map { if case .quantized = $0 { return true } else { return false } }
        XCTAssertTrue(kinds.contains(true) && kinds.contains(false), "both paths run")
        var losses: [Double] = []
        try t.train(onStep: { losses.append($0.loss) })
        XCTAssertFalse(losses.contains { !$0.isFinite })
        XCTAssertLessThan(losses.suffix(3).reduce(0, +) / 3, losses[0] - 0.15, "\(losses)")
    }

    func testResumeIsBitIdenticalToTrainingStraight() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("swiftlet-adamw8bit-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let straight = try model()
        try Trainer(model: straight, examples: data(), arguments: arguments()).train()
        let expected = weights(straight)

        let first = try model()
        let t1 = try Trainer(model: first, examples: data(), arguments: arguments())
        XCTAssertFalse(try t1.train(stopWhen: { t1.globalStep == 5 }))
        let checkpoint = try t1.saveCheckpoint(to: directory)

        // optimizer.safetensors holds bnb's state: u8 codes and f32 absmax, or f32 moments for small tensors.
        let file = try SafetensorsFile(url: checkpoint.appendingPathComponent("optimizer.safetensors"))
        XCTAssertEqual(file.metadata["optimizer"], "adamw_8bit")
        let a = first.adapters[0]
        XCTAssertEqual(try file.info(a.peftNameA + ".state1").dtype, .u8)
        XCTAssertEqual(try file.info(a.peftNameA + ".absmax2").shape, [16])
        let small = try XCTUnwrap(first.adapters.first { $0.b.count < AdamW8bit.minimumSize })
        XCTAssertEqual(try file.info(small.peftNameB + ".exp_avg").dtype, .f32)

        let resumed = try model(loraSeed: 99)
        let t2 = try Trainer(model: resumed, examples: data(), arguments: arguments())
        try t2.resume(from: checkpoint)
        XCTAssertTrue(try t2.train())
        XCTAssertEqual(weights(resumed), expected, "5 + resume + 5 vs 10 straight")

        // The comparison can fail: without the restored 8-bit state the run ends elsewhere.
        let stateless = try model(loraSeed: 99)
        let t3 = try Trainer(model: stateless, examples: data(), arguments: arguments())
        try t3.resume(from: checkpoint)
        for state in t3.optimizer.adamW8bitStates {
            for (_, tensor) in state.tensors { tensor.backend.copy(try tensor.backend.zeros(tensor.shape, tensor.dtype), into: tensor) }
        }
        try t3.train()
        XCTAssertNotEqual(weights(stateless), expected)

        // Another optimizer's checkpoint is refused by name, both ways.
        let t4 = try Trainer(model: try model(), examples: data(), arguments: arguments(optimizer: .adamw))
        XCTAssertThrowsError(try t4.resume(from: checkpoint)) {
            XCTAssertTrue("\($0)".contains("optimizer adamw_8bit -> adamw"), "\($0)")
        }
        let t5 = try Trainer(model: try model(), examples: data(), arguments: arguments(steps: 1, optimizer: .adamw))
        try t5.train()
        let adamwCheckpoint = try t5.saveCheckpoint(to: directory.appendingPathComponent("adamw"))
        let t6 = try Trainer(model: try model(), examples: data(), arguments: arguments(steps: 1))
        XCTAssertThrowsError(try t6.resume(from: adamwCheckpoint)) {
            XCTAssertTrue("\($0)".contains("optimizer adamw -> adamw_8bit"), "\($0)")
        }
    }

    func testOptimizerNamesIncludeHFsAlias() {
        XCTAssertEqual(TrainingArguments.OptimizerKind(name: "adamw_8bit"), .adamw8bit)
        XCTAssertEqual(TrainingArguments.OptimizerKind(name: "adamw_bnb_8bit"), .adamw8bit)
        XCTAssertEqual(TrainingArguments.OptimizerKind(name: "adamw"), .adamw)
        XCTAssertNil(TrainingArguments.OptimizerKind(name: "adamw8bit"))
    }
}
