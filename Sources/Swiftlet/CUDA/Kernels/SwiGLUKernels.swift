import CCUDA

/// SwiGLU on the GPU, the same math as `SwiGLUKernel` (CPU/SwiGLU.swift), bf16 in and out, f32 math:
///   forward  out = silu(g)·u, silu(g) = g·σ(g)
///   backward dGate = dOut·u·σ(g)(1 + g(1 − σ(g))), dUp = dOut·silu(g)   (both overwritten)
public enum CUDASwiGLU {
    static let source = CUDAKernelSource.common + """
    extern "C" __global__ void swiftlet_swiglu_forward(const bf16_t* __restrict__ gate, const bf16_t* __restrict__ up,
                                                       bf16_t* __restrict__ out, long long n) {
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
            const float g = bf16_to_f32(gate[i]);
            out[i] = f32_to_bf16(g / (1.0f + expf(-g)) * bf16_to_f32(up[i]));
        }
    }

    extern "C" __global__ void swiftlet_swiglu_backward(const bf16_t* __restrict__ dout, const bf16_t* __restrict__ gate,
                                                        const bf16_t* __restrict__ up, bf16_t* __restrict__ dgate,
                                                        bf16_t* __restrict__ dup, long long n) {
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
            const float g = bf16_to_f32(gate[i]), u = bf16_to_f32(up[i]), d = bf16_to_f32(dout[i]);
            const float s = 1.0f / (1.0f + expf(-g));
            dgate[i] = f32_to_bf16(d * u * s * (1.0f + g * (1.0f - s)));
            dup[i] = f32_to_bf16(d * g * s);
        }
    }
    """

    static let threads = 256

    static func grid(_ cache: KernelCache, count: Int) -> Int {
        // Enough blocks to fill the GPU several times over; the loop is grid-stride.
        max(1, min((count + threads - 1) / threads, cache.device.multiprocessors * 32))
    }

    /// gate, up, out: `count` bf16 values.
    public static func forward(_ cache: KernelCache, gate: CUdeviceptr, up: CUdeviceptr, out: CUdeviceptr,
                               count: Int) throws {
        let k = try cache.function("swiftlet_swiglu_forward", source: source)
        try cache.launch(k, grid: (grid(cache, count: count), 1, 1), block: (threads, 1, 1),
                         arguments: [.pointer(gate), .pointer(up), .pointer(out), .int64(Int64(count))])
    }

    public static func backward(_ cache: KernelCache, dOut: CUdeviceptr, gate: CUdeviceptr, up: CUdeviceptr,
                                dGate: CUdeviceptr, dUp: CUdeviceptr, count: Int) throws {
        let k = try cache.function("swiftlet_swiglu_backward", source: source)
        try cache.launch(k, grid: (grid(cache, count: count), 1, 1), block: (threads, 1, 1),
                         arguments: [.pointer(dOut), .pointer(gate), .pointer(up), .pointer(dGate), .pointer(dUp),
                                     .int64(Int64(count))])
    }
}

extension CUDABackend {
    public func swiglu(gate: Tensor, up: Tensor, into out: Tensor) {
        for t in [gate, up, out] { expect(t, .bf16) }
        run { try CUDASwiGLU.forward(kernels, gate: gate.device, up: up.device, out: out.device, count: gate.count) }
    }

    public func swigluBackward(dOut: Tensor, gate: Tensor, up: Tensor, dGate: Tensor, dUp: Tensor) {
        for t in [dOut, gate, up, dGate, dUp] { expect(t, .bf16) }
        run { try CUDASwiGLU.backward(kernels, dOut: dOut.device, gate: gate.device, up: up.device,
                                      dGate: dGate.device, dUp: dUp.device, count: gate.count) }
    }
}
