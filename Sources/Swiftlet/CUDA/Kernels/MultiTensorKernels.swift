import CCUDA

/// Multi-tensor kernels: one launch over a list of f32 tensors, each thread block taking one chunk
/// of one tensor from the table that MultiTensorTable.swift uploads. `header` is the C side of that
/// table; the optimizer kernel families (OptimizerKernels, AdamW8bitKernels) start with it too.
/// This family holds the gradient norm's reduction and the zero fill.
enum CUDAMultiTensor {
    /// Elements per chunk for the elementwise multi-tensor kernels: 16 per thread of a 256-thread
    /// block, enough blocks for a GPU on LoRA's ~10⁶–10⁸ elements, few enough to stay cheap.
    static let chunkSize = 4096
    static let threads = 256

    static let header = """
    // One tensor: up to 7 operand addresses and the element count (MultiTensorTables.wordsPerRow).
    struct mt_row { unsigned long long ptr[7]; long long n; };
    // One thread block's work: chunk `index` of row `row`.
    struct mt_chunk { int row; int index; };
    // The block's elements [begin, end) of `row`, chunk number `index` in it.
    struct mt_range { const mt_row* row; long long begin, end; int index; };
    __device__ __forceinline__ mt_range mt_block_range(const mt_row* rows, const mt_chunk* chunks, int chunk_size) {
        const mt_chunk c = chunks[blockIdx.x];
        mt_range r;
        r.row = rows + c.row;
        r.index = c.index;
        r.begin = (long long)c.index * chunk_size;
        r.end = min(r.begin + (long long)chunk_size, r.row->n);
        return r;
    }
    #define MT_OPERAND(range, k, type) ((type*)((range).row->ptr[k]))

    """

    static let source = header + """
    // Sum over a 256-thread block in a fixed tree (warp shuffles, then the 8 warps in order); the
    // result is in thread 0.
    __device__ __forceinline__ double mt_block_sum(double v, double* warps) {
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if ((threadIdx.x & 31) == 0) warps[threadIdx.x >> 5] = v;
        __syncthreads();
        double total = 0.0;
        if (threadIdx.x == 0) for (int w = 0; w < 8; w++) total += warps[w];
        return total;
    }

    // Σ (x·factor)² of each chunk. x·factor is rounded to float (as the CPU's in-place unscale did),
    // its square is exact in double, the sums are double. Thread t adds elements begin+t, begin+t+256,
    // … in order; the block tree is fixed: the same table gives the same bits on every run.
    extern "C" __global__ void __launch_bounds__(256) mt_sum_squares(
            const mt_row* rows, const mt_chunk* chunks, int chunk_size, float factor, double* partials) {
        __shared__ double warps[8];
        const mt_range r = mt_block_range(rows, chunks, chunk_size);
        const float* x = MT_OPERAND(r, 0, const float);
        double s = 0.0;
        for (long long i = r.begin + threadIdx.x; i < r.end; i += blockDim.x) {
            const double d = (double)(x[i] * factor);
            s += d * d;
        }
        s = mt_block_sum(s, warps);
        if (threadIdx.x == 0) partials[blockIdx.x] = s;
    }

    // The chunks' partial sums in one fixed order (thread t: partials t, t+256, …; then the block
    // tree). One block.
    extern "C" __global__ void __launch_bounds__(256) mt_sum_partials(const double* partials, int count, double* total) {
        __shared__ double warps[8];
        double s = 0.0;
        for (int i = threadIdx.x; i < count; i += blockDim.x) s += partials[i];
        s = mt_block_sum(s, warps);
        if (threadIdx.x == 0) total[0] = s;
    }

    extern "C" __global__ void __launch_bounds__(256) mt_zero(const mt_row* rows, const mt_chunk* chunks, int chunk_size) {
        const mt_range r = mt_block_range(rows, chunks, chunk_size);
        float* x = MT_OPERAND(r, 0, float);
        for (long long i = r.begin + threadIdx.x; i < r.end; i += blockDim.x) x[i] = 0.0f;
    }
    """
}

extension CUDABackend {
    /// Two launches (per-chunk partials, then their fixed-order sum) and one 8-byte download: the
    /// only host sync of an optimizer step. The order differs from the CPU's (which sums tensor by
    /// tensor in element order), so the two agree to rounding (~1e-15 relative), not bit for bit;
    /// the GPU's own result is the same on every run.
    public func sumOfSquares(_ tensors: [Tensor], scaledBy factor: Float) -> Double {
        for t in tensors { expect(t, .f32) }
        var total: Tensor?
        run {
            let table = try multiTensorTables.table(rows: tensors.map { [$0] }, chunkSize: CUDAMultiTensor.chunkSize, on: self)
            guard table.chunkCount > 0 else { return }
            let partials = try empty([table.chunkCount * 8], .u8), sum = try empty([8], .u8)
            try kernels.launch(try function("mt_sum_squares", CUDAMultiTensor.source), grid: (table.chunkCount, 1, 1),
                               block: (CUDAMultiTensor.threads, 1, 1),
                               arguments: [.pointer(table.rows), .pointer(table.chunks), .int32(Int32(CUDAMultiTensor.chunkSize)),
                                           .float(factor), .pointer(partials.device)])
            try kernels.launch(try function("mt_sum_partials", CUDAMultiTensor.source), grid: (1, 1, 1),
                               block: (CUDAMultiTensor.threads, 1, 1),
                               arguments: [.pointer(partials.device), .int32(Int32(table.chunkCount)), .pointer(sum.device)])
            total = sum
        }
        guard let total else { return 0 }
        return downloadBytes(total).withUnsafeBytes { Double(bitPattern: $0.loadUnaligned(as: UInt64.self)) }
    }

    public func zero(_ tensors: [Tensor]) {
        for t in tensors { expect(t, .f32) }
        launchMultiTensor("mt_zero", source: CUDAMultiTensor.source, rows: tensors.map { [$0] },
                          chunkSize: CUDAMultiTensor.chunkSize, threads: CUDAMultiTensor.threads, [])
    }
}
