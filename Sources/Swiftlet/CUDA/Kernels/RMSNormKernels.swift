import CCUDA

/// RMSNorm on the GPU, the same math as `RMSNormKernel` (CPU/RMSNorm.swift):
///   forward  y = w ⊙ (x · rstd), rstd = 1/√(mean(x²) + ε)      x, w, y 16-bit storage; rstd f32
///   backward dx += rstd·(w⊙dy) − x·rstd³/width · Σ(w⊙dy⊙x)     dy, x, w 16-bit; rstd f32
/// where w stands for offset + w (Gemma's 1 + w, formed in f32 from the 16-bit weight).
/// All arithmetic in f32. One block per row, block reduction for the row sums. The backward adds
/// into dX, as the CPU's `accumulateInto`; dX is in the storage type (the residual stream's
/// gradient) or f32.
public enum CUDARMSNorm {
    static let source = """
    extern "C" __global__ void swiftlet_rmsnorm_forward(const storage_t* __restrict__ x, const storage_t* __restrict__ w,
                                                        storage_t* __restrict__ y, float* __restrict__ rstd,
                                                        int width, float eps, float offset) {
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
            yr[j] = to_storage((offset + to_f32(w[j])) * (to_f32(xr[j]) * s));
    }

    // Eight values a thread per access (width % 8 == 0, rows 16-byte aligned), the same math per element.
    extern "C" __global__ void swiftlet_rmsnorm_forward_v8(const storage_t* __restrict__ x, const storage_t* __restrict__ w,
                                                           storage_t* __restrict__ y, float* __restrict__ rstd,
                                                           int width, float eps, float offset) {
        __shared__ float shared[32];
        const size_t row = blockIdx.x;
        const storage_t* xr = x + row * (size_t)width;
        storage_t* yr = y + row * (size_t)width;
        float sum = 0.0f;
        for (int j = 8 * threadIdx.x; j < width; j += 8 * blockDim.x) {
            float v[8];
            load8(xr + j, v);
            #pragma unroll
            for (int k = 0; k < 8; k++) sum += v[k] * v[k];
        }
        sum = block_sum(sum, shared);
        const float s = 1.0f / sqrtf(sum / (float)width + eps);
        if (threadIdx.x == 0) rstd[row] = s;
        for (int j = 8 * threadIdx.x; j < width; j += 8 * blockDim.x) {
            float v[8], g[8];
            load8(xr + j, v);
            load8(w + j, g);
            #pragma unroll
            for (int k = 0; k < 8; k++) v[k] = (offset + g[k]) * (v[k] * s);
            store8(yr + j, v);
        }
    }

    template <typename Grad>
    __device__ void rmsnorm_backward_row_v8(const storage_t* __restrict__ dy, const storage_t* __restrict__ x,
                                            const storage_t* __restrict__ w, const float* __restrict__ rstd,
                                            Grad* __restrict__ dx, int width, float offset) {
        __shared__ float shared[32];
        const size_t row = blockIdx.x;
        const size_t base = row * (size_t)width;
        const float s = rstd[row];
        float dot = 0.0f;
        for (int j = 8 * threadIdx.x; j < width; j += 8 * blockDim.x) {
            float g[8], d[8], v[8];
            load8(w + j, g);
            load8(dy + base + j, d);
            load8(x + base + j, v);
            #pragma unroll
            for (int k = 0; k < 8; k++) dot += (offset + g[k]) * d[k] * v[k];
        }
        dot = block_sum(dot, shared);
        const float c = dot * s * s * s / (float)width;
        for (int j = 8 * threadIdx.x; j < width; j += 8 * blockDim.x) {
            float g[8], d[8], v[8], acc[8];
            load8(w + j, g);
            load8(dy + base + j, d);
            load8(x + base + j, v);
            load8(dx + base + j, acc);
            #pragma unroll
            for (int k = 0; k < 8; k++) acc[k] = acc[k] + (s * (offset + g[k]) * d[k] - c * v[k]);
            store8(dx + base + j, acc);
        }
    }

    extern "C" __global__ void swiftlet_rmsnorm_backward_f32_v8(const storage_t* dy, const storage_t* x, const storage_t* w,
                                                                const float* rstd, float* dx, int width, float offset) {
        rmsnorm_backward_row_v8(dy, x, w, rstd, dx, width, offset);
    }

    extern "C" __global__ void swiftlet_rmsnorm_backward_16_v8(const storage_t* dy, const storage_t* x, const storage_t* w,
                                                               const float* rstd, storage_t* dx, int width, float offset) {
        rmsnorm_backward_row_v8(dy, x, w, rstd, dx, width, offset);
    }

    // dx += the gradient, dx in f32 or in the storage type: one body for both.
    __device__ __forceinline__ float load_grad(const float* p) { return *p; }
    __device__ __forceinline__ float load_grad(const storage_t* p) { return to_f32(*p); }
    __device__ __forceinline__ void store_grad(float* p, float v) { *p = v; }
    __device__ __forceinline__ void store_grad(storage_t* p, float v) { *p = to_storage(v); }

    template <typename Grad>
    __device__ void rmsnorm_backward_row(const storage_t* __restrict__ dy, const storage_t* __restrict__ x,
                                         const storage_t* __restrict__ w, const float* __restrict__ rstd,
                                         Grad* __restrict__ dx, int width, float offset) {
        __shared__ float shared[32];
        const size_t row = blockIdx.x;
        const size_t base = row * (size_t)width;
        const float s = rstd[row];
        float dot = 0.0f;
        for (int j = threadIdx.x; j < width; j += blockDim.x)
            dot += (offset + to_f32(w[j])) * to_f32(dy[base + j]) * to_f32(x[base + j]);
        dot = block_sum(dot, shared);
        const float c = dot * s * s * s / (float)width;
        for (int j = threadIdx.x; j < width; j += blockDim.x) {
            const float g = s * (offset + to_f32(w[j])) * to_f32(dy[base + j]) - c * to_f32(x[base + j]);
            store_grad(&dx[base + j], load_grad(&dx[base + j]) + g);
        }
    }

    extern "C" __global__ void swiftlet_rmsnorm_backward_f32(const storage_t* dy, const storage_t* x, const storage_t* w,
                                                             const float* rstd, float* dx, int width, float offset) {
        rmsnorm_backward_row(dy, x, w, rstd, dx, width, offset);
    }

    extern "C" __global__ void swiftlet_rmsnorm_backward_16(const storage_t* dy, const storage_t* x, const storage_t* w,
                                                            const float* rstd, storage_t* dx, int width, float offset) {
        rmsnorm_backward_row(dy, x, w, rstd, dx, width, offset);
    }
    """

    static let threads = 256

    /// x, y: rows×width bf16; weight: width bf16; rstd: rows f32.
    public static func forward(_ backend: CUDABackend, x: CUdeviceptr, weight: CUdeviceptr, weightOffset: Float = 0,
                               out: CUdeviceptr, rstd: CUdeviceptr, rows: Int, width: Int, eps: Float,
                               vectors: Bool = false) throws {
        let k = try backend.function(vectors ? "swiftlet_rmsnorm_forward_v8" : "swiftlet_rmsnorm_forward", source)
        try backend.kernels.launch(k, grid: (rows, 1, 1), block: (threads, 1, 1),
                         arguments: [.pointer(x), .pointer(weight), .pointer(out), .pointer(rstd),
                                     .int32(Int32(width)), .float(eps), .float(weightOffset)])
    }
}

extension CUDABackend {
    public func rmsNorm(_ x: Tensor, weight: Tensor, weightOffset: Float, eps: Float, into out: Tensor, rstd: Tensor) {
        expect(x, computeType); expect(weight, computeType); expect(out, computeType); expect(rstd, .f32)
        run { try CUDARMSNorm.forward(self, x: x.device, weight: weight.device, weightOffset: weightOffset, out: out.device,
                                      rstd: rstd.device, rows: x.count / weight.count, width: weight.count, eps: eps,
                                      vectors: vectorizable(x, weight, out)) }
    }

    public func rmsNormBackward(dOut: Tensor, x: Tensor, weight: Tensor, weightOffset: Float, rstd: Tensor,
                                accumulateInto dX: Tensor) {
        expect(dOut, computeType); expect(x, computeType); expect(weight, computeType); expect(rstd, .f32)
        let rows = x.count / weight.count
        precondition(dX.dtype == .f32 || dX.dtype == computeType, "RMSNorm gradient into \(dX)")
        let kernel = (dX.dtype == .f32 ? "swiftlet_rmsnorm_backward_f32" : "swiftlet_rmsnorm_backward_16")
            + (vectorizable(dOut, x, weight, dX) ? "_v8" : "")
        run {
            try kernels.launch(try function(kernel, CUDARMSNorm.source), grid: (rows, 1, 1), block: (CUDARMSNorm.threads, 1, 1),
                               arguments: [.pointer(dOut.device), .pointer(x.device), .pointer(weight.device),
                                           .pointer(rstd.device), .pointer(dX.device), .int32(Int32(weight.count)),
                                           .float(weightOffset)])
        }
    }
}
