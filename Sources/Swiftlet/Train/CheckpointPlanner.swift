/// Gradient checkpointing only where memory needs it: after a fully checkpointed step has shown the
/// peak, the last layers keep their activations (no recompute) as far as a memory budget allows. The
/// gradients are the same either way (a recomputed layer is bit-identical to a kept one); what
/// changes is time (each kept layer skips its second forward) and memory.
public enum CheckpointPlanner {
    /// Layers to keep whole: the budget's room above the checkpointed step's peak, in whole layers'
    /// activations (`LlamaModel.layerActivationBytes`), within the model's depth.
    public static func layersToKeep(budgetBytes: Int, checkpointedPeakBytes: Int, layerActivationBytes: Int,
                                    layers: Int) -> Int {
        guard layerActivationBytes > 0, budgetBytes > checkpointedPeakBytes else { return 0 }
        return Swift.min(layers, (budgetBytes - checkpointedPeakBytes) / layerActivationBytes)
    }

    /// Sets `model.layersKeptWhole` from the peak of a step run with every layer checkpointed.
    @discardableResult
    public static func plan(_ model: LlamaModel, budgetBytes: Int, checkpointedPeakBytes: Int) -> Int {
        guard model.gradientCheckpointing.recomputes else { return model.layers.count }
        model.layersKeptWhole = layersToKeep(budgetBytes: budgetBytes, checkpointedPeakBytes: checkpointedPeakBytes,
                                             layerActivationBytes: model.layerActivationBytes, layers: model.layers.count)
        return model.layersKeptWhole
    }
}
