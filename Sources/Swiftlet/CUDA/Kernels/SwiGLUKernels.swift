import CCUDA

/// SwiGLU on the GPU, the same math as `SwiGLUKernel` (CPU/SwiGLU.swift), bf16 in and out, f32 math:
///   forward  out = silu(g)·u, silu(g) = g·σ(g)
///   backward dGate = dOut·u·σ(g)(1 + g(1 − σ(g))), dUp = dOut·silu(g)   (both overwritten)
public enum CUDASwiGLU {
    static let source = """
    extern "C" __global__ void swiftlet_swiglu_forward(const storage_t* __restrict__ gate, const storage_t* __restrict__ up,
                                                       storage_t* __restrict__ out, long long n) {
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
            const float g = to_f32(gate[i]);
            out[i] = to_storage(g / (1.0f + expf(-g)) * to_f32(up[i]));
        }
    }

    // The same two kernels eight elements at a time (n % 8 == 0, 16-byte aligned), the same math per element.
    extern "C" __global__ void swiftlet_swiglu_forward_v8(const storage_t* __restrict__ gate, const storage_t* __restrict__ up,
                                                          storage_t* __restrict__ out, long long n) {
        for (long long v = blockIdx.x * (long long)blockDim.x + threadIdx.x; v < n / 8; v += (long long)gridDim.x * blockDim.x) {
            float g[8], u[8];
            load8(gate + 8 * v, g);
            load8(up + 8 * v, u);
            #pragma unroll
            for (int k = 0; k < 8; k++) g[k] = g[k] / (1.0f + expf(-g[k])) * u[k];
            store8(out + 8 * v, g);
        }
    }

    extern "C" __global__ void swiftlet_swiglu_backward_v8(const storage_t* __restrict__ dout, const storage_t* __restrict__ gate,
                                                           const storage_t* __restrict__ up, storage_t* __restrict__ dgate,
                                                           storage_t* __restrict__ dup, long long n) {
        for (long long v = blockIdx.x * (long long)blockDim.x + threadIdx.x; v < n / 8; v += (long long)gridDim.x * blockDim.x) {
            float g[8], u[8], d[8], dg[8], du[8];
            load8(gate + 8 * v, g);
            load8(up + 8 * v, u);
            load8(dout + 8 * v, d);
            #pragma unroll
            for (int k = 0; k < 8; k++) {
                const float s = 1.0f / (1.0f + expf(-g[k]));
                dg[k] = d[k] * u[k] * s * (1.0f + g[k] * (1.0f - s));
                du[k] = d[k] * g[k] * s;
            }
            store8(dgate + 8 * v, dg);
            store8(dup + 8 * v, du);
        }
    }

    extern "C" __global__ void swiftlet_swiglu_backward(const storage_t* __restrict__ dout, const storage_t* __restrict__ gate,
                                                        const storage_t* __restrict__ up, storage_t* __restrict__ dgate,
                                                        storage_t* __restrict__ dup, long long n) {
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
            const float g = to_f32(gate[i]), u = to_f32(up[i]), d = to_f32(dout[i]);
            const float s = 1.0f / (1.0f + expf(-g));
            dgate[i] = to_storage(d * u * s * (1.0f + g * (1.0f - s)));
            dup[i] = to_storage(d * g * s);
        }
    }
    """

    static let threads = 256

    static func grid(_ backend: CUDABackend, count: Int) -> Int {
        // Enough blocks to fill the GPU several times over; the loop is grid-stride.
        max(1, min((count + threads - 1) / threads, backend.device.multiprocessors * 32))
    }

    /// gate, up, out: `count` bf16 values.
    public static func forward(_ backend: CUDABackend, gate: CUdeviceptr, up: CUdeviceptr, out: CUdeviceptr,
                               count: Int, vectors: Bool = false) throws {
        let k = try backend.function(vectors ? "swiftlet_swiglu_forward_v8" : "swiftlet_swiglu_forward", source)
        try backend.kernels.launch(k, grid: (grid(backend, count: vectors ? count / 8 : count), 1, 1), block: (threads, 1, 1),
                         arguments: [.pointer(gate), .pointer(up), .pointer(out), .int64(Int64(count))])
    }

    public static func backward(_ backend: CUDABackend, dOut: CUdeviceptr, gate: CUdeviceptr, up: CUdeviceptr,
                                dGate: CUdeviceptr, dUp: CUdeviceptr, count: Int, vectors: Bool = false) throws {
        let k = try backend.function(vectors ? "swiftlet_swiglu_backward_v8" : "swiftlet_swiglu_backward", source)
        try backend.kernels.launch(k, grid: (grid(backend, count: vectors ? count / 8 : count), 1, 1), block: (threads, 1, 1),
                         arguments: [.pointer(dOut), .pointer(gate), .pointer(up), .pointer(dGate), .pointer(dUp),
                                     .int64(Int64(count))])
    }
}

extension CUDABackend {
    public func swiglu(gate: Tensor, up: Tensor, into out: Tensor) {
        for t in [gate, up, out] { expect(t, computeType) }
        run { try CUDASwiGLU.forward(self, gate: gate.device, up: up.device, out: out.device, count: gate.count,
                                     vectors: vectorizable(gate, up, out)) }
    }

    public func swigluBackward(dOut: Tensor, gate: Tensor, up: Tensor, dGate: Tensor, dUp: Tensor) {
        for t in [dOut, gate, up, dGate, dUp] { expect(t, computeType) }
        run { try CUDASwiGLU.backward(self, dOut: dOut.device, gate: gate.device, up: up.device,
                                      dGate: dGate.device, dUp: dUp.device, count: gate.count,
                                      vectors: vectorizable(dOut, gate, up, dGate, dUp)) }
    }
}
