/// Dynamic loss scaling for fp16 training, with torch.cuda.amp.GradScaler's semantics: the loss
/// gradient is multiplied by `scale` so small gradients survive fp16; before the update the LoRA
/// gradients are divided by it; a step whose gradients overflowed (inf/NaN) is skipped and the scale
/// halved; after `growthInterval` clean steps in a row the scale doubles.
public struct LossScaler: Sendable, Equatable {
    public private(set) var scale: Float
    public var growthFactor: Float = 2
    public var backoffFactor: Float = 0.5
    public var growthInterval = 2000
    /// Clean steps since the last growth or overflow (saved in checkpoints).
    public private(set) var cleanSteps = 0

    public init(initialScale: Float = 65536) { scale = initialScale }

    /// A scaler exactly as a checkpoint recorded it.
    public init(scale: Float, cleanSteps: Int, growthFactor: Float = 2, backoffFactor: Float = 0.5, growthInterval: Int = 2000) {
        self.scale = scale
        self.cleanSteps = cleanSteps
        self.growthFactor = growthFactor
        self.backoffFactor = backoffFactor
        self.growthInterval = growthInterval
    }

    /// Records whether the step's gradients were finite; returns whether to apply the update.
    public mutating func update(gradientsFinite: Bool) -> Bool {
        guard gradientsFinite else {
            scale *= backoffFactor
            cleanSteps = 0
            return false
        }
        cleanSteps += 1
        if cleanSteps == growthInterval {
            scale *= growthFactor
            cleanSteps = 0
        }
        return true
    }
}
