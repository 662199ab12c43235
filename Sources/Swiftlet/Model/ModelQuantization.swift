/// Turns a loaded 16-bit model into a QLoRA base in place (benchmarks on random weights; loading a
/// checkpoint quantizes while reading instead, see `load(directory:on:loadIn4bit:)`).
extension LlamaModel {
    /// Replaces every dense q k v o gate up down weight with its NF4 quantization, one tensor
    /// at a time so each 16-bit weight is freed before the next is quantized.
    public func quantizeLinearsToNF4(doubleQuant: Bool = true) throws {
        for i in layers.indices {
            for target in LoRAConfig.Target.allCases {
                guard case let .dense(w) = layers[i][target]?.weight else { continue }
                let q = try NF4Weight(quantizing: backend.download(w), shape: w.shape, doubleQuant: doubleQuant, on: backend)
                layers[i][target]!.weight = .nf4(q)
            }
        }
    }
}
