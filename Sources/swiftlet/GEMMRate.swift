import Foundation
import Swiftlet

/// The backend's measured dense GEMM rate in the compute type (TFLOP/s): the ceiling that model
/// FLOPs utilisation is reported against (a square product big enough to saturate the GPU).
func measuredGEMMRate(on backend: any Backend, size n: Int = 8192, repeats: Int = 10) throws -> Double {
    let a = try backend.zeros([n, n], backend.computeType), b = try backend.zeros([n, n], backend.computeType)
    let c = try backend.zeros([n, n], backend.computeType)
    backend.fillUniform(a, seed: 1, bound: 1)
    backend.fillUniform(b, seed: 2, bound: 1)
    backend.matmul(a, transposeA: false, b, transposeB: true, into: c, alpha: 1, beta: 0)   // plan and warm-up
    backend.synchronize()
    let start = Date()
    for _ in 0..<repeats { backend.matmul(a, transposeA: false, b, transposeB: true, into: c, alpha: 1, beta: 0) }
    backend.synchronize()
    return 2 * Double(n) * Double(n) * Double(n) * Double(repeats) / Date().timeIntervalSince(start) / 1e12
}
