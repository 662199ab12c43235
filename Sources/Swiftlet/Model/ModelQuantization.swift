/// Turns a loaded 16-bit model into a QLoRA base in place (benchmarks on random weights; loading a
/// checkpoint quantizes while reading instead, see `load(directory:on:loadIn4bit:)`).
extension LlamaModel {
    /// Replaces every dense q k v o gate up down weight (and every expert's) with its NF4
    /// quantization, one tensor at a time so each 16-bit weight is freed before the next is
    /// quantized. A mixture's router stays dense, as transformers + bitsandbytes leave it.
    public func quantizeLinearsToNF4(doubleQuant: Bool = true) throws {
        func nf4(_ w: Tensor) throws -> NF4Weight { try NF4Weight(quantizing: w, doubleQuant: doubleQuant) }
        func quantize(_ linear: inout Linear) throws {
            guard case let .dense(w) = linear.weight else { return }
            linear.weight = .nf4(try nf4(w))
        }
        for i in layers.indices {
            for target in LoRAConfig.Target.allCases where target != .router {
                guard layers[i][target] != nil else { continue }
                try quantize(&layers[i][target]!)
            }
            guard case var .mixture(moe) = layers[i].feedForward else { continue }
            for e in moe.experts.indices {
                // gate and up quantized apart, as bitsandbytes quantizes a checkpoint's w1 and w3.
                if case .fused(var linear, let widths) = moe.experts[e].gateUp, case let .dense(w) = linear.weight {
                    linear.weight = .nf4Rows([try nf4(w.rows(0..<widths[0])), try nf4(w.rows(widths[0]..<w.shape[0]))])
                    moe.experts[e].gateUp = .fused(linear, widths: widths)
                }
                try quantize(&moe.experts[e].down)
            }
            layers[i].feedForward = .mixture(moe)
        }
    }
}
