/// Optimizer updates on the CPU backend, one tensor after another (the math is in Train/AdamW.swift,
/// Train/AdamW8bit.swift and Train/SGD.swift).
extension CPUBackend {
    public func adamw(parameters: [Tensor], gradients: [Tensor], m: [Tensor], v: [Tensor],
                      gradientMultiplier: GradientMultiplier, step: Int, hyper: AdamWHyper) {
        precondition(gradients.count == parameters.count && m.count == parameters.count && v.count == parameters.count,
                     "AdamW needs a gradient, m and v per parameter")
        for i in parameters.indices {
            AdamW.update(parameter: parameters[i].floats, gradient: UnsafeBufferPointer(gradients[i].floats),
                         m: m[i].floats, v: v[i].floats, step: step, hyper: hyper, gradientMultiplier: gradientMultiplier)
        }
    }

    public func sgd(parameters: [Tensor], gradients: [Tensor], momentumBuffers: [Tensor]?,
                    gradientMultiplier: GradientMultiplier, step: Int, hyper: SGDHyper) {
        precondition(gradients.count == parameters.count && (momentumBuffers?.count ?? parameters.count) == parameters.count,
                     "SGD needs a gradient (and a momentum buffer, if any) per parameter")
        for i in parameters.indices {
            SGD.update(parameter: parameters[i].floats, gradient: UnsafeBufferPointer(gradients[i].floats),
                       momentumBuffer: momentumBuffers?[i].floats, step: step, hyper: hyper,
                       gradientMultiplier: gradientMultiplier)
        }
    }

    public func adamw8bit(parameters: [Tensor], gradients: [Tensor], states: [AdamW8bitState],
                          gradientMultiplier: GradientMultiplier, step: Int, hyper: AdamWHyper) {
        precondition(gradients.count == parameters.count && states.count == parameters.count,
                     "AdamW8bit needs a gradient and a state per parameter")
        for i in parameters.indices {
            let p = parameters[i].floats, g = UnsafeBufferPointer(gradients[i].floats)
            switch states[i] {
            case let .quantized(codes1, codes2, absmax1, absmax2):
                AdamW8bit.updateBlockwise(parameter: p, gradient: g, codes1: codes1.bytes, codes2: codes2.bytes,
                                          absmax1: absmax1.floats, absmax2: absmax2.floats, step: step, hyper: hyper,
                                          gradientMultiplier: gradientMultiplier)
            case let .full(state1, state2):
                AdamW8bit.update32bit(parameter: p, gradient: g, state1: state1.floats, state2: state2.floats,
                                      step: step, hyper: hyper, gradientMultiplier: gradientMultiplier)
            }
        }
    }
}
