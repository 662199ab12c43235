/// Mixtral's and Qwen3-MoE's sparse MLP, as transformers 5 computes it:
///
///     p = softmax(router(x)) (f32)     chosen, w = top-k of p (w renormalised to sum 1 if asked)
///     y[t] = Σ_j w[t, j] · expert_{chosen[t, j]}(x[t])
///
/// Not a loop over tokens: the (token, slot) assignments are sorted by expert (`moeSort`), the
/// tokens gathered into one buffer where each expert's rows are contiguous (`moeGather`), every
/// expert's gate_up, then every expert's down, runs on its block of rows as one op of the backend
/// for all experts (`ExpertLinears`: the GEMMs and the LoRA products over the blocks; the gated unit
/// once over all rows), and `moeCombine` adds each token's k results back with their weights (a
/// per-token gather: deterministic, no atomics). The per-expert row counts are read back to the host
/// once per layer, to size the blocks. Experts that cannot run together (`ExpertLinears.init`), and
/// `SWIFTLET_MOE_GROUPED=0`, run expert by expert as `GatedMLP`s on their blocks: the same bits.
///
/// The backward runs the same blocks in reverse and also carries the gradient through the routing
/// weights into the router's input: the router's weight is frozen (unless LoRA targets it, as PEFT's
/// `gate`), but x still gets router.backward(dLogits). With the load-balancing loss on, dL/dp of every
/// token adds the loss's gradient (StepContext.routerAuxGradient).
public struct MixtureOfExperts {
    /// [experts, hidden]: the logits' linear (transformers' `mlp.gate`).
    public var router: Linear
    public var experts: [GatedMLP]
    public var config: MixtureOfExpertsConfig

    public init(router: Linear, experts: [GatedMLP], config: MixtureOfExpertsConfig) {
        precondition(router.outFeatures == experts.count && experts.count == config.experts,
                     "router of \(router.outFeatures) outputs for \(experts.count) experts")
        self.router = router
        self.experts = experts
        self.config = config
    }

    /// The router, then each expert's gate_up and down.
    public var linears: [Linear] { [router] + experts.flatMap(\.linears) }

    mutating func updateLinears(_ body: (inout Linear) throws -> Void) rethrows {
        try body(&router)
        for e in experts.indices {
            try experts[e].gateUp.updateLinears(body)
            try body(&experts[e].down)
        }
    }

    /// Every expert's gate_up (fused, as transformers 5 holds them: gate | up, equal halves) and every
    /// expert's down, each as one `ExpertLinears`; nil where they cannot run together.
    var together: (gateUp: ExpertLinears, down: ExpertLinears)? {
        guard Self.runsTogether else { return nil }
        var gateUps: [Linear] = []
        for expert in experts {
            guard case let .fused(linear, parts) = expert.gateUp, parts.count == 2, parts[0] == parts[1] else { return nil }
            gateUps.append(linear)
        }
        guard let gateUp = ExpertLinears(gateUps), let down = ExpertLinears(experts.map(\.down)) else { return nil }
        return (gateUp, down)
    }

    /// `SWIFTLET_MOE_GROUPED=0` runs the experts one by one (for comparisons).
    nonisolated(unsafe) static var runsTogether = CUDALibrarySearch.processEnvironment["SWIFTLET_MOE_GROUPED"] != "0"

    /// The experts' saved activations: each expert's own, or all experts' together.
    enum ExpertsSaved {
        case each([GatedMLP.Saved?])
        /// gate_up's output (gate | up), the gated unit's input, and the two linears' saved activations.
        case together(gateUpOutput: Tensor, gateUp: ExpertLinears.Saved, down: ExpertLinears.Saved)
    }

    struct Saved {
        var routerSaved: Linear.Saved
        var probabilities, chosen, weights, rows: Tensor
        /// Rows per expert (on the host).
        var counts: [Int]
        var expertSaved: ExpertsSaved
        /// The experts' outputs in sorted order, before weighting: dL/dweights needs them.
        var sortedOutput: Tensor
        /// [2, experts] f32: the layer's load-balancing counts and probability sums (training only).
        var statistics: Tensor?
    }

    func forward(_ x: Tensor, _ step: StepContext) throws -> (Tensor, Saved) {
        let backend = x.backend, tokens = x.shape[0], hidden = x.shape[1]
        let k = config.topK, e = config.experts
        let (logits, routerSaved) = try router.forward(x)
        let probabilities = try backend.empty([tokens, e], .f32)
        let chosen = try backend.empty([tokens, k], .i32)
        let weights = try backend.empty([tokens, k], .f32)
        backend.moeRoute(logits: logits, topK: k, normalize: config.normalizeTopK, probabilities: probabilities,
                         experts: chosen, weights: weights)
        // In training the layout's sequence ids mark each token's padding; generation's layout holds
        // the cache's validity instead, and generation needs no statistics.
        var statistics: Tensor?
        if step.layout.sequenceIds.count == tokens {
            let s = try backend.empty([2, e], .f32)
            backend.moeRouterStatistics(probabilities: probabilities, experts: chosen,
                                        sequenceIds: step.layout.sequenceIds, into: s)
            statistics = s
        }

        let countsTensor = try backend.empty([e], .i32)
        let rows = try backend.empty([tokens * k], .i32)
        backend.moeSort(experts: chosen, expertCount: e, counts: countsTensor, rows: rows)
        let sorted = try backend.empty([tokens * k, hidden], backend.computeType)
        backend.moeGather(x, rows: rows, into: sorted)
        let counts = backend.downloadInts(countsTensor).map(Int.init)   // the one read-back of the layer

        // PEFT refuses dropout on expert parameters (ParamWrapper), so no seeds here.
        let blocks = ExpertBlocks.blocks(counts: counts)
        let sortedOutput: Tensor, expertSaved: ExpertsSaved
        if let (gateUp, down) = together {
            // the gated unit reads gate and up where gate_up wrote them, side by side: no copies
            let (gu, gateUpSaved) = try gateUp.forward(sorted, blocks: blocks)
            let m = try backend.empty([tokens * k, gateUp.outFeatures / 2], backend.computeType)
            backend.gatedLinearUnit(step.config.activation, gateUp: gu, into: m)
            let downSaved: ExpertLinears.Saved
            (sortedOutput, downSaved) = try down.forward(m, blocks: blocks)
            expertSaved = .together(gateUpOutput: gu, gateUp: gateUpSaved, down: downSaved)
        } else {
            sortedOutput = try backend.empty([tokens * k, hidden], backend.computeType)
            var each: [GatedMLP.Saved?] = Array(repeating: nil, count: e)
            for (i, block) in blocks.enumerated() where !block.isEmpty {
                let (y, s) = try experts[i].forward(sorted.rows(block), activation: step.config.activation) { _ in nil }
                backend.copy(y!, into: sortedOutput.rows(block))
                each[i] = s
            }
            expertSaved = .each(each)
        }
        let out = try backend.empty([tokens, hidden], backend.computeType)
        backend.moeCombine(sortedOutput, rows: rows, weights: weights, into: out)
        return (out, Saved(routerSaved: routerSaved, probabilities: probabilities, chosen: chosen, weights: weights,
                           rows: rows, counts: counts, expertSaved: expertSaved, sortedOutput: sortedOutput,
                           statistics: statistics))
    }

    /// dL/dx (a fresh tensor): through the experts and through the routing weights and the router.
    func backward(_ dOut: Tensor, saved s: Saved, _ step: StepContext) throws -> Tensor {
        let backend = dOut.backend, tokens = dOut.shape[0], hidden = dOut.shape[1], k = config.topK
        let dSorted = try backend.empty([tokens * k, hidden], backend.computeType)
        let dWeights = try backend.empty([tokens, k], .f32)
        backend.moeCombineBackward(dOut: dOut, sorted: s.sortedOutput, rows: s.rows, weights: s.weights,
                                   dSorted: dSorted, dWeights: dWeights)
        let blocks = ExpertBlocks.blocks(counts: s.counts)
        let dInputSorted: Tensor
        switch s.expertSaved {
        case let .together(gu, gateUpSaved, downSaved):
            guard let (gateUp, down) = together else { preconditionFailure("experts saved together, run apart") }
            // As GatedMLP.backward: dL/dm in m's storage, the gated unit's gradients over gate | up.
            let dM = try down.backward(dSorted, blocks: blocks, saved: downSaved, overwritingInput: true)
            backend.gatedLinearUnitBackward(step.config.activation, dOut: dM, gateUp: gu, dGateUp: gu)
            dInputSorted = try gateUp.backward(gu, blocks: blocks, saved: gateUpSaved, overwritingInput: false)
        case let .each(each):
            dInputSorted = try backend.empty([tokens * k, hidden], backend.computeType)
            for (i, block) in blocks.enumerated() where !block.isEmpty {
                guard let saved = each[i] else { continue }
                let dX = try experts[i].backward(dSorted.rows(block), saved: saved, activation: step.config.activation)
                backend.copy(dX, into: dInputSorted.rows(block))
            }
        }
        let dX = try backend.empty([tokens, hidden], backend.computeType)
        backend.moeCombine(dInputSorted, rows: s.rows, weights: nil, into: dX)
        let dLogits = try backend.empty([tokens, config.experts], backend.computeType)
        backend.moeRouteBackward(dWeights: dWeights, probabilities: s.probabilities, experts: s.chosen,
                                 normalize: config.normalizeTopK, auxGradient: step.routerAuxGradient,
                                 sequenceIds: step.routerAuxGradient == nil ? nil : step.layout.sequenceIds, into: dLogits)
        try router.backward(dLogits, saved: s.routerSaved, accumulateInto: dX)
        return dX
    }
}
