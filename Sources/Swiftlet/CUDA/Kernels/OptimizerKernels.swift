import CCUDA
import Foundation

/// AdamW and SGD on f32 parameters and state. The scalar factors are computed on the host in
/// Double as torch does (Train/AdamW.swift), then rounded once.
enum CUDAOptimizer {
    static let source = """
    extern "C" __global__ void adamw_f32(float* p, const float* g, float* m, float* v, long long n,
                                         float decay, float oneMinusBeta1, float beta2, float oneMinusBeta2,
                                         float stepSize, float bc2Sqrt, float eps) {
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
            const float gi = g[i];
            const float mi = m[i] + oneMinusBeta1 * (gi - m[i]);
            const float vi = v[i] * beta2 + oneMinusBeta2 * gi * gi;
            m[i] = mi; v[i] = vi;
            p[i] = p[i] * decay - stepSize * mi / (sqrtf(vi) / bc2Sqrt + eps);
        }
    }
    extern "C" __global__ void sgd_f32(float* p, const float* g, long long n, float lr, float weightDecay) {
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
            p[i] = p[i] - lr * (g[i] + weightDecay * p[i]);
    }
    """
}

extension CUDABackend {
    public func adamw(parameter: Tensor, gradient: Tensor, m: Tensor, v: Tensor, step: Int, hyper: AdamWHyper) {
        for t in [parameter, gradient, m, v] { expect(t, .f32) }
        let lr = Double(hyper.lr), b1 = Double(hyper.beta1), b2 = Double(hyper.beta2)
        let bc1 = 1 - Foundation.pow(b1, Double(step)), bc2 = 1 - Foundation.pow(b2, Double(step))
        launchElementwise("adamw_f32", count: parameter.count,
                          [.pointer(parameter.device), .pointer(gradient.device), .pointer(m.device), .pointer(v.device),
                           .int64(Int64(parameter.count)), .float(Float(1 - lr * Double(hyper.weightDecay))),
                           .float(Float(1 - b1)), .float(hyper.beta2), .float(Float(1 - b2)),
                           .float(Float(lr / bc1)), .float(Float(bc2.squareRoot())), .float(hyper.eps)],
                          source: CUDAOptimizer.source)
    }

    public func sgd(parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?, step: Int, hyper: SGDHyper) {
        precondition(momentumBuffer == nil && hyper.momentum == 0, "SGD momentum is not implemented on CUDA yet")
        launchElementwise("sgd_f32", count: parameter.count,
                          [.pointer(parameter.device), .pointer(gradient.device), .int64(Int64(parameter.count)),
                           .float(hyper.lr), .float(hyper.weightDecay)],
                          source: CUDAOptimizer.source)
    }
}
