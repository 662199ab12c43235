import CCUDA

/// The MLP's gated linear unit on the GPU, the same math as `GatedLinearUnitKernel`
/// (CPU/GatedLinearUnit.swift), 16-bit in and out, f32 math, one kernel per activation (a template
/// parameter, so the SiLU kernels compile to what they were before GELU existed):
///   SwiGLU  out = silu(g)·u;  dGate = dOut·u·σ(g)(1 + g(1 − σ(g))), dUp = dOut·silu(g)
///   GeGLU   out = gelu_tanh(g)·u, PyTorch's tanh-approximation formulas for the value and derivative
/// (both gradients overwritten).
public enum CUDAGatedLinearUnit {
    static let source = """
    #define GLU_SILU 0
    #define GLU_GELU_TANH 1

    // torch's GELU (tanh): 0.5·x·(1 + tanh(β(x + κx³))) and its derivative, in f32.
    __device__ __forceinline__ void glu_gelu_tanh(float x, float* value, float* derivative) {
        const float beta = 0.7978845608028654f, kappa = 0.044715f;
        const float square = x * x;
        const float t = tanhf(beta * (x + kappa * (square * x)));
        const float left = 0.5f * x, right = 1.0f + t;
        *value = left * right;
        *derivative = 0.5f * right + left * (1.0f - t * t) * beta * (1.0f + 3.0f * kappa * square);
    }

    template <int ACT>
    __device__ __forceinline__ void glu_forward(const storage_t* __restrict__ gate, const storage_t* __restrict__ up,
                                                storage_t* __restrict__ out, long long n) {
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
            const float g = to_f32(gate[i]);
            if (ACT == GLU_SILU) {
                out[i] = to_storage(g / (1.0f + expf(-g)) * to_f32(up[i]));
            } else {
                const float inner = 0.7978845608028654f * (g + 0.044715f * (g * g * g));
                out[i] = to_storage(0.5f * g * (1.0f + tanhf(inner)) * to_f32(up[i]));
            }
        }
    }

    template <int ACT>
    __device__ __forceinline__ void glu_backward(const storage_t* __restrict__ dout, const storage_t* __restrict__ gate,
                                                 const storage_t* __restrict__ up, storage_t* __restrict__ dgate,
                                                 storage_t* __restrict__ dup, long long n) {
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
            const float g = to_f32(gate[i]), u = to_f32(up[i]), d = to_f32(dout[i]);
            if (ACT == GLU_SILU) {
                const float s = 1.0f / (1.0f + expf(-g));
                dgate[i] = to_storage(d * u * s * (1.0f + g * (1.0f - s)));
                dup[i] = to_storage(d * g * s);
            } else {
                float value, derivative;
                glu_gelu_tanh(g, &value, &derivative);
                dgate[i] = to_storage(d * u * derivative);
                dup[i] = to_storage(d * value);
            }
        }
    }

    extern "C" __global__ void swiftlet_swiglu_forward(const storage_t* gate, const storage_t* up, storage_t* out, long long n) {
        glu_forward<GLU_SILU>(gate, up, out, n);
    }
    extern "C" __global__ void swiftlet_swiglu_backward(const storage_t* dout, const storage_t* gate, const storage_t* up,
                                                        storage_t* dgate, storage_t* dup, long long n) {
        glu_backward<GLU_SILU>(dout, gate, up, dgate, dup, n);
    }
    extern "C" __global__ void swiftlet_geglu_tanh_forward(const storage_t* gate, const storage_t* up, storage_t* out, long long n) {
        glu_forward<GLU_GELU_TANH>(gate, up, out, n);
    }
    extern "C" __global__ void swiftlet_geglu_tanh_backward(const storage_t* dout, const storage_t* gate, const storage_t* up,
                                                            storage_t* dgate, storage_t* dup, long long n) {
        glu_backward<GLU_GELU_TANH>(dout, gate, up, dgate, dup, n);
    }
    """

    static let threads = 256

    static func grid(_ backend: CUDABackend, count: Int) -> Int {
        // Enough blocks to fill the GPU several times over; the loop is grid-stride.
        max(1, min((count + threads - 1) / threads, backend.device.multiprocessors * 32))
    }

    /// The kernels' name stem of an activation.
    static func stem(_ activation: GatedActivation) -> String {
        switch activation {
        case .silu: return "swiftlet_swiglu"
        case .geluTanh: return "swiftlet_geglu_tanh"
        }
    }

    /// gate, up, out: `count` 16-bit values.
    public static func forward(_ backend: CUDABackend, _ activation: GatedActivation = .silu, gate: CUdeviceptr,
                               up: CUdeviceptr, out: CUdeviceptr, count: Int) throws {
        let k = try backend.function(stem(activation) + "_forward", source)
        try backend.kernels.launch(k, grid: (grid(backend, count: count), 1, 1), block: (threads, 1, 1),
                         arguments: [.pointer(gate), .pointer(up), .pointer(out), .int64(Int64(count))])
    }

    public static func backward(_ backend: CUDABackend, _ activation: GatedActivation = .silu, dOut: CUdeviceptr,
                                gate: CUdeviceptr, up: CUdeviceptr, dGate: CUdeviceptr, dUp: CUdeviceptr, count: Int) throws {
        let k = try backend.function(stem(activation) + "_backward", source)
        try backend.kernels.launch(k, grid: (grid(backend, count: count), 1, 1), block: (threads, 1, 1),
                         arguments: [.pointer(dOut), .pointer(gate), .pointer(up), .pointer(dGate), .pointer(dUp),
                                     .int64(Int64(count))])
    }
}

extension CUDABackend {
    public func gatedLinearUnit(_ activation: GatedActivation, gate: Tensor, up: Tensor, into out: Tensor) {
        for t in [gate, up, out] { expect(t, computeType) }
        run { try CUDAGatedLinearUnit.forward(self, activation, gate: gate.device, up: up.device, out: out.device,
                                              count: gate.count) }
    }

    public func gatedLinearUnitBackward(_ activation: GatedActivation, dOut: Tensor, gate: Tensor, up: Tensor,
                                        dGate: Tensor, dUp: Tensor) {
        for t in [dOut, gate, up, dGate, dUp] { expect(t, computeType) }
        run { try CUDAGatedLinearUnit.backward(self, activation, dOut: dOut.device, gate: gate.device, up: up.device,
                                               dGate: dGate.device, dUp: dUp.device, count: gate.count) }
    }
}
