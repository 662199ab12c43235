/// Optimizer updates on the CPU backend (the math is in Train/AdamW.swift, Train/AdamW8bit.swift and Train/SGD.swift).
extension CPUBackend {
    public func adamw(parameter: Tensor, gradient: Tensor, m: Tensor, v: Tensor, step: Int, hyper: AdamWHyper) {
        AdamW.update(parameter: parameter.floats, gradient: UnsafeBufferPointer(gradient.floats),
                     m: m.floats, v: v.floats, step: step, hyper: hyper)
    }

    public func sgd(parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?, step: Int, hyper: SGDHyper) {
        SGD.update(parameter: parameter.floats, gradient: UnsafeBufferPointer(gradient.floats),
                   momentumBuffer: momentumBuffer?.floats, step: step, hyper: hyper)
    }

    public func adamw8bit(parameter: Tensor, gradient: Tensor, state: AdamW8bitState, step: Int, hyper: AdamWHyper) {
        let p = parameter.floats, g = UnsafeBufferPointer(gradient.floats)
        switch state {
        case let .quantized(codes1, codes2, absmax1, absmax2):
            AdamW8bit.updateBlockwise(parameter: p, gradient: g, codes1: codes1.bytes, codes2: codes2.bytes,
                                      absmax1: absmax1.floats, absmax2: absmax2.floats, step: step, hyper: hyper)
        case let .full(state1, state2):
            AdamW8bit.update32bit(parameter: p, gradient: g, state1: state1.floats, state2: state2.floats,
                                  step: step, hyper: hyper)
        }
    }
}
