/// The LoRA path's three low-rank products (see `Backend.loraDown` and Model/Linear.swift), as
/// plain loops: the definition of what the backends compute (the CPU backend on its GEMM below,
/// the CUDA kernels in CUDA/Kernels/LoRAKernels.swift). Generic so tests can run them in Float64;
/// every sum runs in a fixed order (ascending k, t or j), so results are bit-reproducible.
enum LoRAKernel {
    /// z[t, j] = alpha · Σ_k x[t, k] · w(j, k); w(j, k) = w[j·K + k] (w is [r, K]) or, when
    /// `transposed`, w[k·r + j] (w is [K, r]). z [T, r] is overwritten.
    static func down<T: BinaryFloatingPoint>(x: UnsafeBufferPointer<T>, w: UnsafeBufferPointer<T>, transposed: Bool,
                                             z: UnsafeMutableBufferPointer<T>, rank r: Int, alpha: T) {
        let tokens = z.count / Swift.max(r, 1), k = x.count / Swift.max(tokens, 1)
        precondition(tokens * r == z.count && tokens * k == x.count && w.count == r * k, "loraDown shapes")
        parallelFor(tokens, grain: Swift.max(1, 16384 / Swift.max(k * r, 1))) { rows in
            var acc = [T](repeating: 0, count: r)
            for t in rows {
                let row = t * k
                if transposed {
                    for j in 0..<r { acc[j] = 0 }
                    for kk in 0..<k {
                        let xv = x[row + kk], base = kk * r
                        for j in 0..<r { acc[j] += xv * w[base + j] }
                    }
                    for j in 0..<r { z[t * r + j] = alpha * acc[j] }
                } else {
                    for j in 0..<r {
                        var sum: T = 0
                        let base = j * k
                        for kk in 0..<k { sum += x[row + kk] * w[base + kk] }
                        z[t * r + j] = alpha * sum
                    }
                }
            }
        }
    }

    /// y[t, o] = y[t, o] + scale · Σ_j z[t, j] · w(o, j); w(o, j) = w[o·r + j] (w is [O, r]) or,
    /// when `transposed`, w[j·O + o] (w is [r, O]). The low-rank sum is formed first, then added.
    static func upAdd<T: BinaryFloatingPoint>(z: UnsafeBufferPointer<T>, w: UnsafeBufferPointer<T>, transposed: Bool,
                                              scale: T, y: UnsafeMutableBufferPointer<T>, rank r: Int) {
        let tokens = z.count / Swift.max(r, 1), o = y.count / Swift.max(tokens, 1)
        precondition(tokens * r == z.count && tokens * o == y.count && w.count == r * o, "loraUpAdd shapes")
        parallelFor(tokens, grain: Swift.max(1, 16384 / Swift.max(o * r, 1))) { rows in
            var acc = [T](repeating: 0, count: o)
            for t in rows {
                if transposed {
                    for i in 0..<o { acc[i] = 0 }
                    for j in 0..<r {
                        let zv = z[t * r + j], base = j * o
                        for i in 0..<o { acc[i] += zv * w[base + i] }
                    }
                } else {
                    for i in 0..<o {
                        var sum: T = 0
                        for j in 0..<r { sum += z[t * r + j] * w[i * r + j] }
                        acc[i] = sum
                    }
                }
                for i in 0..<o { y[t * o + i] = y[t * o + i] + scale * acc[i] }
            }
        }
    }

    /// g(o, j) += alpha · Σ_t m[t, o] · z[t, j]; g(o, j) = g[o·r + j] (g is [O, r]) or, when
    /// `transposed`, g[j·O + o] (g is [r, O]). The sum over t runs in ascending order.
    static func gradient<T: BinaryFloatingPoint>(m: UnsafeBufferPointer<T>, z: UnsafeBufferPointer<T>,
                                                 g: UnsafeMutableBufferPointer<T>, transposed: Bool,
                                                 rank r: Int, alpha: T) {
        let tokens = z.count / Swift.max(r, 1), o = m.count / Swift.max(tokens, 1)
        precondition(tokens * r == z.count && tokens * o == m.count && g.count == r * o, "loraGradient shapes")
        let tile = 64
        parallelFor((o + tile - 1) / tile) { tiles in
            var acc = [T](repeating: 0, count: tile * r)
            for tileIndex in tiles {
                let lo = tileIndex * tile, hi = Swift.min(o, lo + tile)
                for i in 0..<acc.count { acc[i] = 0 }
                for t in 0..<tokens {
                    let row = t * o, zRow = t * r
                    for i in lo..<hi {
                        let mv = m[row + i], base = (i - lo) * r
                        for j in 0..<r { acc[base + j] += mv * z[zRow + j] }
                    }
                }
                for i in lo..<hi {
                    for j in 0..<r {
                        let index = transposed ? j * o + i : i * r + j
                        g[index] = g[index] + alpha * acc[(i - lo) * r + j]
                    }
                }
            }
        }
    }
}

/// The CPU backend stores f32, so nothing needs widening: its LoRA ops are the same products on its
/// SIMD GEMM (the sums of `LoRAKernel` in CPUGemm's blocked order; the tests check both against
/// Float64). Like `LoRAKernel`, CPUGemm splits work by shape only, so results are reproducible.
extension CPUBackend {
    public func loraDown(_ x: Tensor, _ w: Tensor, weightTransposed: Bool, into z: Tensor, alpha: Float) {
        LoRAShapes.checkDown(x, w, weightTransposed: weightTransposed, z)
        // z = alpha · x · wᵀ ([r, K]) or x · w ([K, r]); beta 0 overwrites z
        matmul(x, transposeA: false, w, transposeB: !weightTransposed, into: z, alpha: alpha, beta: 0)
    }

    public func loraUpAdd(_ z: Tensor, _ w: Tensor, weightTransposed: Bool, scale: Float, into y: Tensor) {
        LoRAShapes.checkUpAdd(z, w, weightTransposed: weightTransposed, y)
        // y = y + scale · z · wᵀ ([O, r]) or z · w ([r, O]); k = r fits one GEMM block: one addition into y
        matmul(z, transposeA: false, w, transposeB: !weightTransposed, into: y, alpha: scale, beta: 1)
    }

    public func loraGradient(_ m: Tensor, _ z: Tensor, into g: Tensor, gradientTransposed: Bool, alpha: Float) {
        LoRAShapes.checkGradient(m, z, g, gradientTransposed: gradientTransposed)
        if gradientTransposed {
            matmul(z, transposeA: true, m, transposeB: false, into: g, alpha: alpha, beta: 1)   // g [r, O] += zᵀ m
        } else {
            matmul(m, transposeA: true, z, transposeB: false, into: g, alpha: alpha, beta: 1)   // g [O, r] += mᵀ z
        }
    }
}

/// Shape checks shared by the backends' LoRA ops.
enum LoRAShapes {
    /// The largest rank the fused ops take (the CUDA kernels keep a row's r sums in registers);
    /// `Linear` falls back to the GEMM path above it.
    static let maxRank = 64

    static func checkDown(_ x: Tensor, _ w: Tensor, weightTransposed: Bool, _ z: Tensor) {
        let r = z.shape[1], k = x.shape[1]
        precondition(x.shape.rank == 2 && w.shape.rank == 2 && z.shape.rank == 2 && z.shape[0] == x.shape[0]
                     && w.shape == (weightTransposed ? [k, r] : [r, k]) && w.dtype == .f32 && z.dtype == .f32,
                     "loraDown \(x) · \(w)\(weightTransposed ? "" : "ᵀ") into \(z)")
    }

    static func checkUpAdd(_ z: Tensor, _ w: Tensor, weightTransposed: Bool, _ y: Tensor) {
        let r = z.shape[1], o = y.shape[1]
        precondition(z.shape.rank == 2 && w.shape.rank == 2 && y.shape.rank == 2 && z.shape[0] == y.shape[0]
                     && w.shape == (weightTransposed ? [r, o] : [o, r]) && w.dtype == .f32 && z.dtype == .f32,
                     "loraUpAdd \(z) · \(w)\(weightTransposed ? "" : "ᵀ") into \(y)")
    }

    static func checkGradient(_ m: Tensor, _ z: Tensor, _ g: Tensor, gradientTransposed: Bool) {
        let r = z.shape[1], o = m.shape[1]
        precondition(m.shape.rank == 2 && z.shape.rank == 2 && g.shape.rank == 2 && z.shape[0] == m.shape[0]
                     && g.shape == (gradientTransposed ? [r, o] : [o, r]) && g.dtype == .f32 && z.dtype == .f32,
                     "loraGradient \(m)ᵀ · \(z) into \(g)")
    }
}
