import CCUDA

/// The MLP's gated linear unit on the GPU, the same math as `GatedLinearUnitKernel`
/// (CPU/GatedLinearUnit.swift), 16-bit in and out, f32 math, one kernel per activation (a template
/// parameter, so the SiLU kernels compile to what they were before GELU existed), each scalar and
/// eight elements a thread:
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

    // One element's output, and its two gradients (dGate, dUp), in f32.
    template <int ACT>
    __device__ __forceinline__ float glu_value(float g, float u) {
        if (ACT == GLU_SILU) return g / (1.0f + expf(-g)) * u;
        const float inner = 0.7978845608028654f * (g + 0.044715f * (g * g * g));
        return 0.5f * g * (1.0f + tanhf(inner)) * u;
    }
    template <int ACT>
    __device__ __forceinline__ void glu_gradients(float g, float u, float d, float& dg, float& du) {
        if (ACT == GLU_SILU) {
            const float s = 1.0f / (1.0f + expf(-g));
            dg = d * u * s * (1.0f + g * (1.0f - s));
            du = d * g * s;
        } else {
            float value, derivative;
            glu_gelu_tanh(g, &value, &derivative);
            dg = d * u * derivative;
            du = d * value;
        }
    }

    // Where element e of gate (and up, dgate, dup) sits: e itself, or with FUSED, row e / width of a
    // [rows, 2·width] matrix holding gate | up side by side (a fused gate_up projection's output, up
    // `width` further along): (e / width)·2·width + e % width. out and dout are [rows, width] either way.
    template <bool FUSED>
    __device__ __forceinline__ long long glu_at(long long e, long long width) {
        if (!FUSED) return e;
        const long long row = e / width;
        return row * 2 * width + (e - row * width);
    }

    // V8: eight elements a thread through 16-byte accesses (n % 8 == 0, 16-byte aligned; with FUSED also
    // width % 8 == 0, so that eight never straddle a row); the same math per element. Every element is
    // read before it is written, so dgate/dup may alias gate/up.
    template <int ACT, bool V8, bool FUSED = false>
    __device__ __forceinline__ void glu_forward(const storage_t* __restrict__ gate, const storage_t* __restrict__ up,
                                                storage_t* __restrict__ out, long long n, long long width = 0) {
        const long long items = V8 ? n / 8 : n;
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < items; i += (long long)gridDim.x * blockDim.x) {
            if (V8) {
                float g[8], u[8];
                const long long at = glu_at<FUSED>(8 * i, width);
                load8(gate + at, g);
                load8(up + at, u);
                #pragma unroll
                for (int k = 0; k < 8; k++) g[k] = glu_value<ACT>(g[k], u[k]);
                store8(out + 8 * i, g);
            } else {
                const long long at = glu_at<FUSED>(i, width);
                out[i] = to_storage(glu_value<ACT>(to_f32(gate[at]), to_f32(up[at])));
            }
        }
    }

    template <int ACT, bool V8, bool FUSED = false>
    __device__ __forceinline__ void glu_backward(const storage_t* dout, const storage_t* gate, const storage_t* up,
                                                 storage_t* dgate, storage_t* dup, long long n, long long width = 0) {
        const long long items = V8 ? n / 8 : n;
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < items; i += (long long)gridDim.x * blockDim.x) {
            if (V8) {
                float g[8], u[8], d[8], dg[8], du[8];
                const long long at = glu_at<FUSED>(8 * i, width);
                load8(gate + at, g);
                load8(up + at, u);
                load8(dout + 8 * i, d);
                #pragma unroll
                for (int k = 0; k < 8; k++) glu_gradients<ACT>(g[k], u[k], d[k], dg[k], du[k]);
                store8(dgate + at, dg);
                store8(dup + at, du);
            } else {
                const long long at = glu_at<FUSED>(i, width);
                float dg, du;
                glu_gradients<ACT>(to_f32(gate[at]), to_f32(up[at]), to_f32(dout[i]), dg, du);
                dgate[at] = to_storage(dg);
                dup[at] = to_storage(du);
            }
        }
    }

    #define GLU_KERNELS(STEM, ACT, SUFFIX, V8)                                                                   \\
    extern "C" __global__ void STEM##_forward##SUFFIX(const storage_t* gate, const storage_t* up, storage_t* out, \\
                                                      long long n) {                                           \\
        glu_forward<ACT, V8>(gate, up, out, n);                                                                  \\
    }                                                                                                            \\
    extern "C" __global__ void STEM##_backward##SUFFIX(const storage_t* dout, const storage_t* gate,             \\
                                                       const storage_t* up, storage_t* dgate, storage_t* dup,    \\
                                                       long long n) {                                            \\
        glu_backward<ACT, V8>(dout, gate, up, dgate, dup, n);                                                    \\
    }                                                                                                            \\
    extern "C" __global__ void STEM##_fused_forward##SUFFIX(const storage_t* gate_up, storage_t* out, long long n, \\
                                                            long long width) {                                   \\
        glu_forward<ACT, V8, true>(gate_up, gate_up + width, out, n, width);                                     \\
    }                                                                                                            \\
    extern "C" __global__ void STEM##_fused_backward##SUFFIX(const storage_t* dout, const storage_t* gate_up,     \\
                                                             storage_t* dgate_up, long long n, long long width) { \\
        glu_backward<ACT, V8, true>(dout, gate_up, gate_up + width, dgate_up, dgate_up + width, n, width);       \\
    }
    GLU_KERNELS(swiftlet_swiglu, GLU_SILU, , false)
    GLU_KERNELS(swiftlet_swiglu, GLU_SILU, _v8, true)
    GLU_KERNELS(swiftlet_geglu_tanh, GLU_GELU_TANH, , false)
    GLU_KERNELS(swiftlet_geglu_tanh, GLU_GELU_TANH, _v8, true)
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
                               up: CUdeviceptr, out: CUdeviceptr, count: Int, vectors: Bool = false) throws {
        try launch(backend, activation, "_forward", count: count, vectors: vectors,
                   [.pointer(gate), .pointer(up), .pointer(out), .int64(Int64(count))])
    }

    public static func backward(_ backend: CUDABackend, _ activation: GatedActivation = .silu, dOut: CUdeviceptr,
                                gate: CUdeviceptr, up: CUdeviceptr, dGate: CUdeviceptr, dUp: CUdeviceptr, count: Int,
                                vectors: Bool = false) throws {
        try launch(backend, activation, "_backward", count: count, vectors: vectors,
                   [.pointer(dOut), .pointer(gate), .pointer(up), .pointer(dGate), .pointer(dUp), .int64(Int64(count))])
    }

    /// The activation's kernel `stem + kind` (its eight-wide form with `vectors`) over `count` elements.
    static func launch(_ backend: CUDABackend, _ activation: GatedActivation, _ kind: String, count: Int, vectors: Bool,
                       _ arguments: [KernelArgument]) throws {
        let k = try backend.function(stem(activation) + kind + (vectors ? "_v8" : ""), source)
        try backend.kernels.launch(k, grid: (grid(backend, count: vectors ? count / 8 : count), 1, 1), block: (threads, 1, 1),
                                   arguments: arguments)
    }
}

extension CUDABackend {
    public func gatedLinearUnit(_ activation: GatedActivation, gateUp: Tensor, into out: Tensor) {
        for t in [gateUp, out] { expect(t, computeType) }
        let width = out.shape[1]
        precondition(gateUp.shape == [out.shape[0], 2 * width], "gated unit of \(gateUp.shape) into \(out.shape)")
        run {
            try CUDAGatedLinearUnit.launch(self, activation, "_fused_forward", count: out.count,
                                           vectors: width % 8 == 0 && vectorizable(gateUp, out),
                                           [.pointer(gateUp.device), .pointer(out.device), .int64(Int64(out.count)), .int64(Int64(width))])
        }
    }

    public func gatedLinearUnitBackward(_ activation: GatedActivation, dOut: Tensor, gateUp: Tensor, dGateUp: Tensor) {
        for t in [dOut, gateUp, dGateUp] { expect(t, computeType) }
        let width = dOut.shape[1]
        precondition(gateUp.shape == [dOut.shape[0], 2 * width] && dGateUp.shape == gateUp.shape,
                     "gated unit backward of \(gateUp.shape) from \(dOut.shape)")
        run {
            try CUDAGatedLinearUnit.launch(self, activation, "_fused_backward", count: dOut.count,
                                           vectors: width % 8 == 0 && vectorizable(dOut, gateUp, dGateUp),
                                           [.pointer(dOut.device), .pointer(gateUp.device), .pointer(dGateUp.device),
                                            .int64(Int64(dOut.count)), .int64(Int64(width))])
        }
    }

    public func gatedLinearUnit(_ activation: GatedActivation, gate: Tensor, up: Tensor, into out: Tensor) {
        for t in [gate, up, out] { expect(t, computeType) }
        run { try CUDAGatedLinearUnit.forward(self, activation, gate: gate.device, up: up.device, out: out.device,
                                              count: gate.count, vectors: vectorizable(gate, up, out)) }
    }

    public func gatedLinearUnitBackward(_ activation: GatedActivation, dOut: Tensor, gate: Tensor, up: Tensor,
                                        dGate: Tensor, dUp: Tensor) {
        for t in [dOut, gate, up, dGate, dUp] { expect(t, computeType) }
        run { try CUDAGatedLinearUnit.backward(self, activation, dOut: dOut.device, gate: gate.device, up: up.device,
                                               dGate: dGate.device, dUp: dUp.device, count: gate.count,
                                               vectors: vectorizable(dOut, gate, up, dGate, dUp)) }
    }
}
