import CCUDA

/// Elementwise CUDA kernels (grid-stride loops; math in f32, stored in the tensor's type) and the
/// CUDABackend ops that launch them: add, bias, scale, multiply, conversions and copies, Σx²,
/// dropout, random fill, embedding gather / scatter.
enum CUDAElementwise {
    static let source = CUDAKernelSource.common + CUDAKernelSource.reductions + """
    #define GRID_STRIDE(i, n) for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)
    extern "C" __global__ void add_bf16(const bf16_t* x, bf16_t* y, float alpha, long long n) {
        GRID_STRIDE(i, n) y[i] = f32_to_bf16(bf16_to_f32(y[i]) + alpha * bf16_to_f32(x[i]));
    }
    extern "C" __global__ void add_f32(const float* x, float* y, float alpha, long long n) {
        GRID_STRIDE(i, n) y[i] = y[i] + alpha * x[i];
    }
    extern "C" __global__ void add_f32_to_bf16(const float* x, bf16_t* y, float alpha, long long n) {
        GRID_STRIDE(i, n) y[i] = f32_to_bf16(bf16_to_f32(y[i]) + alpha * x[i]);
    }
    extern "C" __global__ void add_bias_bf16(const bf16_t* bias, bf16_t* x, int width, long long n) {
        GRID_STRIDE(i, n) x[i] = f32_to_bf16(bf16_to_f32(x[i]) + bf16_to_f32(bias[i % width]));
    }
    extern "C" __global__ void scale_bf16(bf16_t* x, float factor, long long n) {
        GRID_STRIDE(i, n) x[i] = f32_to_bf16(bf16_to_f32(x[i]) * factor);
    }
    extern "C" __global__ void scale_f32(float* x, float factor, long long n) {
        GRID_STRIDE(i, n) x[i] = x[i] * factor;
    }
    extern "C" __global__ void multiply_bf16(bf16_t* x, const bf16_t* y, long long n) {
        GRID_STRIDE(i, n) x[i] = f32_to_bf16(bf16_to_f32(x[i]) * bf16_to_f32(y[i]));
    }
    extern "C" __global__ void multiply_f32(float* x, const float* y, long long n) {
        GRID_STRIDE(i, n) x[i] = x[i] * y[i];
    }
    extern "C" __global__ void convert_f32_bf16(const float* x, bf16_t* y, long long n) {
        GRID_STRIDE(i, n) y[i] = f32_to_bf16(x[i]);
    }
    extern "C" __global__ void convert_bf16_f32(const bf16_t* x, float* y, long long n) {
        GRID_STRIDE(i, n) y[i] = bf16_to_f32(x[i]);
    }
    extern "C" __global__ void copy_u16(const unsigned short* x, unsigned short* y, long long n) {
        GRID_STRIDE(i, n) y[i] = x[i];
    }
    extern "C" __global__ void copy_u32(const unsigned int* x, unsigned int* y, long long n) {
        GRID_STRIDE(i, n) y[i] = x[i];
    }
    // Per-block partial sums of x²; the host adds the partials in double.
    extern "C" __global__ void sum_squares_f32(const float* x, long long n, float* partials) {
        __shared__ float shared[32];
        float s = 0.0f;
        GRID_STRIDE(i, n) s += x[i] * x[i];
        s = block_sum(s, shared);
        if (threadIdx.x == 0) partials[blockIdx.x] = s;
    }
    // The CPU backend's counter hash (SplitMix64 of seed + index): same values on every backend.
    __device__ __forceinline__ float counter_unit(unsigned long long seed, long long i) {
        unsigned long long z = seed + ((unsigned long long)i + 1ull) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        return (float)(z >> 40) * 5.9604644775390625e-8f;
    }
    extern "C" __global__ void fill_uniform_bf16(bf16_t* x, unsigned long long seed, float bound, long long n) {
        GRID_STRIDE(i, n) x[i] = f32_to_bf16((2.0f * counter_unit(seed, i) - 1.0f) * bound);
    }
    extern "C" __global__ void fill_uniform_f32(float* x, unsigned long long seed, float bound, long long n) {
        GRID_STRIDE(i, n) x[i] = (2.0f * counter_unit(seed, i) - 1.0f) * bound;
    }
    extern "C" __global__ void dropout_bf16(bf16_t* x, bf16_t* mask, float p, unsigned long long seed, long long n) {
        const float keep = 1.0f / (1.0f - p);
        GRID_STRIDE(i, n) {
            const float m = counter_unit(seed, i) >= p ? keep : 0.0f;
            mask[i] = f32_to_bf16(m);
            x[i] = f32_to_bf16(bf16_to_f32(x[i]) * m);
        }
    }
    extern "C" __global__ void dropout_f32(float* x, float* mask, float p, unsigned long long seed, long long n) {
        const float keep = 1.0f / (1.0f - p);
        GRID_STRIDE(i, n) {
            const float m = counter_unit(seed, i) >= p ? keep : 0.0f;
            mask[i] = m;
            x[i] = x[i] * m;
        }
    }
    extern "C" __global__ void embedding_bf16(const bf16_t* table, const int* ids, bf16_t* out, int width, long long n) {
        GRID_STRIDE(i, n * width) out[i] = table[(long long)ids[i / width] * width + i % width];
    }
    extern "C" __global__ void embedding_backward_f32(const bf16_t* dOut, const int* ids, float* dTable, int width, long long n) {
        GRID_STRIDE(i, n * width) atomicAdd(&dTable[(long long)ids[i / width] * width + i % width], bf16_to_f32(dOut[i]));
    }
    """
}

extension CUDABackend {
    /// Launches a grid-stride kernel over `count` elements.
    func launchElementwise(_ name: String, count: Int, _ arguments: [KernelArgument],
                           source: String = CUDAElementwise.source, op: String = #function) {
        guard count > 0 else { return }
        let threads = 256
        let blocks = Swift.min((count + threads - 1) / threads, device.multiprocessors * 16)
        run(op) { try kernels.launch(try kernels.function(name, source: source), grid: (blocks, 1, 1), block: (threads, 1, 1),
                                  arguments: arguments) }
    }

    public func add(_ x: Tensor, into y: Tensor, alpha: Float) {
        precondition(x.count == y.count, "add \(x) into \(y)")
        let kernel: String
        switch (x.dtype, y.dtype) {
        case (.f32, .f32): kernel = "add_f32"
        case (.bf16, .bf16): kernel = "add_bf16"
        case (.f32, .bf16): kernel = "add_f32_to_bf16"
        default: preconditionFailure("add \(x) into \(y)")
        }
        launchElementwise(kernel, count: y.count,
                          [.pointer(x.device), .pointer(y.device), .float(alpha), .int64(Int64(y.count))])
    }

    public func addBias(_ bias: Tensor, into x: Tensor) {
        expect(x, .bf16); expect(bias, .bf16)
        launchElementwise("add_bias_bf16", count: x.count,
                          [.pointer(bias.device), .pointer(x.device), .int32(Int32(bias.count)), .int64(Int64(x.count))])
    }

    public func scale(_ x: Tensor, by factor: Float) {
        launchElementwise(x.dtype == .f32 ? "scale_f32" : "scale_bf16", count: x.count,
                          [.pointer(x.device), .float(factor), .int64(Int64(x.count))])
    }

    public func multiply(_ x: Tensor, by y: Tensor) {
        precondition(x.count == y.count && x.dtype == y.dtype, "multiply \(x) by \(y)")
        launchElementwise(x.dtype == .f32 ? "multiply_f32" : "multiply_bf16", count: x.count,
                          [.pointer(x.device), .pointer(y.device), .int64(Int64(x.count))])
    }

    public func sumOfSquares(_ x: Tensor) -> Double {
        expect(x, .f32)
        let blocks = Swift.min(Swift.max((x.count + 255) / 256, 1), 1024)
        let partials = try! zeros([blocks], .f32)
        run { try kernels.launch(try kernels.function("sum_squares_f32", source: CUDAElementwise.source),
                                  grid: (blocks, 1, 1), block: (256, 1, 1),
                                  arguments: [.pointer(x.device), .int64(Int64(x.count)), .pointer(partials.device)]) }
        return download(partials).reduce(0.0) { $0 + Double($1) }
    }

    public func fillUniform(_ x: Tensor, seed: UInt64, bound: Float) {
        launchElementwise(x.dtype == .f32 ? "fill_uniform_f32" : "fill_uniform_bf16", count: x.count,
                          [.pointer(x.device), .uint64(seed), .float(bound), .int64(Int64(x.count))])
    }

    public func dropout(_ x: Tensor, probability: Float, seed: UInt64, mask: Tensor) {
        precondition(x.dtype == mask.dtype && x.count == mask.count, "dropout of \(x) with mask \(mask)")
        launchElementwise(x.dtype == .f32 ? "dropout_f32" : "dropout_bf16", count: x.count,
                          [.pointer(x.device), .pointer(mask.device), .float(probability), .uint64(seed), .int64(Int64(x.count))])
    }

    public func embedding(table: Tensor, ids: Tensor, into out: Tensor) {
        expect(table, .bf16); expect(ids, .i32); expect(out, .bf16)
        let width = table.shape[1]
        launchElementwise("embedding_bf16", count: ids.count * width,
                          [.pointer(table.device), .pointer(ids.device), .pointer(out.device),
                           .int32(Int32(width)), .int64(Int64(ids.count))])
    }

    /// dTable must be f32 here (atomic adds).
    public func embeddingBackward(dOut: Tensor, ids: Tensor, into dTable: Tensor) {
        expect(dOut, .bf16); expect(ids, .i32); expect(dTable, .f32)
        let width = dTable.shape[1]
        launchElementwise("embedding_backward_f32", count: ids.count * width,
                          [.pointer(dOut.device), .pointer(ids.device), .pointer(dTable.device),
                           .int32(Int32(width)), .int64(Int64(ids.count))])
    }

    /// Same-type copy, or f32 ↔ bf16 conversion, on the device.
    func convert(_ source: Tensor, into destination: Tensor) {
        let n = source.count
        let args: [KernelArgument] = [.pointer(source.device), .pointer(destination.device), .int64(Int64(n))]
        switch (source.dtype, destination.dtype) {
        case (.f32, .bf16): launchElementwise("convert_f32_bf16", count: n, args)
        case (.bf16, .f32): launchElementwise("convert_bf16_f32", count: n, args)
        case let (a, b) where a == b && a.size == 2: launchElementwise("copy_u16", count: n, args)
        case let (a, b) where a == b && a.size == 4: launchElementwise("copy_u32", count: n, args)
        default: preconditionFailure("no device copy from \(source.dtype) to \(destination.dtype)")
        }
    }
}
