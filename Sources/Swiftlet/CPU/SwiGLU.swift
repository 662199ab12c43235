import RealModule

/// SwiGLU: out = silu(gate) ⊙ up, silu(g) = g·σ(g).
enum SwiGLUKernel {
    static func forward<T: Real & BinaryFloatingPoint>(gate: UnsafeBufferPointer<T>, up: UnsafeBufferPointer<T>,
                                                       out: UnsafeMutableBufferPointer<T>) {
        parallelFor(gate.count, grain: 4096) { range in
            for i in range {
                let g = gate[i]
                out[i] = g / (1 + T.exp(-g)) * up[i]
            }
        }
    }

    /// dGate = dOut·up·σ(g)(1 + g(1 − σ(g))), dUp = dOut·silu(g). Overwrites both.
    static func backward<T: Real & BinaryFloatingPoint>(dOut: UnsafeBufferPointer<T>, gate: UnsafeBufferPointer<T>,
                                                        up: UnsafeBufferPointer<T>,
                                                        dGate: UnsafeMutableBufferPointer<T>,
                                                        dUp: UnsafeMutableBufferPointer<T>) {
        parallelFor(gate.count, grain: 4096) { range in
            for i in range {
                let g = gate[i], s = 1 / (1 + T.exp(-g))
                dGate[i] = dOut[i] * up[i] * s * (1 + g * (1 - s))
                dUp[i] = dOut[i] * g * s
            }
        }
    }
}

extension CPUBackend {
    public func swiglu(gate: Tensor, up: Tensor, into out: Tensor) {
        SwiGLUKernel.forward(gate: UnsafeBufferPointer(gate.floats), up: UnsafeBufferPointer(up.floats), out: out.floats)
    }

    public func swigluBackward(dOut: Tensor, gate: Tensor, up: Tensor, dGate: Tensor, dUp: Tensor) {
        SwiGLUKernel.backward(dOut: UnsafeBufferPointer(dOut.floats), gate: UnsafeBufferPointer(gate.floats),
                              up: UnsafeBufferPointer(up.floats), dGate: dGate.floats, dUp: dUp.floats)
    }
}
