import CCUDA
import Foundation

/// AdamW and SGD on f32 parameters and state, one launch over every tensor of the list (the
/// multi-tensor table, MultiTensorTable.swift). The scalar factors are computed on the host in
/// Double as torch does (Train/AdamW.swift), then rounded once. Each gradient element is multiplied
/// by the unscale factor and then the clip coefficient as it is read, each product rounded to float,
/// as the in-place passes these factors replace did (GradientMultiplier.swift).
enum CUDAOptimizer {
    static let source = CUDAMultiTensor.header + """
    // Operands per row: parameter, gradient, m, v.
    extern "C" __global__ void __launch_bounds__(256) mt_adamw(const mt_row* rows, const mt_chunk* chunks, int chunk_size,
            float unscale, float clip, float decay, float oneMinusBeta1, float beta2, float oneMinusBeta2,
            float stepSize, float bc2Sqrt, float eps) {
        const mt_range r = mt_block_range(rows, chunks, chunk_size);
        float* p = MT_OPERAND(r, 0, float);
        const float* g = MT_OPERAND(r, 1, const float);
        float* m = MT_OPERAND(r, 2, float);
        float* v = MT_OPERAND(r, 3, float);
        for (long long i = r.begin + threadIdx.x; i < r.end; i += blockDim.x) {
            const float gi = (g[i] * unscale) * clip;
            const float mi = m[i] + oneMinusBeta1 * (gi - m[i]);
            const float vi = v[i] * beta2 + oneMinusBeta2 * gi * gi;
            m[i] = mi; v[i] = vi;
            p[i] = p[i] * decay - stepSize * mi / (sqrtf(vi) / bc2Sqrt + eps);
        }
    }
    // Operands per row: parameter, gradient.
    extern "C" __global__ void __launch_bounds__(256) mt_sgd(const mt_row* rows, const mt_chunk* chunks, int chunk_size,
            float unscale, float clip, float lr, float weightDecay) {
        const mt_range r = mt_block_range(rows, chunks, chunk_size);
        float* p = MT_OPERAND(r, 0, float);
        const float* g = MT_OPERAND(r, 1, const float);
        for (long long i = r.begin + threadIdx.x; i < r.end; i += blockDim.x) {
            const float gi = (g[i] * unscale) * clip;
            p[i] = p[i] - lr * (gi + weightDecay * p[i]);
        }
    }
    """
}

extension CUDABackend {
    public func adamw(parameters: [Tensor], gradients: [Tensor], m: [Tensor], v: [Tensor],
                      gradientMultiplier: GradientMultiplier, step: Int, hyper: AdamWHyper) {
        precondition(gradients.count == parameters.count && m.count == parameters.count && v.count == parameters.count,
                     "AdamW needs a gradient, m and v per parameter")
        let rows = parameters.indices.map { [parameters[$0], gradients[$0], m[$0], v[$0]] }
        for row in rows {
            for t in row { expect(t, .f32); precondition(t.count == row[0].count, "AdamW operand sizes differ: \(row)") }
        }
        let lr = Double(hyper.lr), b1 = Double(hyper.beta1), b2 = Double(hyper.beta2)
        let bc1 = 1 - Foundation.pow(b1, Double(step)), bc2 = 1 - Foundation.pow(b2, Double(step))
        launchMultiTensor("mt_adamw", source: CUDAOptimizer.source, rows: rows, chunkSize: CUDAMultiTensor.chunkSize,
                          threads: CUDAMultiTensor.threads,
                          [.float(gradientMultiplier.unscale), .float(gradientMultiplier.clip),
                           .float(Float(1 - lr * Double(hyper.weightDecay))), .float(Float(1 - b1)), .float(hyper.beta2),
                           .float(Float(1 - b2)), .float(Float(lr / bc1)), .float(Float(bc2.squareRoot())), .float(hyper.eps)])
    }

    public func sgd(parameters: [Tensor], gradients: [Tensor], momentumBuffers: [Tensor]?,
                    gradientMultiplier: GradientMultiplier, step: Int, hyper: SGDHyper) {
        precondition(momentumBuffers == nil && hyper.momentum == 0, "SGD momentum is not implemented on CUDA yet")
        precondition(gradients.count == parameters.count, "SGD needs a gradient per parameter")
        let rows = parameters.indices.map { [parameters[$0], gradients[$0]] }
        for row in rows {
            for t in row { expect(t, .f32); precondition(t.count == row[0].count, "SGD operand sizes differ: \(row)") }
        }
        launchMultiTensor("mt_sgd", source: CUDAOptimizer.source, rows: rows, chunkSize: CUDAMultiTensor.chunkSize,
                          threads: CUDAMultiTensor.threads,
                          [.float(gradientMultiplier.unscale), .float(gradientMultiplier.clip), .float(hyper.lr),
                           .float(hyper.weightDecay)])
    }
}
