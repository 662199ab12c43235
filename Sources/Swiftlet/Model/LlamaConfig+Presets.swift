/// Model shapes by name, the same as the baseline script ../shared/bench/hf_peft.py uses.
extension LlamaConfig {
    public static let presetNames = ["tiny", "tinyllama", "llama2-7b", "mistral-7b", "llama3-8b"]

    public static func preset(_ name: String) throws -> LlamaConfig {
        switch name {
        case "tiny":
            return LlamaConfig(vocabSize: 32000, hiddenSize: 256, intermediateSize: 688, layers: 4, heads: 8, kvHeads: 4,
                               rmsNormEps: 1e-6, maxPositionEmbeddings: 4096)
        case "tinyllama":
            return LlamaConfig(vocabSize: 32000, hiddenSize: 2048, intermediateSize: 5632, layers: 22, heads: 32, kvHeads: 4,
                               rmsNormEps: 1e-6, maxPositionEmbeddings: 4096)
        case "llama2-7b":
            return LlamaConfig(vocabSize: 32000, hiddenSize: 4096, intermediateSize: 11008, layers: 32, heads: 32, kvHeads: 32,
                               rmsNormEps: 1e-6, maxPositionEmbeddings: 4096)
        case "mistral-7b":
            return LlamaConfig(vocabSize: 32000, hiddenSize: 4096, intermediateSize: 14336, layers: 32, heads: 32, kvHeads: 8,
                               rmsNormEps: 1e-6, maxPositionEmbeddings: 4096)
        case "llama3-8b":
            return LlamaConfig(vocabSize: 128_256, hiddenSize: 4096, intermediateSize: 14336, layers: 32, heads: 32, kvHeads: 8,
                               rmsNormEps: 1e-6, rope: RoPEScaling(theta: 500_000), maxPositionEmbeddings: 4096)
        default:
            throw ConfigError(file: "--arch", field: nil,
                              problem: "'\(name)' is not a known shape; choose from " + presetNames.joined(separator: ", "))
        }
    }
}
