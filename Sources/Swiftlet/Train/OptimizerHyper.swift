/// AdamW with PyTorch's semantics (decoupled weight decay, bias correction).
public struct AdamWHyper: Sendable, Equatable {
    public var lr: Float
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    public var weightDecay: Float = 0
    public init(lr: Float, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0) {
        self.lr = lr; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
    }
}

/// SGD with PyTorch's semantics (optional momentum and L2 weight decay).
public struct SGDHyper: Sendable, Equatable {
    public var lr: Float
    public var momentum: Float = 0
    public var weightDecay: Float = 0
    public init(lr: Float, momentum: Float = 0, weightDecay: Float = 0) {
        self.lr = lr; self.momentum = momentum; self.weightDecay = weightDecay
    }
}
