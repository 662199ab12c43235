/// The built-in demo: a small Llama made deterministically in code and a data set it can visibly
/// learn in about a minute on two CPU cores. Each example counts upwards from a random start with
/// a stride of 1, 2 or 3 (mod the vocabulary); the model must read the stride off the context.
public enum DemoTask {
    public static let config = LlamaConfig(
        modelType: .llama, vocabSize: 256, hiddenSize: 128, intermediateSize: 344, layers: 4,
        heads: 4, kvHeads: 2, rmsNormEps: 1e-5, rope: RoPEScaling(theta: 10000),
        maxPositionEmbeddings: 512)

    /// Standard deviation of the demo model's random weights: large enough that the frozen
    /// output layer can express confident predictions.
    public static let weightScale: Float = 0.08

    public static let lora = LoRAConfig(r: 16, alpha: 32, dropout: 0, targets: Set(LoRAConfig.Target.allCases))

    /// `count` examples of `length` tokens from `seed`.
    public static func examples(count: Int = 512, length: Int = 48, seed: UInt64 = 7) -> [Example] {
        var generator = SplitMix64(seed: seed)
        let vocab = UInt64(config.vocabSize)
        return (0..<count).map { _ in
            let start = generator.next() % vocab
            let stride = 1 + generator.next() % 3
            let ids = (0..<UInt64(length)).map { Int32((start + $0 * stride) % vocab) }
            return Example(inputIds: ids)
        }
    }

    public static var arguments: TrainingArguments {
        var a = TrainingArguments()
        a.batchSize = 8
        a.maxSteps = 300
        a.learningRate = 3e-3
        a.warmupSteps = 10
        a.scheduler = .cosine
        a.maxGradNorm = 1
        a.maxSeqLength = 48
        return a
    }
}
