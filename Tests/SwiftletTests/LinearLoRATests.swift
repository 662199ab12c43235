import XCTest
@testable import Swiftlet

/// The LoRA linear layer's backward on the CPU backend. L = Σ w ⊙ y is linear in x, in A and in B
/// separately, so central differences with step 1 are exact up to Float32 rounding.
final class LinearLoRATests: XCTestCase {
    let backend = CPUBackend()
    var generator = SplitMix64(seed: 99)

    func random(_ shape: Shape) throws -> Tensor {
        try backend.upload((0..<shape.count).map { _ in generator.uniform(in: -1..<1) }, shape, .f32)
    }

    func check(dropout: Float, bias: Bool) throws {
        let tokens = 5, inF = 6, outF = 4, r = 3
        let adapter = try LoRAAdapter(module: "m", a: random([r, inF]), b: random([outF, r]), scaling: 0.7, dropout: dropout)
        let layer = Linear(weight: try random([outF, inF]), bias: bias ? try random([outF]) : nil, lora: adapter)
        let x = try random([tokens, inF]), w = try random([tokens, outF])
        let seed: UInt64 = 5
        func loss() throws -> Double {
            let y = try layer.forward(x, dropoutSeed: seed).0
            return zip(backend.download(y), backend.download(w)).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        let (_, saved) = try layer.forward(x, dropoutSeed: seed)
        let dX = try layer.backward(w, saved: saved, accumulateInto: nil)
        for (tensor, gradient) in [(x, dX), (adapter.a, adapter.gradA), (adapter.b, adapter.gradB)] {
            let analytic = backend.download(gradient)
            for i in 0..<tensor.count {
                let original = tensor.floats[i]
                tensor.floats[i] = original + 1
                let plus = try loss()
                tensor.floats[i] = original - 1
                let minus = try loss()
                tensor.floats[i] = original
                XCTAssertEqual(Double(analytic[i]), (plus - minus) / 2, accuracy: 1e-4, "element \(i) of \(tensor.shape)")
            }
        }
        if dropout > 0 {
            XCTAssertNotNil(saved.dropoutMask)
            let mask = backend.download(saved.dropoutMask!)
            XCTAssertTrue(mask.contains(0) && mask.contains(1 / (1 - dropout)), "the mask drops some and keeps some")
        }
    }

    func testBackwardWithoutDropout() throws { try check(dropout: 0, bias: false) }
    func testBackwardWithDropoutAndBias() throws { try check(dropout: 0.4, bias: true) }

    /// The decoder's down_proj gives its dead input's storage to dL/dx: the same gradients, bit for bit,
    /// with the LoRA terms that read the input moved ahead of the GEMM that overwrites it.
    func testBackwardOverwritingItsInputKeepsTheBits() throws {
        let tokens = 7, inF = 16, outF = 8, r = 8
        let adapter = try LoRAAdapter(module: "m", a: random([r, inF]), b: random([outF, r]), scaling: 0.5, dropout: 0)
        let layer = Linear(weight: try random([outF, inF]), lora: adapter)
        let x = try random([tokens, inF]), dY = try random([tokens, outF])
        let (_, saved) = try layer.forward(x)
        let dX = try layer.backward(dY, saved: saved, accumulateInto: nil)
        let expected = (backend.download(dX), backend.download(adapter.gradA), backend.download(adapter.gradB))
        adapter.zeroGradients()
        let copy = try backend.empty(x.shape, .f32)
        backend.copy(x, into: copy)
        let (_, savedCopy) = try layer.forward(copy)
        let reused = try layer.backward(dY, saved: savedCopy, accumulateInto: nil, overwritingInput: true)
        XCTAssertTrue(reused.buffer === copy.buffer, "dL/dx took the input's storage")
        XCTAssertEqual(backend.download(reused), expected.0)
        XCTAssertEqual(backend.download(adapter.gradA), expected.1)
        XCTAssertEqual(backend.download(adapter.gradB), expected.2)
    }

    func testFreshAdapterStartsAtTheBaseModel() throws {
        var g = SplitMix64(seed: 1)
        let adapter = try LoRAAdapter.initialized(module: "m", inFeatures: 16, outFeatures: 4,
                                                  config: LoRAConfig(r: 8, alpha: 16), generator: &g, on: backend)
        XCTAssertEqual(backend.download(adapter.b), [Float](repeating: 0, count: 32))
        let a = backend.download(adapter.a)
        XCTAssertTrue(a.allSatisfy { abs($0) <= 0.25 }, "kaiming-uniform(a=√5) bound is 1/√in")
        XCTAssertGreaterThan(a.map(abs).max()!, 0.2)
        XCTAssertEqual(LoRAConfig(r: 16, alpha: 32).scaling, 2)
        XCTAssertEqual(LoRAConfig(r: 16, alpha: 32, useRSLoRA: true).scaling, 8)
    }
}

/// Gradient checkpointing recomputes each layer from its saved input (kept on the device, or
/// offloaded to host memory and reloaded): the gradients must be the same bits as with every
/// activation kept (dropout on, so the masks must be redrawn identically), and each mode must
/// lower the backend's peak memory below the previous one.
final class GradientCheckpointingTests: XCTestCase {
    func testCheckpointedGradientsAreBitIdenticalAndPeaksFall() throws {
        let llama = LlamaConfig(vocabSize: 64, hiddenSize: 64, intermediateSize: 96, layers: 6, heads: 4, kvHeads: 2,
                                rmsNormEps: 1e-5, maxPositionEmbeddings: 64)
        // Gemma's switches: the recomputed layers must get their own window and RoPE again (forLayer).
        var gemma = llama
        gemma.modelType = .gemma3Text
        gemma.activation = .geluTanh
        gemma.normWeightOffset = 1
        gemma.scalesEmbeddings = true
        gemma.sandwichNorms = true
        gemma.qkNorm = true
        gemma.attentionSoftcap = 1.5
        gemma.finalLogitSoftcap = 3
        gemma.slidingWindow = 8
        gemma.slidingLayers = [true, false, true, true, false, true]
        gemma.rope = RoPEScaling(theta: 1e6, kind: .linear(factor: 4))
        gemma.localRope = RoPEScaling(theta: 1e4)
        for config in [llama, gemma] { try checkCheckpointing(config) }
    }

    func checkCheckpointing(_ config: LlamaConfig) throws {
        var results: [[Float]] = []
        var losses: [Double] = []
        var peaks: [Int] = []
        for mode in GradientCheckpointing.allCases {
            let backend = CPUBackend()
            let model = try LlamaModel.random(config: config, seed: 5, std: 0.1, on: backend)
            try model.addLoRA(LoRAConfig(r: 4, alpha: 8, dropout: 0.2), seed: 1)
            for adapter in model.adapters { model.backend.fillUniform(adapter.b, seed: 9, bound: 0.1) }
            model.gradientCheckpointing = mode
            var g = SplitMix64(seed: 3)
            let batch = Batch(examples: (0..<3).map { _ in Example(inputIds: (0..<40).map { _ in Int32(g.next() % 64) }) })
            let before = backend.memory.current
            backend.memory.resetPeak()
            losses.append(try model.step(batch, gradScale: 0.1, dropoutSeed: 77))
            peaks.append(backend.memory.peak - before)
            results.append(model.adapters.flatMap { model.backend.download($0.gradA) + model.backend.download($0.gradB) })
        }
        XCTAssertEqual(losses[0], losses[1])
        XCTAssertEqual(losses[0], losses[2])
        XCTAssertEqual(results[0], results[1])
        XCTAssertEqual(results[0], results[2])
        XCTAssertTrue(results[0].contains { $0 != 0 })
        XCTAssertLessThan(peaks[1], peaks[0], "checkpointing should keep fewer activations")
        XCTAssertLessThan(peaks[2], peaks[1], "offloading should keep the layer inputs off the backend")
    }
}

/// The checkpoint planner keeps the last layers whole as far as a memory budget allows: same bits,
/// a peak between full checkpointing and none, and within the budget it was given.
final class CheckpointPlannerTests: XCTestCase {
    func testLayersToKeepFillTheRoomAboveThePeak() {
        XCTAssertEqual(CheckpointPlanner.layersToKeep(budgetBytes: 100, checkpointedPeakBytes: 120, layerActivationBytes: 10, layers: 6), 0)
        XCTAssertEqual(CheckpointPlanner.layersToKeep(budgetBytes: 145, checkpointedPeakBytes: 120, layerActivationBytes: 10, layers: 6), 2)
        XCTAssertEqual(CheckpointPlanner.layersToKeep(budgetBytes: 10_000, checkpointedPeakBytes: 120, layerActivationBytes: 10, layers: 6), 6)
        XCTAssertEqual(CheckpointPlanner.layersToKeep(budgetBytes: 10_000, checkpointedPeakBytes: 120, layerActivationBytes: 0, layers: 6), 0)
    }

    func testPlannedModelKeepsItsBitsAndItsBudget() throws {
        let config = LlamaConfig(vocabSize: 64, hiddenSize: 64, intermediateSize: 96, layers: 6, heads: 4, kvHeads: 2,
                                 rmsNormEps: 1e-5, maxPositionEmbeddings: 64)
        var g = SplitMix64(seed: 3)
        let batch = Batch(examples: (0..<3).map { _ in Example(inputIds: (0..<40).map { _ in Int32(g.next() % 64) }) })
        func run(_ mode: GradientCheckpointing, budget: ((Int, Int) -> Int)? = nil) throws -> (grads: [Float], peak: Int, kept: Int) {
            let backend = CPUBackend()
            let model = try LlamaModel.random(config: config, seed: 5, std: 0.1, on: backend)
            try model.addLoRA(LoRAConfig(r: 4, alpha: 8, dropout: 0.2), seed: 1)
            for adapter in model.adapters { model.backend.fillUniform(adapter.b, seed: 9, bound: 0.1) }
            model.gradientCheckpointing = mode
            let before = backend.memory.current
            backend.memory.resetPeak()
            _ = try model.step(batch, gradScale: 0.1, dropoutSeed: 77)
            if let budget {
                // plan from the checkpointed step, then measure a second step with the plan
                let checkpointedPeak = backend.memory.peak
                let budgetBytes = budget(checkpointedPeak, model.layerActivationBytes)
                CheckpointPlanner.plan(model, budgetBytes: budgetBytes, checkpointedPeakBytes: checkpointedPeak)
                for adapter in model.adapters { backend.zero([adapter.gradA, adapter.gradB]) }
                backend.memory.resetPeak()
                _ = try model.step(batch, gradScale: 0.1, dropoutSeed: 77)
                XCTAssertLessThanOrEqual(backend.memory.peak, budgetBytes, "the planned step stays within its budget")
            }
            let grads = model.adapters.flatMap { model.backend.download($0.gradA) + model.backend.download($0.gradB) }
            return (grads, backend.memory.peak - before, model.layersKeptWhole)
        }
        let off = try run(.off), on = try run(.on)
        // room for two and a half layers above the checkpointed peak
        let planned = try run(.on) { peak, layer in peak + 5 * layer / 2 }
        XCTAssertEqual(planned.kept, 2)
        XCTAssertEqual(planned.grads, off.grads)
        XCTAssertEqual(planned.grads, on.grads)
        XCTAssertGreaterThan(planned.peak, on.peak, "kept layers hold their activations")
        XCTAssertLessThan(planned.peak, off.peak, "the first layers are still checkpointed")
    }
}

/// Linears sharing their input (q, k, v) run their adapters' products as a group (one read of x on a
/// GPU): the same outputs and gradients as each linear on its own, within f32 rounding (dL/dx adds
/// the frozen and the low-rank parts in another order).
final class ProjectionGroupLoRATests: XCTestCase {
    func testGroupedAdaptersMatchEachLinearOnItsOwn() throws {
        let backend = CPUBackend()
        var g = SplitMix64(seed: 11)
        func random(_ shape: Shape, _ scale: Float = 1) throws -> Tensor {
            try backend.upload((0..<shape.count).map { _ in scale * (Float(g.next() % 2001) / 1000 - 1) }, shape, .f32)
        }
        let tokens = 37, k = 48
        let parts = try [(32, 8), (16, 8), (16, 16)].enumerated().map { i, shape in
            Linear(weight: try random([shape.0, k], 0.2),
                   lora: try LoRAAdapter(module: "part\(i)", a: try random([shape.1, k], 0.2),
                                         b: try random([shape.0, shape.1], 0.2), scaling: 1.5, dropout: 0))
        }
        let x = try random([tokens, k])
        let dY = try parts.map { try random([tokens, $0.outFeatures]) }
        // Grouped.
        let group = ProjectionGroup.separate(parts)
        let (ys, saved) = try group.forward(x) { _ in nil }
        XCTAssertNotNil(ProjectionGroup.fusedAdapters(parts) { _ in nil })
        let dX = try group.backward(dY, saved: saved)
        let grouped = (ys.map(backend.download), backend.download(dX),
                       parts.map { backend.download($0.lora!.gradA) + backend.download($0.lora!.gradB) })
        for part in parts { backend.zero([part.lora!.gradA, part.lora!.gradB]) }
        // Each linear on its own.
        let single = try parts.map { try $0.forward(x) }
        let dXSingle = try parts[0].backward(dY[0], saved: single[0].1, accumulateInto: nil)
        for i in 1..<parts.count { try parts[i].backward(dY[i], saved: single[i].1, accumulateInto: dXSingle) }
        let alone = (single.map { backend.download($0.0) }, backend.download(dXSingle),
                     parts.map { backend.download($0.lora!.gradA) + backend.download($0.lora!.gradB) })
        func close(_ a: [Float], _ b: [Float], _ what: String) {
            XCTAssertEqual(a.count, b.count, what)
            let scale = b.map(abs).max() ?? 1
            let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(worst, 1e-5 * scale, what)
            XCTAssertTrue(a.allSatisfy(\.isFinite), what)
        }
        for i in parts.indices {
            close(grouped.0[i], alone.0[i], "output \(i)")
            close(grouped.2[i], alone.2[i], "LoRA gradients \(i)")
            XCTAssertTrue(grouped.2[i].contains { $0 != 0 })
        }
        close(grouped.1, alone.1, "dL/dx")
    }
}

/// The fused forward allocates its output and z, nothing more (a second, unused output once doubled a
/// linear's transient memory).
final class LinearMemoryTests: XCTestCase {
    func testFusedForwardAllocatesOnlyItsOutputAndZ() throws {
        let backend = CPUBackend()
        let (tokens, k, out, r) = (64, 48, 96, 8)
        let linear = Linear(weight: try backend.zeros([out, k], .f32),
                            lora: try LoRAAdapter(module: "q", a: try backend.zeros([r, k], .f32),
                                                  b: try backend.zeros([out, r], .f32), scaling: 2, dropout: 0))
        let x = try backend.zeros([tokens, k], .f32)
        let before = backend.memory.requestedCurrent
        backend.memory.resetPeak()
        let (y, saved) = try linear.forward(x)
        let expected = MemoryCounter.rounded(4 * tokens * out) + MemoryCounter.rounded(4 * tokens * r)
        XCTAssertEqual(backend.memory.requestedCurrent - before, expected)
        XCTAssertEqual(backend.memory.requestedPeak - before, expected)
        XCTAssertEqual(y.shape, [tokens, out])
        XCTAssertNotNil(saved.lowRank)
    }
}
