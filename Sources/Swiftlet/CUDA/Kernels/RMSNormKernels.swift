import CCUDA

/// RMSNorm on the GPU, the same math as `RMSNormKernel` (CPU/RMSNorm.swift):
///   forward  y = w ⊙ (x · rstd), rstd = 1/√(mean(x²) + ε)      x, w, y bf16; rstd f32
///   backward dx = rstd·(w⊙dy) − x·rstd³/width · Σ(w⊙dy⊙x)      dy, x, w bf16; rstd f32
/// All arithmetic in f32. One block per row, block reduction for the row sums.
/// dX is an **f32** buffer (gradients of the residual stream are summed over several branches, so it
/// stays in f32 until the caller converts it); with `accumulate` != 0 the kernel adds to it, as the
/// CPU's `accumulateInto`, otherwise it overwrites it.
public enum CUDARMSNorm {
    static let source = """
    extern "C" __global__ void swiftlet_rmsnorm_forward(const storage_t* __restrict__ x, const storage_t* __restrict__ w,
                                                        storage_t* __restrict__ y, float* __restrict__ rstd,
                                                        int width, float eps) {
        __shared__ float shared[32];
        const size_t row = blockIdx.x;
        const storage_t* xr = x + row * (size_t)width;
        storage_t* yr = y + row * (size_t)width;
        float sum = 0.0f;
        for (int j = threadIdx.x; j < width; j += blockDim.x) { const float v = to_f32(xr[j]); sum += v * v; }
        sum = block_sum(sum, shared);
        const float s = 1.0f / sqrtf(sum / (float)width + eps);
        if (threadIdx.x == 0) rstd[row] = s;
        for (int j = threadIdx.x; j < width; j += blockDim.x)
            yr[j] = to_storage(to_f32(w[j]) * (to_f32(xr[j]) * s));
    }

    extern "C" __global__ void swiftlet_rmsnorm_backward(const storage_t* __restrict__ dy, const storage_t* __restrict__ x,
                                                         const storage_t* __restrict__ w, const float* __restrict__ rstd,
                                                         float* __restrict__ dx, int width, int accumulate) {
        __shared__ float shared[32];
        const size_t row = blockIdx.x;
        const size_t base = row * (size_t)width;
        const float s = rstd[row];
        float dot = 0.0f;
        for (int j = threadIdx.x; j < width; j += blockDim.x)
            dot += to_f32(w[j]) * to_f32(dy[base + j]) * to_f32(x[base + j]);
        dot = block_sum(dot, shared);
        const float c = dot * s * s * s / (float)width;
        for (int j = threadIdx.x; j < width; j += blockDim.x) {
            const float g = s * to_f32(w[j]) * to_f32(dy[base + j]) - c * to_f32(x[base + j]);
            dx[base + j] = accumulate ? dx[base + j] + g : g;
        }
    }

    // The same, accumulating into a bf16 gradient (the backend's residual stream).
    extern "C" __global__ void swiftlet_rmsnorm_backward_16(const storage_t* __restrict__ dy, const storage_t* __restrict__ x,
                                                              const storage_t* __restrict__ w, const float* __restrict__ rstd,
                                                              storage_t* __restrict__ dx, int width) {
        __shared__ float shared[32];
        const size_t row = blockIdx.x;
        const size_t base = row * (size_t)width;
        const float s = rstd[row];
        float dot = 0.0f;
        for (int j = threadIdx.x; j < width; j += blockDim.x)
            dot += to_f32(w[j]) * to_f32(dy[base + j]) * to_f32(x[base + j]);
        dot = block_sum(dot, shared);
        const float c = dot * s * s * s / (float)width;
        for (int j = threadIdx.x; j < width; j += blockDim.x) {
            const float g = s * to_f32(w[j]) * to_f32(dy[base + j]) - c * to_f32(x[base + j]);
            dx[base + j] = to_storage(to_f32(dx[base + j]) + g);
        }
    }
    """

    static let threads = 256

    /// x, y: rows×width bf16; weight: width bf16; rstd: rows f32.
    public static func forward(_ backend: CUDABackend, x: CUdeviceptr, weight: CUdeviceptr, out: CUdeviceptr,
                               rstd: CUdeviceptr, rows: Int, width: Int, eps: Float) throws {
        let k = try backend.function("swiftlet_rmsnorm_forward", source)
        try backend.kernels.launch(k, grid: (rows, 1, 1), block: (threads, 1, 1),
                         arguments: [.pointer(x), .pointer(weight), .pointer(out), .pointer(rstd),
                                     .int32(Int32(width)), .float(eps)])
    }

    /// dOut, x: rows×width bf16; weight bf16; rstd f32; dX: rows×width f32 (added to when `accumulate`).
    public static func backward(_ backend: CUDABackend, dOut: CUdeviceptr, x: CUdeviceptr, weight: CUdeviceptr,
                                rstd: CUdeviceptr, dX: CUdeviceptr, rows: Int, width: Int,
                                accumulate: Bool) throws {
        let k = try backend.function("swiftlet_rmsnorm_backward", source)
        try backend.kernels.launch(k, grid: (rows, 1, 1), block: (threads, 1, 1),
                         arguments: [.pointer(dOut), .pointer(x), .pointer(weight), .pointer(rstd), .pointer(dX),
                                     .int32(Int32(width)), .int32(accumulate ? 1 : 0)])
    }
}

extension CUDABackend {
    public func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float, into out: Tensor, rstd: Tensor) {
        expect(x, computeType); expect(weight, computeType); expect(out, computeType); expect(rstd, .f32)
        run { try CUDARMSNorm.forward(self, x: x.device, weight: weight.device, out: out.device, rstd: rstd.device,
                                      rows: x.count / weight.count, width: weight.count, eps: eps) }
    }

    public func rmsNormBackward(dOut: Tensor, x: Tensor, weight: Tensor, rstd: Tensor, accumulateInto dX: Tensor) {
        expect(dOut, computeType); expect(x, computeType); expect(weight, computeType); expect(rstd, .f32)
        let rows = x.count / weight.count
        if dX.dtype == .f32 {
            run { try CUDARMSNorm.backward(self, dOut: dOut.device, x: x.device, weight: weight.device, rstd: rstd.device,
                                           dX: dX.device, rows: rows, width: weight.count, accumulate: true) }
        } else {
            expect(dX, computeType)
            run {
                try kernels.launch(try function("swiftlet_rmsnorm_backward_16", CUDARMSNorm.source),
                                   grid: (rows, 1, 1), block: (CUDARMSNorm.threads, 1, 1),
                                   arguments: [.pointer(dOut.device), .pointer(x.device), .pointer(weight.device),
                                               .pointer(rstd.device), .pointer(dX.device), .int32(Int32(weight.count))])
            }
        }
    }
}
