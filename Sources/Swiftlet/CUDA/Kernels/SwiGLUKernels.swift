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
                               count: Int) throws {
        let k = try backend.function("swiftlet_swiglu_forward", source)
        try backend.kernels.launch(k, grid: (grid(backend, count: count), 1, 1), block: (threads, 1, 1),
                         arguments: [.pointer(gate), .pointer(up), .pointer(out), .int64(Int64(count))])
    }

    public static func backward(_ backend: CUDABackend, dOut: CUdeviceptr, gate: CUdeviceptr, up: CUdeviceptr,
                                dGate: CUdeviceptr, dUp: CUdeviceptr, count: Int) throws {
        let k = try backend.function("swiftlet_swiglu_backward", source)
        try backend.kernels.launch(k, grid: (grid(backend, count: count), 1, 1), block: (threads, 1, 1),
                         arguments: [.pointer(dOut), .pointer(gate), .pointer(up), .pointer(dGate), .pointer(dUp),
                                     .int64(Int64(count))])
    }
}

extension CUDABackend {
    public func swiglu(gate: Tensor, up: Tensor, into out: Tensor) {
        for t in [gate, up, out] { expect(t, computeType) }
        run { try CUDASwiGLU.forward(self, gate: gate.device, up: up.device, out: out.device, count: gate.count) }
    }

    public func swigluBackward(dOut: Tensor, gate: Tensor, up: Tensor, dGate: Tensor, dUp: Tensor) {
        for t in [dOut, gate, up, dGate, dUp] { expect(t, computeType) }
        run { try CUDASwiGLU.backward(self, dOut: dOut.device, gate: gate.device, up: up.device,
                                      dGate: dGate.device, dUp: dUp.device, count: gate.count) }
    }
}
