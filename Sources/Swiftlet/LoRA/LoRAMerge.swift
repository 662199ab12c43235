extension LlamaModel {
    /// Folds every adapter into its linear's weight and drops the adapters (PEFT's
    /// `merge_and_unload`): W + scaling·B·A in f32, rounded once to the compute type, as merged
    /// export writes it. An NF4 base weight is dequantized first and stays dense.
    public func mergeAdapters() throws {
        for i in layers.indices {
            try layers[i].updateLinears { linear in
                guard let adapter = linear.lora else { return }
                let merged = try MergedExport.mergedWeight(linear.weight, adapter: adapter)
                linear.weight = .dense(try backend.upload(merged, linear.weight.shape, backend.computeType))
                linear.lora = nil
            }
        }
        loraConfig = nil
    }
}
