import CCUDA

/// Cross-entropy over rows of bf16 logits with the gradient written in place (f32 math, as
/// transformers upcasts the logits for the loss). One block per row; -100 rows get loss 0 and a
/// zero gradient. With softcap > 0 (Gemma 2's final_logit_softcapping) every logit is read as
/// cap·tanh(z / cap) and the gradient is chained through the cap (· (1 − (c / cap)²)).
/// The twin of CPU/CrossEntropy.swift.
enum CUDACrossEntropy {
    static let source = """
    // The logit the loss sees: z, or cap·tanh(z / cap) (transformers' order: divide, tanh, multiply).
    __device__ __forceinline__ float ce_logit(float z, float softcap) {
        return softcap > 0.0f ? tanhf(z / softcap) * softcap : z;
    }

    extern "C" __global__ void cross_entropy_16(storage_t* logits, const int* labels, float* losses,
                                                  int vocab, float gradScale, int hasGrad, float softcap) {
        __shared__ float shared[32];
        const long long row = blockIdx.x;
        storage_t* x = logits + row * vocab;
        const int label = labels[row];
        if (label == -100) {
            if (hasGrad) for (int j = threadIdx.x; j < vocab; j += blockDim.x) x[j] = 0;
            if (threadIdx.x == 0) losses[row] = 0.0f;
            return;
        }
        float m = NEG_INF;
        for (int j = threadIdx.x; j < vocab; j += blockDim.x) m = fmaxf(m, ce_logit(to_f32(x[j]), softcap));
        m = block_max(m, shared);
        float s = 0.0f;
        for (int j = threadIdx.x; j < vocab; j += blockDim.x) s += expf(ce_logit(to_f32(x[j]), softcap) - m);
        s = block_sum(s, shared);
        const float lse = m + logf(s);
        const float target = ce_logit(to_f32(x[label]), softcap);
        __syncthreads();  // everyone has read x[label] before it is overwritten
        if (threadIdx.x == 0) losses[row] = lse - target;
        if (hasGrad) {
            for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
                const float c = ce_logit(to_f32(x[j]), softcap);
                float g = expf(c - lse) - (j == label ? 1.0f : 0.0f);
                if (softcap > 0.0f) { const float t = c / softcap; g *= 1.0f - t * t; }
                x[j] = to_storage(gradScale * g);
            }
        }
    }
    """
}

extension CUDABackend {
    public func crossEntropy(logits: Tensor, labels: Tensor, softcap: Float?, gradScale: Float?, losses: Tensor) {
        expect(logits, computeType); expect(labels, .i32); expect(losses, .f32)
        let rows = labels.count
        precondition(losses.count == rows, "one loss per row")
        guard rows > 0 else { return }
        run {
            try kernels.launch(try function("cross_entropy_16", CUDACrossEntropy.source),
                               grid: (rows, 1, 1), block: (256, 1, 1),
                               arguments: [.pointer(logits.device), .pointer(labels.device), .pointer(losses.device),
                                           .int32(Int32(logits.count / rows)), .float(gradScale ?? 0),
                                           .int32(gradScale == nil ? 0 : 1), .float(softcap ?? 0)])
        }
    }
}
