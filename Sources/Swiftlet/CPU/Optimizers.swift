/// Optimizer updates on the CPU backend (the math is in Train/AdamW.swift and Train/SGD.swift).
extension CPUBackend {
    public func adamw(parameter: Tensor, gradient: Tensor, m: Tensor, v: Tensor, step: Int, hyper: AdamWHyper) {
        AdamW.update(parameter: parameter.floats, gradient: UnsafeBufferPointer(gradient.floats),
                     m: m.floats, v: v.floats, step: step, hyper: hyper)
    }

    public func sgd(parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?, step: Int, hyper: SGDHyper) {
        SGD.update(parameter: parameter.floats, gradient: UnsafeBufferPointer(gradient.floats),
                   momentumBuffer: momentumBuffer?.floats, step: step, hyper: hyper)
    }
}
