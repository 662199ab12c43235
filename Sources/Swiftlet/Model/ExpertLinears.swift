/// One linear layer of every expert of a mixture (each expert's fused gate_up, or each one's down) on
/// the sorted tokens' row blocks, block e holding expert e's tokens: each product is one op of the
/// backend for all the experts (`Backend.matmul(_:blocks:…)`, `loraDown(_:blocks:…)` …), where the
/// experts' own `Linear`s were an op each. Block by block the products are the `Linear`'s, in its
/// order (LoRA on the fused low-rank ops), so the bits are the same.
///
/// Quantized experts are dequantized a chunk at a time (at most `dequantizedBytes` at once, and at
/// least one expert), for the GEMMs of that chunk.
struct ExpertLinears {
    let linears: [Linear]

    /// nil where the experts cannot run together: different shapes, a bias, adapters on some experts
    /// only, of different ranks or scalings, or off the fused low-rank ops (their own `Linear` runs those).
    init?(_ linears: [Linear]) {
        guard let first = linears.first,
              linears.allSatisfy({ $0.weight.shape == first.weight.shape && $0.bias == nil }) else { return nil }
        if let lora = first.lora {
            guard linears.allSatisfy({
                guard let l = $0.lora else { return false }
                return l.rank == lora.rank && l.scaling == lora.scaling && Linear.takesFusedOps(l)
            }) else { return nil }
        } else if linears.contains(where: { $0.lora != nil }) {
            return nil
        }
        self.linears = linears
    }

    var inFeatures: Int { linears[0].inFeatures }
    var outFeatures: Int { linears[0].outFeatures }
    private var adapters: [LoRAAdapter]? { linears[0].lora == nil ? nil : linears.map { $0.lora! } }

    /// What the backward needs: x, and with adapters z = x Aᵀ of every block (f32).
    struct Saved {
        var input: Tensor
        var lowRank: Tensor?
    }

    /// y[e] = x[e] W_eᵀ (+ s · x[e] A_eᵀ B_eᵀ), for the row blocks of x.
    func forward(_ x: Tensor, blocks: [Range<Int>]) throws -> (Tensor, Saved) {
        let backend = x.backend, rows = x.shape[0]
        var z: Tensor?
        if let adapters {
            let lowRank = try backend.empty([rows, adapters[0].rank], .f32)
            backend.loraDown(x, blocks: blocks, adapters.map(\.a), weightTransposed: false, into: lowRank, alpha: 1)
            z = lowRank
        }
        let y = try backend.empty([rows, outFeatures], backend.computeType)
        try withWeights(blocks) { span, spanBlocks, weights in
            backend.matmul(x.rows(span), blocks: spanBlocks, weights, transposeB: true, into: y.rows(span))
        }
        if let adapters, let z {
            backend.loraUpAdd(z, blocks: blocks, adapters.map(\.b), weightTransposed: false, scale: adapters[0].scaling, into: y)
        }
        return (y, Saved(input: x, lowRank: z))
    }

    /// dL/dx of every block; the adapters' gradients accumulate. `overwritingInput`: x is dead after
    /// this (the experts' down input), so dL/dx takes its storage (its LoRA terms read x first).
    func backward(_ dY: Tensor, blocks: [Range<Int>], saved: Saved, overwritingInput: Bool) throws -> Tensor {
        let backend = dY.backend, rows = dY.shape[0], x = saved.input
        // dB += s · dYᵀ z ;  dz = s · dY B ;  dA += dzᵀ x   (Linear.backward's fused order)
        var dz: Tensor?
        if let adapters, let z = saved.lowRank {
            let s = adapters[0].scaling
            backend.loraGradient(dY, z, blocks: blocks, into: adapters.map(\.gradB), gradientTransposed: false, alpha: s)
            let d = try backend.empty([rows, adapters[0].rank], .f32)
            backend.loraDown(dY, blocks: blocks, adapters.map(\.b), weightTransposed: true, into: d, alpha: s)
            backend.loraGradient(x, d, blocks: blocks, into: adapters.map(\.gradA), gradientTransposed: true, alpha: 1)
            dz = d
        }
        let dX = overwritingInput && x.dtype == backend.computeType ? x : try backend.empty([rows, inFeatures], backend.computeType)
        try withWeights(blocks) { span, spanBlocks, weights in
            backend.matmul(dY.rows(span), blocks: spanBlocks, weights, transposeB: false, into: dX.rows(span))
        }
        if let adapters, let dz {
            backend.loraUpAdd(dz, blocks: blocks, adapters.map(\.a), weightTransposed: true, scale: 1, into: dX)
        }
        return dX
    }

    /// At most this many bytes of dequantized expert weights at once (`withWeights`).
    nonisolated(unsafe) static var dequantizedBytes = 256 << 20

    /// `body(span, blocks, weights)` for the experts with tokens, a chunk at a time: the chunk's rows
    /// (`span`), its blocks within them, and its weights as the GEMMs take them (dense ones as they
    /// are, all in one chunk; quantized ones dequantized up to `dequantizedBytes` a chunk, into one
    /// scratch tensor by one backend op).
    private func withWeights(_ blocks: [Range<Int>], _ body: (Range<Int>, [Range<Int>], [Tensor]) throws -> Void) throws {
        let experts = blocks.indices.filter { !blocks[$0].isEmpty }
        var next = 0
        while next < experts.count {
            var chunk: [Int] = [], bytes = 0
            while next < experts.count {
                let weight = linears[experts[next]].weight
                let size = weight.isQuantized ? weight.shape.count * weight.backend.computeType.size : 0
                if !chunk.isEmpty && bytes + size > Self.dequantizedBytes { break }
                chunk.append(experts[next])
                bytes += size
                next += 1
            }
            let span = blocks[chunk[0]].lowerBound..<blocks[chunk[chunk.count - 1]].upperBound
            try body(span, chunk.map { (blocks[$0].lowerBound - span.lowerBound)..<(blocks[$0].upperBound - span.lowerBound) },
                     try weights(chunk))
        }
    }

    /// The chunk's weights: dense ones as they are, quantized ones dequantized into one scratch tensor.
    private func weights(_ chunk: [Int]) throws -> [Tensor] {
        let frozen = chunk.map { linears[$0].weight }
        guard let quantized = frozen.first(where: \.isQuantized) else { return try frozen.map { try $0.materialized() } }
        let backend = quantized.backend, type = backend.computeType
        let scratch = try backend.empty([frozen.filter(\.isQuantized).reduce(0) { $0 + $1.shape.count }], type)
        var offset = 0, jobs: [(weight: NF4Weight, out: Tensor)] = []
        let weights = try frozen.map { weight -> Tensor in
            guard weight.isQuantized else { return try weight.materialized() }
            let out = Tensor(buffer: scratch.buffer, dtype: type, shape: weight.shape, byteOffset: scratch.byteOffset + offset * type.size)
            offset += weight.shape.count
            jobs += weight.dequantizations(into: out)
            return out
        }
        backend.dequantizeNF4(jobs.map(\.weight), into: jobs.map(\.out))
        return weights
    }
}
