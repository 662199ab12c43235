import RealModule

/// The MLP's gated linear unit, out = act(gate) ⊙ up, with act SiLU (SwiGLU) or the tanh
/// approximation of GELU (GeGLU, Gemma). The GELU formulas are PyTorch's CPU kernels' (GeluKernel,
/// approximate="tanh"), term for term, so f32 results match torch's to the last bits or nearly.
enum GatedLinearUnitKernel {
    /// √(2/π) and the cubic coefficient of the tanh approximation.
    static let geluBeta = 0.7978845608028654, geluKappa = 0.044715

    @inline(__always)
    static func activation<T: Real & BinaryFloatingPoint>(_ kind: GatedActivation, _ g: T) -> T {
        switch kind {
        case .silu: return g / (1 + T.exp(-g))
        case .geluTanh:
            // torch: 0.5 · x · (1 + tanh(β · (x + κ · x³)))
            let inner = T(geluBeta) * (g + T(geluKappa) * (g * g * g))
            return T(0.5) * g * (1 + T.tanh(inner))
        }
    }

    /// GELU (tanh)'s act(g) and d act / dg, as PyTorch's GeluBackward computes the derivative.
    @inline(__always)
    static func geluTanh<T: Real & BinaryFloatingPoint>(_ g: T) -> (value: T, derivative: T) {
        let square = g * g
        let t = T.tanh(T(geluBeta) * (g + T(geluKappa) * (square * g)))
        let left = T(0.5) * g, right = 1 + t
        return (left * right, T(0.5) * right + left * (1 - t * t) * T(geluBeta) * (1 + 3 * T(geluKappa) * square))
    }

    static func forward<T: Real & BinaryFloatingPoint>(_ kind: GatedActivation, gate: UnsafeBufferPointer<T>,
                                                       up: UnsafeBufferPointer<T>, out: UnsafeMutableBufferPointer<T>) {
        parallelFor(gate.count, grain: 4096) { range in
            for i in range { out[i] = activation(kind, gate[i]) * up[i] }
        }
    }

    /// dGate = dOut·up·act'(g), dUp = dOut·act(g). Overwrites both. SiLU: act' = σ(g)(1 + g(1 − σ(g))).
    static func backward<T: Real & BinaryFloatingPoint>(_ kind: GatedActivation, dOut: UnsafeBufferPointer<T>,
                                                        gate: UnsafeBufferPointer<T>, up: UnsafeBufferPointer<T>,
                                                        dGate: UnsafeMutableBufferPointer<T>,
                                                        dUp: UnsafeMutableBufferPointer<T>) {
        parallelFor(gate.count, grain: 4096) { range in
            for i in range {
                let g = gate[i]
                switch kind {
                case .silu:
                    let s = 1 / (1 + T.exp(-g))
                    dGate[i] = dOut[i] * up[i] * s * (1 + g * (1 - s))
                    dUp[i] = dOut[i] * g * s
                case .geluTanh:
                    let (value, derivative) = geluTanh(g)
                    dGate[i] = dOut[i] * up[i] * derivative
                    dUp[i] = dOut[i] * value
                }
            }
        }
    }
}

extension CPUBackend {
    /// Row by row, each row's gate and up halves through the kernels above: the same math per element.
    public func gatedLinearUnit(_ activation: GatedActivation, gateUp: Tensor, into out: Tensor) {
        let rows = out.shape[0], width = out.shape[1]
        precondition(gateUp.shape == [rows, 2 * width], "gated unit of \(gateUp.shape) into \(out.shape)")
        let gu = UnsafeBufferPointer(gateUp.floats), o = out.floats
        parallelFor(rows, grain: Swift.max(1, 4096 / Swift.max(width, 1))) { range in
            for r in range {
                let base = r * 2 * width
                GatedLinearUnitKernel.forward(activation, gate: UnsafeBufferPointer(rebasing: gu[base..<(base + width)]),
                                              up: UnsafeBufferPointer(rebasing: gu[(base + width)..<(base + 2 * width)]),
                                              out: UnsafeMutableBufferPointer(rebasing: o[(r * width)..<((r + 1) * width)]))
            }
        }
    }

    public func gatedLinearUnitBackward(_ activation: GatedActivation, dOut: Tensor, gateUp: Tensor, dGateUp: Tensor) {
        let rows = dOut.shape[0], width = dOut.shape[1]
        precondition(gateUp.shape == [rows, 2 * width] && dGateUp.shape == gateUp.shape,
                     "gated unit backward of \(gateUp.shape) from \(dOut.shape)")
        let d = UnsafeBufferPointer(dOut.floats), gu = UnsafeBufferPointer(gateUp.floats), dgu = dGateUp.floats
        parallelFor(rows, grain: Swift.max(1, 4096 / Swift.max(width, 1))) { range in
            for r in range {
                let base = r * 2 * width
                GatedLinearUnitKernel.backward(activation, dOut: UnsafeBufferPointer(rebasing: d[(r * width)..<((r + 1) * width)]),
                                               gate: UnsafeBufferPointer(rebasing: gu[base..<(base + width)]),
                                               up: UnsafeBufferPointer(rebasing: gu[(base + width)..<(base + 2 * width)]),
                                               dGate: UnsafeMutableBufferPointer(rebasing: dgu[base..<(base + width)]),
                                               dUp: UnsafeMutableBufferPointer(rebasing: dgu[(base + width)..<(base + 2 * width)]))
            }
        }
    }

    public func gatedLinearUnit(_ activation: GatedActivation, gate: Tensor, up: Tensor, into out: Tensor) {
        GatedLinearUnitKernel.forward(activation, gate: UnsafeBufferPointer(gate.floats), up: UnsafeBufferPointer(up.floats),
                                      out: out.floats)
    }

    public func gatedLinearUnitBackward(_ activation: GatedActivation, dOut: Tensor, gate: Tensor, up: Tensor,
                                        dGate: Tensor, dUp: Tensor) {
        GatedLinearUnitKernel.backward(activation, dOut: UnsafeBufferPointer(dOut.floats),
                                       gate: UnsafeBufferPointer(gate.floats), up: UnsafeBufferPointer(up.floats),
                                       dGate: dGate.floats, dUp: dUp.floats)
    }
}
