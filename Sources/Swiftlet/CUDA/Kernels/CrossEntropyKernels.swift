import CCUDA

/// Cross-entropy over rows of bf16 logits with the gradient written in place (f32 math, as
/// transformers upcasts the logits for the loss). One block per row; -100 rows get loss 0 and a
/// zero gradient. The twin of CPU/CrossEntropy.swift.
enum CUDACrossEntropy {
    static let source = """
    extern "C" __global__ void cross_entropy_16(storage_t* logits, const int* labels, float* losses,
                                                  int vocab, float gradScale, int hasGrad) {
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
        for (int j = threadIdx.x; j < vocab; j += blockDim.x) m = fmaxf(m, to_f32(x[j]));
        m = block_max(m, shared);
        float s = 0.0f;
        for (int j = threadIdx.x; j < vocab; j += blockDim.x) s += expf(to_f32(x[j]) - m);
        s = block_sum(s, shared);
        const float lse = m + logf(s);
        const float target = to_f32(x[label]);
        __syncthreads();  // everyone has read x[label] before it is overwritten
        if (threadIdx.x == 0) losses[row] = lse - target;
        if (hasGrad) {
            for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
                const float g = expf(to_f32(x[j]) - lse) - (j == label ? 1.0f : 0.0f);
                x[j] = to_storage(gradScale * g);
            }
        }
    }
    """
}

extension CUDABackend {
    public func crossEntropy(logits: Tensor, labels: Tensor, gradScale: Float?, losses: Tensor) {
        expect(logits, computeType); expect(labels, .i32); expect(losses, .f32)
        let rows = labels.count
        precondition(losses.count == rows, "one loss per row")
        guard rows > 0 else { return }
        run {
            try kernels.launch(try function("cross_entropy_16", CUDACrossEntropy.source),
                               grid: (rows, 1, 1), block: (256, 1, 1),
                               arguments: [.pointer(logits.device), .pointer(labels.device), .pointer(losses.device),
                                           .int32(Int32(logits.count / rows)), .float(gradScale ?? 0),
                                           .int32(gradScale == nil ? 0 : 1)])
        }
    }
}
