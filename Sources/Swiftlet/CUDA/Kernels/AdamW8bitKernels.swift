import CCUDA
import Foundation

/// bitsandbytes' AdamW8bit on f32 parameters (Train/AdamW8bit.swift is the CPU twin). The kernels
/// keep bnb's expressions as written in its csrc/kernels.cu (`kOptimizerStatic8bit2StateBlockwise`,
/// `kOptimizer32bit2State`), including `__powf` and `__fdividef` where bnb uses them, so NVRTC
/// compiles them as nvcc compiles bnb's. The code books are baked in from `DynamicMap`. Each kernel
/// runs once over every tensor of its state kind (the multi-tensor table, MultiTensorTable.swift),
/// reading the gradient times the unscale and clip factors (GradientMultiplier.swift).
enum CUDAAdamW8bit {
    static let source = CUDAMultiTensor.header + """
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

    // One block of 256 threads per quantization block, one element per thread (bnb's launch): the
    // multi-tensor table's chunks are the quantization blocks (chunk size 256), chunk k of a tensor
    // using absmax[k]. Operands per row: parameter, gradient, codes1, codes2, absmax1, absmax2.
    // Threads past n run with gradient 0 and codes 128/0, as bnb's loads fill them, and count in the max.
    extern "C" __global__ void __launch_bounds__(256) mt_adamw8bit_blockwise(
            const mt_row* rows, const mt_chunk* chunks, int chunk_size, const float unscale, const float clip,
            const float beta1, const float beta2, const float eps, const int step, const float lr,
            const float weight_decay) {
        __shared__ float code1[256], code2[256], max1[8], max2[8];
        const mt_range r = mt_block_range(rows, chunks, chunk_size);
        float* p = MT_OPERAND(r, 0, float);
        const float* g = MT_OPERAND(r, 1, const float);
        unsigned char* state1 = MT_OPERAND(r, 2, unsigned char);
        unsigned char* state2 = MT_OPERAND(r, 3, unsigned char);
        float* absmax1 = MT_OPERAND(r, 4, float);
        float* absmax2 = MT_OPERAND(r, 5, float);
        const int t = threadIdx.x;
        code1[t] = adamw8bit_signed[t];
        code2[t] = adamw8bit_unsigned[t];
        const long long i = r.begin + t;
        const bool valid = i < r.end;
        const float correction1 = 1.0f - __powf(beta1, step);
        const float correction2 = sqrtf(1.0f - __powf(beta2, step));
        const float step_size = __fdividef(-lr * correction2, correction1);
        // the gradient as an in-place unscale and clip would have left it (padding lanes: 0 as loaded)
        const float g_val = valid ? (g[i] * unscale) * clip : 0.0f;
        const unsigned char c1 = valid ? state1[i] : 128, c2 = valid ? state2[i] : 0;
        const float scale1 = absmax1[r.index], scale2 = absmax2[r.index];
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
        if (t == 0) { absmax1[r.index] = new_max1; absmax2[r.index] = new_max2; }
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

    // bnb's 32-bit Adam (tensors under min_8bit_size). Operands per row: parameter, gradient, state1, state2.
    extern "C" __global__ void __launch_bounds__(256) mt_adamw8bit_full(
            const mt_row* rows, const mt_chunk* chunks, int chunk_size, const float unscale, const float clip,
            const float beta1, const float beta2, const float eps, const int step, const float lr,
            const float weight_decay) {
        const mt_range r = mt_block_range(rows, chunks, chunk_size);
        float* p = MT_OPERAND(r, 0, float);
        const float* g = MT_OPERAND(r, 1, const float);
        float* state1 = MT_OPERAND(r, 2, float);
        float* state2 = MT_OPERAND(r, 3, float);
        const float correction1 = 1.0f - powf(beta1, step);
        const float correction2 = sqrtf(1.0f - powf(beta2, step));
        const float step_size = -lr * correction2 / correction1;
        for (long long i = r.begin + threadIdx.x; i < r.end; i += blockDim.x) {
            const float g_val = (g[i] * unscale) * clip;
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
    /// Two launches at most: the 8-bit-state tensors (one thread block per quantization block of any
    /// of them) and the 32-bit-state ones.
    public func adamw8bit(parameters: [Tensor], gradients: [Tensor], states: [AdamW8bitState],
                          gradientMultiplier: GradientMultiplier, step: Int, hyper: AdamWHyper) {
        precondition(gradients.count == parameters.count && states.count == parameters.count,
                     "AdamW8bit needs a gradient and a state per parameter")
        var quantized: [[Tensor]] = [], full: [[Tensor]] = []
        for (i, state) in states.enumerated() {
            let (p, g) = (parameters[i], gradients[i]), n = p.count
            expect(p, .f32)
            expect(g, .f32)
            precondition(g.count == n, "AdamW8bit gradient \(g) does not fit \(p)")
            switch state {
            case let .quantized(codes1, codes2, absmax1, absmax2):
                for t in [codes1, codes2] { expect(t, .u8) }
                for t in [absmax1, absmax2] { expect(t, .f32) }
                let blocks = (n + AdamW8bit.blockSize - 1) / AdamW8bit.blockSize
                precondition(codes1.count == n && codes2.count == n && absmax1.count == blocks && absmax2.count == blocks,
                             "AdamW8bit state does not fit \(p)")
                quantized.append([p, g, codes1, codes2, absmax1, absmax2])
            case let .full(state1, state2):
                for t in [state1, state2] { expect(t, .f32) }
                precondition(state1.count == n && state2.count == n, "AdamW8bit state does not fit \(p)")
                full.append([p, g, state1, state2])
            }
        }
        let scalars: [KernelArgument] = [.float(gradientMultiplier.unscale), .float(gradientMultiplier.clip),
                                         .float(hyper.beta1), .float(hyper.beta2), .float(hyper.eps), .int32(Int32(step)),
                                         .float(hyper.lr), .float(hyper.weightDecay)]
        if !quantized.isEmpty {
            launchMultiTensor("mt_adamw8bit_blockwise", source: CUDAAdamW8bit.source, rows: quantized,
                              chunkSize: AdamW8bit.blockSize, threads: AdamW8bit.blockSize, scalars)
        }
        if !full.isEmpty {
            launchMultiTensor("mt_adamw8bit_full", source: CUDAAdamW8bit.source, rows: full,
                              chunkSize: CUDAMultiTensor.chunkSize, threads: CUDAMultiTensor.threads, scalars)
        }
    }
}
