import CCUDA

/// The LoRA products on tensor cores, exact to f32 ("3×bf16", like cuBLAS's 3×TF32): an f32 value v
/// splits into three bf16 parts v1 = bf16(v), v2 = bf16(v − v1), v3 = bf16(v − v1 − v2) (round to
/// nearest even, each difference exact in f32), with |v − (v1 + v2 + v3)| ≤ 2⁻²⁴ |v| for normal
/// values (`BFloat16.split3`). A bf16 activation times a bf16 part is exact in f32 and cuBLASLt
/// accumulates in f32, so a product with an f32 LoRA tensor becomes bf16 GEMMs on the parts:
///
///   a. z  = α·x·Aᵀ    A stacked [3r, K];           Z3 = x·A3ᵀ [T, 3r];  z = α·(Z3 column blocks)
///   b. dz = s·dY·B    B side by side [O, 3r];      Z3 = dY·B3;          dz = s·(column blocks)
///   c. y += s·z·Bᵀ    z parts side by side [1,1,2,1,3,2] [T, 6r], B [1,2,1,3,1,2] [O, 6r]: one GEMM,
///                     beta 1 (cuBLASLt adds y in f32 and rounds once: PEFT's order)
///   d. dX += dz·A     dz side by side [1,1,2,1,3,2], A stacked [1,2,1,3,1,2] [6r, K]: one GEMM, beta 1
///   e. dB += s·dYᵀ·z  z side by side [T, 3r];      P = dYᵀ·Z3 [O, 3r];  dB += s·(column blocks)
///   f. dA += α·dzᵀ·x  dz side by side [T, 3r];     P = DZ3ᵀ·x [3r, K];  dA += α·(row blocks)
///
/// When both sides are f32 (c, d), the six cross terms down to 2⁻¹⁶ are kept ((1,1) (1,2) (2,1)
/// (1,3) (3,1) (2,2)); the dropped ones are ≤ 2⁻²⁴ of the product. Block sums run smallest part
/// first ((B3 + B2) + B1). cuBLASLt is deterministic for a fixed plan and nothing here uses atomics.
/// Used by the CUDA `loraDown` / `loraUpAdd` / `loraGradient` when storage is bf16 and r % 8 == 0;
/// `SWIFTLET_LORA_KERNELS=1` keeps the hand-written kernels of LoRAKernels.swift.
enum CUDASplitBF16 {
    static let source = """
    // f32 → bf16 (as f32), round to nearest even, NaN → 0x7FC0: the bf16 prelude's to_storage, here
    // too so the family compiles under either storage prelude.
    __device__ __forceinline__ float split_round_bf16(float f) {
        unsigned int u = __float_as_uint(f);
        if ((u & 0x7fffffffu) > 0x7f800000u) return __uint_as_float(0x7fc00000u);
        u += 0x7fffu + ((u >> 16) & 1u);
        return __uint_as_float(u & 0xffff0000u);
    }

    // src f32 [rows, cols] → n bf16 planes: stacked, plane i is dst[i·rows .. (i+1)·rows) ([n·rows, cols]);
    // side by side, row r is [plane 0 | plane 1 | ...], rows ld elements apart (ld ≥ n·cols: the planes
    // may be columns of a wider matrix). Plane i holds part (parts >> 2i) & 3 ∈ {1, 2, 3} of every
    // element. n ≤ 8.
    __device__ __forceinline__ void split_planes(const float* __restrict__ src, unsigned short* __restrict__ dst,
                                                 long long rows, int cols, int n, int parts, int stacked, long long ld) {
        const long long count = rows * cols;
        for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < count;
             e += (long long)gridDim.x * blockDim.x) {
            const float v = src[e];
            float p[3];
            p[0] = split_round_bf16(v);
            const unsigned int a = __float_as_uint(v) & 0x7fffffffu;
            // v above bf16's largest finite value (but finite): truncate instead of rounding to inf
            if (a < 0x7f800000u && (__float_as_uint(p[0]) & 0x7fffffffu) == 0x7f800000u)
                p[0] = __uint_as_float(__float_as_uint(v) & 0xffff0000u);
            if ((__float_as_uint(p[0]) & 0x7fffffffu) >= 0x7f800000u) {
                p[1] = 0.0f; p[2] = 0.0f;   // inf or NaN: all in the first part
            } else {
                const float r1 = __fsub_rn(v, p[0]);       // exact
                p[1] = split_round_bf16(r1);
                p[2] = split_round_bf16(__fsub_rn(r1, p[1]));   // exact difference, then rounded
            }
            const long long row = e / cols;
            const int col = (int)(e - row * cols);
            for (int i = 0; i < n; ++i) {
                const int which = (parts >> (2 * i)) & 3;
                const float part = which == 1 ? p[0] : which == 2 ? p[1] : p[2];
                const long long index = stacked ? ((long long)i * rows + row) * cols + col
                                                : row * ld + (long long)i * cols + col;
                dst[index] = (unsigned short)(__float_as_uint(part) >> 16);
            }
        }
    }
    extern "C" __global__ void split_bf16(const float* __restrict__ src, unsigned short* __restrict__ dst,
                                          long long rows, int cols, int n, int parts, int stacked, long long ld) {
        split_planes(src, dst, rows, cols, n, parts, stacked, ld);
    }

    // Several jobs in one launch, grid row blockIdx.y doing job blockIdx.y: N of them passed by value
    // (__grid_constant__: indexed in place, not copied), 8 for a product's operands, 32 for a layer's
    // prepared weights or a mixture's experts.
    template <class Job, int N> struct Jobs { Job job[N]; };

    // A split with split_bf16's arguments: the grouped LoRA ops put each adapter's parts into its place
    // of one matrix, one launch instead of one per adapter.
    struct SplitJob {
        const float* src; unsigned short* dst; long long rows; long long ld; int cols; int n; int parts; int stacked;
        __device__ __forceinline__ void run() const { split_planes(src, dst, rows, cols, n, parts, stacked, ld); }
    };
    extern "C" __global__ void split_bf16_jobs(const __grid_constant__ Jobs<SplitJob, 8> jobs) { jobs.job[blockIdx.y].run(); }
    extern "C" __global__ void split_bf16_jobs32(const __grid_constant__ Jobs<SplitJob, 32> jobs) { jobs.job[blockIdx.y].run(); }

    // out [rows, cols] (f32) = alpha · ((B3 + B2) + B1), or out += that, where B1..B3 are src's
    // three column blocks (src [rows, 3·cols], rows ld elements apart: ld ≥ 3·cols) or, rowBlocks, its
    // three row blocks (src [3·rows, cols]).
    __device__ __forceinline__ void sum_blocks(const float* __restrict__ src, float* __restrict__ out,
                                               long long rows, int cols, int rowBlocks, float alpha, int accumulate,
                                               long long ld) {
        const long long count = rows * cols;
        for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < count;
             e += (long long)gridDim.x * blockDim.x) {
            float b1, b2, b3;
            if (rowBlocks) {
                b1 = src[e]; b2 = src[count + e]; b3 = src[2 * count + e];
            } else {
                const long long row = e / cols;
                const long long base = row * ld + (e - row * cols);
                b1 = src[base]; b2 = src[base + cols]; b3 = src[base + 2 * cols];
            }
            const float s = alpha * ((b3 + b2) + b1);
            out[e] = accumulate ? out[e] + s : s;
        }
    }
    extern "C" __global__ void sum_blocks3(const float* __restrict__ src, float* __restrict__ out,
                                           long long rows, int cols, int rowBlocks, float alpha, int accumulate,
                                           long long ld) {
        sum_blocks(src, out, rows, cols, rowBlocks, alpha, accumulate, ld);
    }

    // A block sum with sum_blocks3's arguments: a grouped op's adapters, each summed from its columns or
    // rows of one product, or a mixture's experts' gradients, each from its own product.
    struct SumJob {
        const float* src; float* out; long long rows; long long ld; int cols; int rowBlocks; float alpha; int accumulate;
        __device__ __forceinline__ void run() const { sum_blocks(src, out, rows, cols, rowBlocks, alpha, accumulate, ld); }
    };
    extern "C" __global__ void sum_blocks3_jobs(const __grid_constant__ Jobs<SumJob, 8> jobs) { jobs.job[blockIdx.y].run(); }
    extern "C" __global__ void sum_blocks3_jobs32(const __grid_constant__ Jobs<SumJob, 32> jobs) { jobs.job[blockIdx.y].run(); }
    """

    /// `SWIFTLET_LORA_KERNELS=1` keeps the hand-written LoRA kernels (for comparisons); the doctor
    /// flips it to time both.
    nonisolated(unsafe) static var forceKernels = CUDALibrarySearch.processEnvironment["SWIFTLET_LORA_KERNELS"] == "1"

    /// `SWIFTLET_LAUNCH_JOBS=0` runs every split and block sum of a jobs launch as a launch of its own
    /// (`split_bf16`, `sum_blocks3`): the same bits, for comparisons and as a way around the jobs kernels.
    nonisolated(unsafe) static var launchesJobs = CUDALibrarySearch.processEnvironment["SWIFTLET_LAUNCH_JOBS"] != "0"

    /// The widest side (6 parts of rank 64) that the LoRA path's products have: the profile counts
    /// GEMMs with a side this thin apart.
    static let thinWidth = 6 * LoRAShapes.maxRank

    /// Part orders of the one-GEMM products (c, d): activation side and weight side, pairwise.
    static let crossLeft = [1, 1, 2, 1, 3, 2], crossRight = [1, 2, 1, 3, 1, 2]

    /// The part list packed for the kernel: 2 bits per plane.
    static func code(_ parts: [Int]) -> Int32 {
        precondition(parts.count <= 8 && parts.allSatisfy { (1...3).contains($0) }, "split parts \(parts)")
        return parts.enumerated().reduce(0) { $0 | Int32($1.element << (2 * $1.offset)) }
    }
}

extension BFloat16 {
    /// The three bf16 parts of v (as Floats): v1 = bf16(v), v2 = bf16(v − v1), v3 = bf16(v − v1 − v2),
    /// each difference exact in f32; |v − (v1 + v2 + v3)| ≤ 2⁻²⁴ |v| for normal v (2⁻²³ above
    /// bf16's largest finite value, where v1 is truncated instead of rounded to inf), and ≤ 2⁻¹³⁴
    /// absolute below bf16's smallest subnormal. inf and NaN go whole into v1. The reference of the
    /// CUDA `split_bf16` kernel (CUDA/Kernels/SplitBF16Kernels.swift).
    public static func split3(_ v: Float) -> (Float, Float, Float) {
        var v1 = round(v)
        if v.isFinite && v1.isInfinite { v1 = Float(bitPattern: v.bitPattern & 0xFFFF_0000) }
        guard v1.isFinite else { return (v1, 0, 0) }
        let r1 = v - v1
        let v2 = round(r1)
        return (v1, v2, round(r1 - v2))
    }
}

extension CUDABackend {
    /// Runs host code that can only fail by running out of device memory (a scratch `empty`), like
    /// `run` does for device work, without `run`'s profiling (the GEMMs and kernels inside profile
    /// themselves).
    func orFatal(_ body: () throws -> Void) {
        do { try body() } catch { fatalError("\(error)") }
    }

    /// Whether the LoRA ops run as split-bf16 GEMMs (see `CUDASplitBF16`): bf16 storage, and the rank
    /// and feature widths multiples of 8 so that every row the GEMMs read is 16-byte aligned.
    func usesSplitLoRA(rank r: Int, features: Int...) -> Bool {
        computeType == .bf16 && r % 8 == 0 && features.allSatisfy { $0 % 8 == 0 } && !CUDASplitBF16.forceKernels
    }

    /// f32 `src` [R, C] → bf16 planes of `parts`: stacked [n·R, C] or side by side [R, n·C].
    func splitBF16(_ src: Tensor, parts: [Int], stacked: Bool) throws -> Tensor {
        let rows = src.shape[0], cols = src.shape[1], n = parts.count
        let out = try empty(stacked ? [n * rows, cols] : [rows, n * cols], .bf16)
        splitBF16(src, parts: parts, stacked: stacked, into: out.device, rowStride: n * cols)
        return out
    }

    /// The planes written at `dst`: stacked ([n·R, C] contiguous), or side by side in the first n·C
    /// columns of a bf16 matrix whose rows are `rowStride` elements apart.
    func splitBF16(_ src: Tensor, parts: [Int], stacked: Bool, into dst: CUdeviceptr, rowStride: Int) {
        expect(src, .f32)
        let rows = src.shape[0], cols = src.shape[1], n = parts.count
        precondition(stacked || rowStride >= n * cols, "split planes wider than their rows")
        let count = rows * cols
        guard count > 0 else { return }
        let blocks = Swift.max(1, Swift.min((count + 255) / 256, device.multiprocessors * 16))
        run("splitBF16") {
            try kernels.launch(try function("split_bf16", CUDASplitBF16.source), grid: (blocks, 1, 1), block: (256, 1, 1),
                               arguments: [.pointer(src.device), .pointer(dst), .int64(Int64(rows)),
                                           .int32(Int32(cols)), .int32(Int32(n)), .int32(CUDASplitBF16.code(parts)),
                                           .int32(stacked ? 1 : 0), .int64(Int64(rowStride))])
        }
    }

    /// One split of `splitBF16(jobs:)`: `src`'s planes of `parts` written at `dst` as `splitBF16(_:parts:stacked:into:rowStride:)` writes them.
    struct SplitJob {
        var src: Tensor
        var parts: [Int]
        var stacked: Bool
        var dst: CUdeviceptr
        var rowStride: Int

        /// The C struct `SplitJob` of the kernel source, field by field.
        var bytes: [UInt8] {
            var job = KernelJob()
            job.append(UInt64(src.device)); job.append(UInt64(dst)); job.append(Int64(src.shape[0])); job.append(Int64(rowStride))
            job.append(Int32(src.shape[1])); job.append(Int32(parts.count)); job.append(CUDASplitBF16.code(parts))
            job.append(Int32(stacked ? 1 : 0))
            return job.bytes
        }
    }

    /// Every job's split, up to 32 a launch (a grid row each).
    func splitBF16(jobs: [SplitJob]) {
        for job in jobs {
            expect(job.src, .f32)
            precondition(job.stacked || job.rowStride >= job.parts.count * job.src.shape[1], "split planes wider than their rows")
        }
        guard CUDASplitBF16.launchesJobs else {
            for job in jobs { splitBF16(job.src, parts: job.parts, stacked: job.stacked, into: job.dst, rowStride: job.rowStride) }
            return
        }
        launch(jobs: jobs.map { ($0.bytes, $0.src.count) }, family: [(8, "split_bf16_jobs"), (32, "split_bf16_jobs32")],
               jobBytes: 48, op: "splitBF16")
    }

    /// Jobs of one kernel family in as few launches as its job counts allow (`family`: each kernel's
    /// capacity and name, smallest first), each job a grid row, the jobs passed by value (unused slots
    /// zero and never read: the grid has a row per job). The grid's x size fits the largest job's
    /// elements (`jobs`: each job's bytes and element count).
    func launch(jobs: [(bytes: [UInt8], elements: Int)], family: [(capacity: Int, name: String)], jobBytes: Int,
                source: String = CUDASplitBF16.source, op: String) {
        var start = 0
        while start < jobs.count {
            let remaining = jobs.count - start
            let (width, name) = family.first { $0.capacity >= remaining } ?? family.last!
            let batch = jobs[start..<Swift.min(start + width, jobs.count)]
            start += batch.count
            let largest = batch.map(\.elements).max() ?? 0
            guard largest > 0 else { continue }
            var bytes: [UInt8] = []
            for job in batch {
                precondition(job.bytes.count == jobBytes, "\(name): a job of \(job.bytes.count) bytes, not \(jobBytes)")
                bytes += job.bytes
            }
            bytes += [UInt8](repeating: 0, count: (width - batch.count) * jobBytes)
            let blocks = Swift.max(1, Swift.min((largest + 255) / 256, device.multiprocessors * 16 / batch.count))
            run(op) {
                try kernels.launch(try function(name, source), grid: (blocks, batch.count, 1),
                                   block: (256, 1, 1), arguments: [.bytes(bytes)])
            }
        }
    }

    /// One block sum of `sumBlocks3(jobs:)`: as `sumBlocks3(_:rowStride:rowBlocks:alpha:accumulate:into:)`.
    struct SumJob {
        var src: CUdeviceptr
        var rowStride: Int
        var rowBlocks: Bool
        var alpha: Float
        var accumulate: Bool
        var out: Tensor

        /// The C struct `SumJob` of the kernel source, field by field.
        var bytes: [UInt8] {
            var job = KernelJob()
            job.append(UInt64(src)); job.append(UInt64(out.device)); job.append(Int64(out.shape[0])); job.append(Int64(rowStride))
            job.append(Int32(out.shape[1])); job.append(Int32(rowBlocks ? 1 : 0)); job.append(alpha.bitPattern)
            job.append(Int32(accumulate ? 1 : 0))
            return job.bytes
        }
    }

    /// Every job's block sum, up to 32 a launch.
    func sumBlocks3(jobs: [SumJob]) {
        for job in jobs {
            expect(job.out, .f32)
            precondition(job.rowBlocks || job.rowStride >= 3 * job.out.shape[1], "column blocks wider than their rows")
        }
        guard CUDASplitBF16.launchesJobs else {
            for job in jobs {
                sumBlocks3(job.src, rowStride: job.rowStride, rowBlocks: job.rowBlocks, alpha: job.alpha,
                           accumulate: job.accumulate, into: job.out)
            }
            return
        }
        launch(jobs: jobs.map { ($0.bytes, $0.out.count) }, family: [(8, "sum_blocks3_jobs"), (32, "sum_blocks3_jobs32")],
               jobBytes: 48, op: "sumBlocks3")
    }

    /// out (f32 [R, C]) = alpha · (B3 + B2 + B1), or += that, over `src`'s three column blocks
    /// ([R, 3C]) or row blocks ([3R, C]).
    func sumBlocks3(_ src: Tensor, rowBlocks: Bool, alpha: Float, accumulate: Bool, into out: Tensor) {
        expect(src, .f32)
        let rows = out.shape[0], cols = out.shape[1]
        precondition(src.shape == (rowBlocks ? [3 * rows, cols] : [rows, 3 * cols]), "sum of blocks \(src) into \(out)")
        sumBlocks3(src.device, rowStride: 3 * cols, rowBlocks: rowBlocks, alpha: alpha, accumulate: accumulate, into: out)
    }

    /// The same over blocks at `src`: row blocks contiguous ([3R, C]), or column blocks in the first 3C
    /// columns of an f32 matrix whose rows are `rowStride` elements apart.
    func sumBlocks3(_ src: CUdeviceptr, rowStride: Int, rowBlocks: Bool, alpha: Float, accumulate: Bool, into out: Tensor) {
        expect(out, .f32)
        let rows = out.shape[0], cols = out.shape[1]
        precondition(rowBlocks || rowStride >= 3 * cols, "column blocks wider than their rows")
        let count = rows * cols
        guard count > 0 else { return }
        let blocks = Swift.max(1, Swift.min((count + 255) / 256, device.multiprocessors * 16))
        run("sumBlocks3") {
            try kernels.launch(try function("sum_blocks3", CUDASplitBF16.source), grid: (blocks, 1, 1), block: (256, 1, 1),
                               arguments: [.pointer(src), .pointer(out.device), .int64(Int64(rows)),
                                           .int32(Int32(cols)), .int32(rowBlocks ? 1 : 0), .float(alpha),
                                           .int32(accumulate ? 1 : 0), .int64(Int64(rowStride))])
        }
    }

    /// a (w [r, K]) and b (w [K, r], transposed): Z3 = x · parts of w, z = alpha · sum of Z3's column blocks.
    func splitLoRADown(_ x: Tensor, _ w: Tensor, weightTransposed: Bool, into z: Tensor, alpha: Float) throws {
        let tokens = x.shape[0], r = z.shape[1]
        let w3 = try preparedParts([w], weightTransposed ? .dzB3 : .downA3)
            ?? splitBF16(w, parts: [1, 2, 3], stacked: !weightTransposed)   // [3r, K] or [K, 3r]
        let z3 = try empty([tokens, 3 * r], .f32)
        matmul(x, transposeA: false, w3, transposeB: !weightTransposed, into: z3, alpha: 1, beta: 0)
        sumBlocks3(z3, rowBlocks: false, alpha: alpha, accumulate: false, into: z)
    }

    /// c (w [O, r]) and d (w [r, O], transposed): one GEMM over six cross terms into y, beta 1.
    /// Both operands split in one launch (z alone where w's parts were prepared).
    func splitLoRAUpAdd(_ z: Tensor, _ w: Tensor, weightTransposed: Bool, scale: Float, into y: Tensor) throws {
        if let w6 = preparedParts([w], weightTransposed ? .upA6 : .upB6) {
            let z6 = try splitBF16(z, parts: CUDASplitBF16.crossLeft, stacked: false)
            matmul(z6, transposeA: false, w6, transposeB: !weightTransposed, into: y, alpha: scale, beta: 1)
            return
        }
        let r = z.shape[1], o = y.shape[1]
        let z6 = try empty([z.shape[0], 6 * r], .bf16)                                // [T, 6r]
        let w6 = try empty(weightTransposed ? [6 * r, o] : [o, 6 * r], .bf16)         // [6r, O] or [O, 6r]
        splitBF16(jobs: [SplitJob(src: z, parts: CUDASplitBF16.crossLeft, stacked: false, dst: z6.device, rowStride: 6 * r),
                         SplitJob(src: w, parts: CUDASplitBF16.crossRight, stacked: weightTransposed, dst: w6.device,
                                  rowStride: weightTransposed ? o : 6 * r)])
        matmul(z6, transposeA: false, w6, transposeB: !weightTransposed, into: y, alpha: scale, beta: 1)
    }

    /// e (g [O, r]: P = mᵀ·Z3 [O, 3r], column blocks) and f (g [r, O], transposed: P = Z3ᵀ·m [3r, O],
    /// row blocks); g += alpha · sum.
    func splitLoRAGradient(_ m: Tensor, _ z: Tensor, into g: Tensor, gradientTransposed: Bool, alpha: Float) throws {
        let o = m.shape[1], r = z.shape[1]
        let z3 = try splitBF16(z, parts: [1, 2, 3], stacked: false)   // [T, 3r]
        if gradientTransposed {
            let p = try empty([3 * r, o], .f32)
            matmul(z3, transposeA: true, m, transposeB: false, into: p, alpha: 1, beta: 0)
            sumBlocks3(p, rowBlocks: true, alpha: alpha, accumulate: true, into: g)
        } else {
            let p = try empty([o, 3 * r], .f32)
            matmul(m, transposeA: true, z3, transposeB: false, into: p, alpha: 1, beta: 0)
            sumBlocks3(p, rowBlocks: false, alpha: alpha, accumulate: true, into: g)
        }
    }
}

/// The bytes of a kernel job struct, written field by field in the C struct's order, little-endian
/// (each field at its natural alignment when the 8-byte ones come first).
struct KernelJob {
    private(set) var bytes: [UInt8] = []
    mutating func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
}

/// Adapters that share their input (q, k and v; gate and up) as one split-bf16 GEMM each way instead
/// of one per adapter: the down products read x once ([Σ 3r_i, K] parts stacked by adapter), the A
/// gradients read x once ([T, Σ 3r_i] parts side by side), and the up products add into dL/dx once
/// ([T, Σ 6r_i] · [Σ 6r_i, K], beta 1: the sum over the adapters in f32, rounded once). Each
/// adapter's parts and block sums are those of its single-adapter op.
extension CUDABackend {
    /// Whether every adapter of the group takes the split path (else the ops run one adapter at a time).
    private func groupsSplitLoRA(_ ranks: [Int], features: Int) -> Bool {
        ranks.count > 1 && ranks.allSatisfy { usesSplitLoRA(rank: $0, features: features) }
    }

    public func loraDown(_ x: Tensor, _ weights: [Tensor], into zs: [Tensor]) {
        precondition(weights.count == zs.count, "one z per adapter")
        for (w, z) in zip(weights, zs) { LoRAShapes.checkDown(x, w, weightTransposed: false, z); expect(w, .f32); expect(z, .f32) }
        expect(x, computeType)
        let tokens = x.shape[0], k = x.shape[1], ranks = zs.map { $0.shape[1] }, width = 3 * ranks.reduce(0, +)
        guard tokens > 0 else { return }
        guard groupsSplitLoRA(ranks, features: k) else {
            for (w, z) in zip(weights, zs) { loraDown(x, w, weightTransposed: false, into: z, alpha: 1) }
            return
        }
        orFatal {
            // each adapter's three parts stacked, adapter after adapter
            let w3: Tensor
            if let prepared = preparedParts(weights, .downA3) {
                w3 = prepared
            } else {
                w3 = try empty([width, k], .bf16)
                var row = 0
                splitBF16(jobs: zip(weights, ranks).map { w, r in
                    defer { row += 3 * r }
                    return SplitJob(src: w, parts: [1, 2, 3], stacked: true, dst: w3.device + UInt64(row * k * 2), rowStride: k)
                })
            }
            let z3 = try empty([tokens, width], .f32)
            matmul(x, transposeA: false, w3, transposeB: true, into: z3, alpha: 1, beta: 0)
            var column = 0
            sumBlocks3(jobs: zip(zs, ranks).map { z, r in
                defer { column += 3 * r }
                return SumJob(src: z3.device + UInt64(column * 4), rowStride: width, rowBlocks: false, alpha: 1, accumulate: false, out: z)
            })
        }
    }

    public func loraGradient(_ x: Tensor, _ zs: [Tensor], intoTransposed gradients: [Tensor]) {
        precondition(zs.count == gradients.count, "one gradient per adapter")
        for (z, g) in zip(zs, gradients) { LoRAShapes.checkGradient(x, z, g, gradientTransposed: true); expect(z, .f32); expect(g, .f32) }
        expect(x, computeType)
        let tokens = x.shape[0], k = x.shape[1], ranks = zs.map { $0.shape[1] }, width = 3 * ranks.reduce(0, +)
        guard tokens > 0 && k > 0 else { return }
        guard groupsSplitLoRA(ranks, features: k) else {
            for (z, g) in zip(zs, gradients) { loraGradient(x, z, into: g, gradientTransposed: true, alpha: 1) }
            return
        }
        orFatal {
            let z3 = try empty([tokens, width], .bf16)   // each z's three parts side by side, adapter after adapter
            var column = 0
            splitBF16(jobs: zip(zs, ranks).map { z, r in
                defer { column += 3 * r }
                return SplitJob(src: z, parts: [1, 2, 3], stacked: false, dst: z3.device + UInt64(column * 2), rowStride: width)
            })
            let p = try empty([width, k], .f32)
            matmul(z3, transposeA: true, x, transposeB: false, into: p, alpha: 1, beta: 0)
            var row = 0
            sumBlocks3(jobs: zip(gradients, ranks).map { g, r in
                defer { row += 3 * r }
                return SumJob(src: p.device + UInt64(row * k * 4), rowStride: k, rowBlocks: true, alpha: 1, accumulate: true, out: g)
            })
        }
    }

    public func loraUpAdd(_ zs: [Tensor], _ weights: [Tensor], into y: Tensor) {
        precondition(weights.count == zs.count, "one weight per z")
        for (z, w) in zip(zs, weights) { LoRAShapes.checkUpAdd(z, w, weightTransposed: true, y); expect(z, .f32); expect(w, .f32) }
        expect(y, computeType)
        let tokens = y.shape[0], o = y.shape[1], ranks = zs.map { $0.shape[1] }, width = 6 * ranks.reduce(0, +)
        guard tokens > 0 && o > 0 else { return }
        guard groupsSplitLoRA(ranks, features: o) else {
            for (z, w) in zip(zs, weights) { loraUpAdd(z, w, weightTransposed: true, scale: 1, into: y) }
            return
        }
        orFatal {
            let z6 = try empty([tokens, width], .bf16)   // [T, Σ 6r]: each z's cross-term parts side by side
            let prepared = preparedParts(weights, .upA6)
            let w6 = try prepared ?? empty([width, o], .bf16)        // [Σ 6r, O]: each A's matching parts stacked
            var offset = 0
            splitBF16(jobs: zip(zs, weights).flatMap { z, w in
                defer { offset += 6 * z.shape[1] }
                let zJob = SplitJob(src: z, parts: CUDASplitBF16.crossLeft, stacked: false, dst: z6.device + UInt64(offset * 2), rowStride: width)
                guard prepared == nil else { return [zJob] }
                return [zJob, SplitJob(src: w, parts: CUDASplitBF16.crossRight, stacked: true, dst: w6.device + UInt64(offset * o * 2), rowStride: o)]
            })
            matmul(z6, transposeA: false, w6, transposeB: false, into: y, alpha: 1, beta: 1)
        }
    }
}
