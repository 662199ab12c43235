import CCUDA

/// Elementwise CUDA kernels (grid-stride loops; math in f32, stored in the tensor's type) and the
/// CUDABackend ops that launch them: add, bias, scale, multiply, conversions and copies,
/// dropout, random fill, embedding gather / scatter.
enum CUDAElementwise {
    static let source = """
    #define GRID_STRIDE(i, n) for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)
    extern "C" __global__ void add_16(const storage_t* x, storage_t* y, float alpha, long long n) {
        GRID_STRIDE(i, n) y[i] = to_storage(to_f32(y[i]) + alpha * to_f32(x[i]));
    }
    // add_16 eight at a time (n % 8 == 0, 16-byte aligned): the residual adds of every layer.
    extern "C" __global__ void add_16_v8(const storage_t* __restrict__ x, storage_t* __restrict__ y, float alpha, long long n) {
        GRID_STRIDE(v, n / 8) {
            float a[8], b[8];
            load8(x + 8 * v, a);
            load8(y + 8 * v, b);
            #pragma unroll
            for (int k = 0; k < 8; k++) b[k] = b[k] + alpha * a[k];
            store8(y + 8 * v, b);
        }
    }
    extern "C" __global__ void add_f32(const float* x, float* y, float alpha, long long n) {
        GRID_STRIDE(i, n) y[i] = y[i] + alpha * x[i];
    }
    extern "C" __global__ void add_f32_to_16(const float* x, storage_t* y, float alpha, long long n) {
        GRID_STRIDE(i, n) y[i] = to_storage(to_f32(y[i]) + alpha * x[i]);
    }
    extern "C" __global__ void add_bias_16(const storage_t* bias, storage_t* x, int width, long long n) {
        GRID_STRIDE(i, n) x[i] = to_storage(to_f32(x[i]) + to_f32(bias[i % width]));
    }
    extern "C" __global__ void scale_16(storage_t* x, float factor, long long n) {
        GRID_STRIDE(i, n) x[i] = to_storage(to_f32(x[i]) * factor);
    }
    extern "C" __global__ void scale_f32(float* x, float factor, long long n) {
        GRID_STRIDE(i, n) x[i] = x[i] * factor;
    }
    extern "C" __global__ void multiply_16(storage_t* x, const storage_t* y, long long n) {
        GRID_STRIDE(i, n) x[i] = to_storage(to_f32(x[i]) * to_f32(y[i]));
    }
    extern "C" __global__ void multiply_f32(float* x, const float* y, long long n) {
        GRID_STRIDE(i, n) x[i] = x[i] * y[i];
    }
    extern "C" __global__ void convert_f32_16(const float* x, storage_t* y, long long n) {
        GRID_STRIDE(i, n) y[i] = to_storage(x[i]);
    }
    extern "C" __global__ void convert_16_f32(const storage_t* x, float* y, long long n) {
        GRID_STRIDE(i, n) y[i] = to_f32(x[i]);
    }
    // The CPU backend's counter hash (SplitMix64 of seed + index): same values on every backend.
    __device__ __forceinline__ float counter_unit(unsigned long long seed, long long i) {
        unsigned long long z = seed + ((unsigned long long)i + 1ull) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        return (float)(z >> 40) * 5.9604644775390625e-8f;
    }
    extern "C" __global__ void fill_uniform_16(storage_t* x, unsigned long long seed, float bound, long long n) {
        GRID_STRIDE(i, n) x[i] = to_storage((2.0f * counter_unit(seed, i) - 1.0f) * bound);
    }
    extern "C" __global__ void fill_uniform_f32(float* x, unsigned long long seed, float bound, long long n) {
        GRID_STRIDE(i, n) x[i] = (2.0f * counter_unit(seed, i) - 1.0f) * bound;
    }
    extern "C" __global__ void dropout_16(storage_t* x, storage_t* mask, float p, unsigned long long seed, long long n) {
        const float keep = 1.0f / (1.0f - p);
        GRID_STRIDE(i, n) {
            const float m = counter_unit(seed, i) >= p ? keep : 0.0f;
            mask[i] = to_storage(m);
            x[i] = to_storage(to_f32(x[i]) * m);
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
    extern "C" __global__ void embedding_16(const storage_t* table, const int* ids, storage_t* out, int width, long long n) {
        GRID_STRIDE(i, n * width) out[i] = table[(long long)ids[i / width] * width + i % width];
    }
    extern "C" __global__ void embedding_backward_f32(const storage_t* dOut, const int* ids, float* dTable, int width, long long n) {
        GRID_STRIDE(i, n * width) atomicAdd(&dTable[(long long)ids[i / width] * width + i % width], to_f32(dOut[i]));
    }
    """
}

extension CUDABackend {
    /// Whether the eight-wide kernels apply: whole vectors of 16-bit values, 16-byte aligned.
    func vectorizable(_ tensors: Tensor...) -> Bool {
        tensors.allSatisfy { $0.count % 8 == 0 && $0.device % 16 == 0 }
    }

    /// Launches a grid-stride kernel over `count` elements.
    func launchElementwise(_ name: String, count: Int, _ arguments: [KernelArgument],
                           source: String = CUDAElementwise.source, op: String = #function) {
        guard count > 0 else { return }
        let threads = 256
        let blocks = Swift.min((count + threads - 1) / threads, device.multiprocessors * 16)
        run(op) { try kernels.launch(try function(name, source), grid: (blocks, 1, 1), block: (threads, 1, 1),
                                  arguments: arguments) }
    }

    public func add(_ x: Tensor, into y: Tensor, alpha: Float) {
        precondition(x.count == y.count, "add \(x) into \(y)")
        let kernel: String
        switch (x.dtype, y.dtype) {
        case (.f32, .f32): kernel = "add_f32"
        case let (a, b) where a == computeType && b == computeType:
            kernel = vectorizable(x, y) ? "add_16_v8" : "add_16"
        case let (a, b) where a == .f32 && b == computeType: kernel = "add_f32_to_16"
        default: preconditionFailure("add \(x) into \(y)")
        }
        launchElementwise(kernel, count: kernel == "add_16_v8" ? y.count / 8 : y.count,
                          [.pointer(x.device), .pointer(y.device), .float(alpha), .int64(Int64(y.count))])
    }

    public func addBias(_ bias: Tensor, into x: Tensor) {
        expect(x, computeType); expect(bias, computeType)
        launchElementwise("add_bias_16", count: x.count,
                          [.pointer(bias.device), .pointer(x.device), .int32(Int32(bias.count)), .int64(Int64(x.count))])
    }

    public func scale(_ x: Tensor, by factor: Float) {
        launchElementwise(x.dtype == .f32 ? "scale_f32" : "scale_16", count: x.count,
                          [.pointer(x.device), .float(factor), .int64(Int64(x.count))])
    }

    public func multiply(_ x: Tensor, by y: Tensor) {
        precondition(x.count == y.count && x.dtype == y.dtype, "multiply \(x) by \(y)")
        launchElementwise(x.dtype == .f32 ? "multiply_f32" : "multiply_16", count: x.count,
                          [.pointer(x.device), .pointer(y.device), .int64(Int64(x.count))])
    }

    public func fillUniform(_ x: Tensor, seed: UInt64, bound: Float) {
        launchElementwise(x.dtype == .f32 ? "fill_uniform_f32" : "fill_uniform_16", count: x.count,
                          [.pointer(x.device), .uint64(seed), .float(bound), .int64(Int64(x.count))])
    }

    public func dropout(_ x: Tensor, probability: Float, seed: UInt64, mask: Tensor) {
        precondition(x.dtype == mask.dtype && x.count == mask.count, "dropout of \(x) with mask \(mask)")
        launchElementwise(x.dtype == .f32 ? "dropout_f32" : "dropout_16", count: x.count,
                          [.pointer(x.device), .pointer(mask.device), .float(probability), .uint64(seed), .int64(Int64(x.count))])
    }

    public func embedding(table: Tensor, ids: Tensor, into out: Tensor) {
        expect(table, computeType); expect(ids, .i32); expect(out, computeType)
        let width = table.shape[1]
        launchElementwise("embedding_16", count: ids.count * width,
                          [.pointer(table.device), .pointer(ids.device), .pointer(out.device),
                           .int32(Int32(width)), .int64(Int64(ids.count))])
    }

    /// dTable must be f32 here (atomic adds).
    public func embeddingBackward(dOut: Tensor, ids: Tensor, into dTable: Tensor) {
        expect(dOut, computeType); expect(ids, .i32); expect(dTable, .f32)
        let width = dTable.shape[1]
        launchElementwise("embedding_backward_f32", count: ids.count * width,
                          [.pointer(dOut.device), .pointer(ids.device), .pointer(dTable.device),
                           .int32(Int32(width)), .int64(Int64(ids.count))])
    }

    /// Same-type copy, or f32 ↔ 16-bit conversion, on the device.
    func convert(_ source: Tensor, into destination: Tensor) {
        let n = source.count
        let args: [KernelArgument] = [.pointer(source.device), .pointer(destination.device), .int64(Int64(n))]
        switch (source.dtype, destination.dtype) {
        case let (a, b) where a == .f32 && b == computeType: launchElementwise("convert_f32_16", count: n, args)
        case let (a, b) where a == computeType && b == .f32: launchElementwise("convert_16_f32", count: n, args)
        default: preconditionFailure("no device copy from \(source.dtype) to \(destination.dtype)")
        }
    }
}
