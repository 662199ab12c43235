import CCUDA
import Foundation

/// bitsandbytes' AdamW8bit on f32 parameters (Train/AdamW8bit.swift is the CPU twin). The kernels
/// keep bnb's expressions as written in its csrc/kernels.cu (`kOptimizerStatic8bit2StateBlockwise`,
/// `kOptimizer32bit2State`), including `__powf` and `__fdividef` where bnb uses them, so NVRTC
/// compiles them as nvcc compiles bnb's. The code books are baked in from `DynamicMap`.
enum CUDAAdamW8bit {
    static let source = """
    __constant__ float adamw8bit_signed[256] = { \(literals(DynamicMap.signed)) };
    __constant__ float adamw8bit_unsigned[256] = { \(literals(DynamicMap.unsigned)) };

    // bnb's quantize_2D: binary search over the sorted code book, then the nearer neighbour.
    __device__ __forceinline__ unsigned char adamw8bit_quantize(const float* code, float x, bool is_signed) {
        int pivot = 127, upper_pivot = 255, lower_pivot = 0;
        float lower = is_signed ? -1.0f : 0.0f, upper = 1.0f;
        float val = code[127];
        for (int i = 64; i > 0; i >>= 1) {
            if (x > val) { lower_pivot = pivot; lower = val; pivot += i; }
            else { upper_pivot = pivot; upper = val; pivot -= i; }
            val = code[pivot];
        }
        if (x > val) {
            const float midpoint = (upper + val) * 0.5f;
            return x > midpoint ? upper_pivot : pivot;
        } else {
            const float midpoint = (lower + val) * 0.5f;
            return x < midpoint ? lower_pivot : pivot;
        }
    }

    __device__ __forceinline__ bool adamw8bit_finite(float x) { return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u; }

    // Max over the 256 threads of a block; every thread gets it. shared: 8 floats.
    __device__ __forceinline__ float adamw8bit_block_max(float v, float* shared) {
        for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
        if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = v;
        __syncthreads();
        float m = shared[0];
        for (int w = 1; w < 8; w++) m = fmaxf(m, shared[w]);
        return m;
    }

    // One block of 256 threads per quantization block, one element per thread (bnb's launch).
    // Threads past n run with gradient 0 and codes 128/0, as bnb's loads fill them, and count in the max.
    extern "C" __global__ void __launch_bounds__(256) adamw8bit_blockwise(
            float* p, const float* g, unsigned char* state1, unsigned char* state2, float* absmax1, float* absmax2,
            const float beta1, const float beta2, const float eps, const int step, const float lr,
            const float weight_decay, const long long n) {
        __shared__ float code1[256], code2[256], max1[8], max2[8];
        const int t = threadIdx.x;
        code1[t] = adamw8bit_signed[t];
        code2[t] = adamw8bit_unsigned[t];
        const long long i = (long long)blockIdx.x * 256 + t;
        const bool valid = i < n;
        const float correction1 = 1.0f - __powf(beta1, step);
        const float correction2 = sqrtf(1.0f - __powf(beta2, step));
        const float step_size = __fdividef(-lr * correction2, correction1);
        const float g_val = valid ? g[i] : 0.0f;
        const unsigned char c1 = valid ? state1[i] : 128, c2 = valid ? state2[i] : 0;
        const float scale1 = absmax1[blockIdx.x], scale2 = absmax2[blockIdx.x];
        __syncthreads();

        float s1 = 0.0f, s2 = 0.0f;
        const bool finite = adamw8bit_finite(g_val);
        if (finite) {
            s2 = code2[c2] * scale2;
            s2 = (s2 * beta2) + (((1.0f - beta2) * g_val * g_val));
            s1 = code1[c1] * scale1;
            s1 = (s1 * beta1) + (((1.0f - beta1) * g_val));
        }
        const float new_max1 = adamw8bit_block_max(fmaxf(-3.402823466e38f, fabsf(s1)), max1);
        const float new_max2 = adamw8bit_block_max(fmaxf(-3.402823466e38f, fabsf(s2)), max2);
        if (t == 0) { absmax1[blockIdx.x] = new_max1; absmax2[blockIdx.x] = new_max2; }
        if (!valid) return;

        if (finite) {
            float pv = p[i] + ((step_size * (__fdividef(s1, (sqrtf(s2) + (correction2 * eps))))));
            if (weight_decay > 0.0f) pv = pv * (1.0f - (lr * weight_decay));
            p[i] = pv;
        }
        unsigned char q1 = adamw8bit_quantize(code1, __fdividef(s1, new_max1), true);
        // keep the first moment's sign through quantization (bnb's fix; uint8 wraps)
        if ((__float_as_uint(code1[q1]) >> 31) != (__float_as_uint(s1) >> 31)) {
            if (s1 > 0.0f) q1 += 1; else q1 -= 1;
        }
        state1[i] = q1;
        state2[i] = adamw8bit_quantize(code2, __fdividef(s2, new_max2), false);
    }

    // bnb's 32-bit Adam (tensors under min_8bit_size).
    extern "C" __global__ void adamw8bit_full(float* p, const float* g, float* state1, float* state2,
            const float beta1, const float beta2, const float eps, const int step, const float lr,
            const float weight_decay, const long long n) {
        const float correction1 = 1.0f - powf(beta1, step);
        const float correction2 = sqrtf(1.0f - powf(beta2, step));
        const float step_size = -lr * correction2 / correction1;
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
            const float g_val = g[i];
            const float s1 = state1[i] * beta1 + ((1.0f - beta1) * g_val);
            const float s2 = state2[i] * beta2 + ((1.0f - beta2) * (g_val * g_val));
            float pv = p[i] + (step_size * (s1 / (sqrtf(s2) + (eps * correction2))));
            if (weight_decay > 0.0f) pv = pv * (1.0f - (lr * weight_decay));
            state1[i] = s1; state2[i] = s2; p[i] = pv;
        }
    }
    """

    /// C float literals that parse back to exactly these values (Swift prints the shortest
    /// decimal that round-trips).
    static func literals(_ values: [Float]) -> String {
        values.map { v -> String in
            let text = "\(v)"
            return (text.contains(".") || text.contains("e") ? text : text + ".0") + "f"
        }.joined(separator: ", ")
    }
}

extension CUDABackend {
    public func adamw8bit(parameter: Tensor, gradient: Tensor, state: AdamW8bitState, step: Int, hyper: AdamWHyper) {
        expect(parameter, .f32)
        expect(gradient, .f32)
        let n = parameter.count
        guard n > 0 else { return }
        let scalars: [KernelArgument] = [.float(hyper.beta1), .float(hyper.beta2), .float(hyper.eps), .int32(Int32(step)),
                                         .float(hyper.lr), .float(hyper.weightDecay), .int64(Int64(n))]
        switch state {
        case let .quantized(codes1, codes2, absmax1, absmax2):
            for t in [codes1, codes2] { expect(t, .u8) }
            for t in [absmax1, absmax2] { expect(t, .f32) }
            let blocks = (n + AdamW8bit.blockSize - 1) / AdamW8bit.blockSize
            precondition(codes1.count == n && codes2.count == n && absmax1.count == blocks && absmax2.count == blocks,
                         "AdamW8bit state does not fit \(parameter)")
            run {
                try kernels.launch(try function("adamw8bit_blockwise", CUDAAdamW8bit.source), grid: (blocks, 1, 1),
                                   block: (AdamW8bit.blockSize, 1, 1),
                                   arguments: [.pointer(parameter.device), .pointer(gradient.device), .pointer(codes1.device),
                                               .pointer(codes2.device), .pointer(absmax1.device), .pointer(absmax2.device)]
                                       + scalars)
            }
        case let .full(state1, state2):
            for t in [state1, state2] { expect(t, .f32) }
            launchElementwise("adamw8bit_full", count: n,
                              [.pointer(parameter.device), .pointer(gradient.device), .pointer(state1.device),
                               .pointer(state2.device)] + scalars,
                              source: CUDAAdamW8bit.source)
        }
    }
}
