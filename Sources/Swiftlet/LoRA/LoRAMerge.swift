extension LlamaModel {
    /// Folds every adapter into its linear's weight and drops the adapters (PEFT's
    /// `merge_and_unload`): W + scaling·B·A in f32, rounded once to the compute type, as merged
    /// export writes it. An NF4 base weight is dequantized first and stays dense.
    public func mergeAdapters() throws {
        for i in layers.indices {
            for target in LoRAConfig.Target.allCases {
                guard let linear = layers[i][target], let adapter = linear.lora else { continue }
                let merged = try MergedExport.mergedWeight(linear.weight, adapter: adapter)
                layers[i][target]!.weight = .dense(try backend.upload(merged, linear.weight.shape, backend.computeType))
                layers[i][target]!.lora = nil
            }
        }
        loraConfig = nil
    }
}
