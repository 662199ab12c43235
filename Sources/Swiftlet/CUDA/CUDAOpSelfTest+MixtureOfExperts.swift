/// The doctor's check of the mixture-of-experts ops (CUDA/Kernels/MixtureOfExpertsKernels.swift)
/// against CPU/ExpertRouting.swift, at Mixtral's shape (8 experts, top-2, renormalised) and Qwen3-MoE
/// 30B-A3B's (128 experts, top-8, not renormalised), with padding in the load-balancing statistics.
/// Expert choices, counts and sorted rows must be identical; gather is a copy (exact).
extension CUDAOpSelfTest {
    mutating func mixtureOfExperts() throws {
        try mixtureOfExpertsCase("Mixtral: 4096 tokens, 8 experts, top-2, renormalised, hidden 4096", tokens: 4096, experts: 8,
                                 topK: 2, normalize: true, hidden: 4096, timed: true)
        try mixtureOfExpertsCase("Qwen3-30B-A3B: 1000 tokens, 128 experts, top-8, hidden 2048", tokens: 1000, experts: 128,
                                 topK: 8, normalize: false, hidden: 2048)
        try mixtureOfExpertsCase("odd: 37 tokens, 5 experts, top-3, hidden 300", tokens: 37, experts: 5, topK: 3,
                                 normalize: true, hidden: 300)
    }

    mutating func checkInts(_ name: String, gpu g: Tensor, cpu c: Tensor) {
        let same = gpu.downloadInts(g) == cpu.downloadInts(c)
        verdict(same, name, same ? "identical" : "DIFFER")
    }

    mutating func mixtureOfExpertsCase(_ label: String, tokens: Int, experts: Int, topK k: Int, normalize: Bool,
                                       hidden: Int, timed: Bool = false) throws {
        say("mixture of experts \(label):")
        // Router: logits in the storage type, as the router's GEMM leaves them.
        let logits = try pair([tokens, experts], storage, in: -3...3)
        let probabilities = try output([tokens, experts], .f32), weights = try output([tokens, k], .f32)
        let chosen = (cpu: try cpu.zeros([tokens, k], .i32), gpu: try gpu.zeros([tokens, k], .i32))
        cpu.moeRoute(logits: logits.cpu, topK: k, normalize: normalize, probabilities: probabilities.cpu, experts: chosen.cpu, weights: weights.cpu)
        gpu.moeRoute(logits: logits.gpu, topK: k, normalize: normalize, probabilities: probabilities.gpu, experts: chosen.gpu, weights: weights.gpu)
        check("route: softmax probabilities (f32)", probabilities)
        checkInts("route: top-\(k) experts", gpu: chosen.gpu, cpu: chosen.cpu)
        check("route: weights (f32)", weights)

        // The rest from the CPU's choices on both sides, so one flipped near-tie cannot cascade.
        let sameChosen = try gpu.upload(cpu.downloadInts(chosen.cpu), [tokens, k])
        let sameProbabilities = try gpu.upload(cpu.download(probabilities.cpu), [tokens, experts], .f32)
        let sameWeights = try gpu.upload(cpu.download(weights.cpu), [tokens, k], .f32)
        let sequenceIds = try ints((0..<tokens).map { $0 % 7 == 6 ? -1 : Int32($0 / 100) })
        let statistics = try output([2, experts], .f32)
        cpu.moeRouterStatistics(probabilities: probabilities.cpu, experts: chosen.cpu, sequenceIds: sequenceIds.cpu, into: statistics.cpu)
        gpu.moeRouterStatistics(probabilities: sameProbabilities, experts: sameChosen, sequenceIds: sequenceIds.gpu, into: statistics.gpu)
        check("load-balancing counts and Σp (f32)", statistics)

        let dWeights = try pair([tokens, k], .f32), aux = try pair([experts], .f32, in: -0.1...0.1)
        let dLogits = try output([tokens, experts], storage)
        cpu.moeRouteBackward(dWeights: dWeights.cpu, probabilities: probabilities.cpu, experts: chosen.cpu, normalize: normalize,
                             auxGradient: aux.cpu, sequenceIds: sequenceIds.cpu, into: dLogits.cpu)
        gpu.moeRouteBackward(dWeights: dWeights.gpu, probabilities: sameProbabilities, experts: sameChosen, normalize: normalize,
                             auxGradient: aux.gpu, sequenceIds: sequenceIds.gpu, into: dLogits.gpu)
        check("route backward dLogits (\(storage))", dLogits)

        let counts = (cpu: try cpu.zeros([experts], .i32), gpu: try gpu.zeros([experts], .i32))
        let rows = (cpu: try cpu.zeros([tokens * k], .i32), gpu: try gpu.zeros([tokens * k], .i32))
        cpu.moeSort(experts: chosen.cpu, expertCount: experts, counts: counts.cpu, rows: rows.cpu)
        gpu.moeSort(experts: sameChosen, expertCount: experts, counts: counts.gpu, rows: rows.gpu)
        checkInts("sort: counts per expert", gpu: counts.gpu, cpu: counts.cpu)
        checkInts("sort: rows (stable, by expert)", gpu: rows.gpu, cpu: rows.cpu)

        let x = try pair([tokens, hidden], storage), sorted = try output([tokens * k, hidden], storage)
        cpu.moeGather(x.cpu, rows: rows.cpu, into: sorted.cpu)
        gpu.moeGather(x.gpu, rows: rows.gpu, into: sorted.gpu)
        check("gather into expert blocks (exact)", sorted, exact: true)

        let y = try pair([tokens * k, hidden], storage), out = try output([tokens, hidden], storage)
        cpu.moeCombine(y.cpu, rows: rows.cpu, weights: weights.cpu, into: out.cpu)
        gpu.moeCombine(y.gpu, rows: rows.gpu, weights: sameWeights, into: out.gpu)
        check("combine Σ w·y (\(storage))", out)
        let summed = try output([tokens, hidden], storage)
        cpu.moeCombine(y.cpu, rows: rows.cpu, weights: nil, into: summed.cpu)
        gpu.moeCombine(y.gpu, rows: rows.gpu, weights: nil, into: summed.gpu)
        check("combine Σ y (gather's backward)", summed)

        let dOut = try pair([tokens, hidden], storage)
        let dSorted = try output([tokens * k, hidden], storage), dW = try output([tokens, k], .f32)
        cpu.moeCombineBackward(dOut: dOut.cpu, sorted: y.cpu, rows: rows.cpu, weights: weights.cpu, dSorted: dSorted.cpu, dWeights: dW.cpu)
        gpu.moeCombineBackward(dOut: dOut.gpu, sorted: y.gpu, rows: rows.gpu, weights: sameWeights, dSorted: dSorted.gpu, dWeights: dW.gpu)
        check("combine backward dY = w·dOut (\(storage))", dSorted)
        check("combine backward dWeights (f32)", dW)
        let again = try gpu.zeros([tokens, k], .f32)
        gpu.moeCombineBackward(dOut: dOut.gpu, sorted: y.gpu, rows: rows.gpu, weights: sameWeights, dSorted: dSorted.gpu, dWeights: again)
        let same = gpu.downloadBytes(again) == gpu.downloadBytes(dW.gpu)
        verdict(same, "combine backward rerun bit-identical")

        guard timed else { return }
        let gpu = self.gpu, e = Double(storage.size), moved = Double(tokens * k * hidden) * e * 2
        time("route (softmax, top-k)") {
            gpu.moeRoute(logits: logits.gpu, topK: k, normalize: normalize, probabilities: probabilities.gpu, experts: chosen.gpu, weights: weights.gpu)
        }
        time("sort (count + rows)") { gpu.moeSort(experts: sameChosen, expertCount: experts, counts: counts.gpu, rows: rows.gpu) }
        time("gather", bytes: moved) { gpu.moeGather(x.gpu, rows: rows.gpu, into: sorted.gpu) }
        time("combine", bytes: moved) { gpu.moeCombine(y.gpu, rows: rows.gpu, weights: sameWeights, into: out.gpu) }
        time("combine backward", bytes: 2 * moved) {
            gpu.moeCombineBackward(dOut: dOut.gpu, sorted: y.gpu, rows: rows.gpu, weights: sameWeights, dSorted: dSorted.gpu, dWeights: dW.gpu)
        }
    }
}
