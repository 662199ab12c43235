import CCUDA
import Foundation

/// NF4 dequantization on the GPU: four units of eight elements a thread (4 packed bytes in one
/// quantization block, one 16-byte store) where the sizes and alignments allow, else one thread per packed byte; the
/// block's scale resolved inline from the double-quantized absmax. Every product and sum is an explicitly
/// rounded f32 operation (`__fmul_rn`, `__fadd_rn`): NVRTC would otherwise fuse them into an FMA
/// and differ from bitsandbytes and the CPU backend in the last bit.
///
/// NF4 quantization on the GPU (`quantize_nf4_*`): the host quantizer's arithmetic and comparisons, so
/// the codes and absmax are those of `NF4.quantize` on the downloaded values, bit for bit.
enum CUDANF4 {
    static let source = """
    #ifndef GRID_STRIDE
    #define GRID_STRIDE(i, n) for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)
    #endif
    __constant__ float nf4_code[16] = { \(NF4.codebook.map { String(format: "%.9ef", Double($0)) }.joined(separator: ", ")) };
    __device__ __forceinline__ void store_value(float* out, long long i, float v) { out[i] = v; }
    __device__ __forceinline__ void store_value(storage_t* out, long long i, float v) { out[i] = to_storage(v); }
    // qabsmax == 0: plain f32 absmax; else absmax[b] = code[qabsmax[b]] * nested[b / nested_block] + offset.
    template <typename T>
    __device__ void dequantize_nf4(const unsigned char* packed, const float* absmax, const unsigned char* qabsmax,
                                   const float* nested, const float* code, float offset, int nested_block,
                                   int block, T* out, long long n) {
        GRID_STRIDE(p, (n + 1) / 2) {
            const unsigned int byte = packed[p];
            for (int h = 0; h < 2; ++h) {
                const long long i = 2 * p + h;
                if (i >= n) break;
                const long long b = i / block;
                const float scale = qabsmax
                    ? __fadd_rn(__fmul_rn(code[qabsmax[b]], nested[b / nested_block]), offset)
                    : absmax[b];
                store_value(out, i, __fmul_rn(nf4_code[h == 0 ? byte >> 4 : byte & 15u], scale));
            }
        }
    }
    // Eight elements a unit (one 4-byte load, one scale, one 16-byte store of 16-bit values), so a
    // warp's loads and stores each cover one contiguous span; four units a thread, their loads all
    // issued before the first store (units a grid apart), so each thread keeps four loads in flight.
    // The code book sits in shared memory (a __constant__ read with sixteen different indices in a
    // warp is serialised). Needs n % 8 == 0, block % 8 == 0, packed 4-byte and out 16-byte aligned
    // (the launcher checks).
    #define NF4_UNITS 4
    // Block sizes are powers of two here (bitsandbytes' 64 and 256), passed as shifts: a 64-bit
    // division is a long software sequence, and two of them a unit cost more than the unit's loads.
    template <typename T>
    __device__ void dequantize_nf4_x8(const unsigned char* packed, const float* absmax, const unsigned char* qabsmax,
                                      const float* nested, const float* code, float offset, int nested_shift,
                                      int block_shift, T* out, long long n) {
        __shared__ float book[16];
        if (threadIdx.x < 16) book[threadIdx.x] = nf4_code[threadIdx.x];
        __syncthreads();
        const long long units = n / 8, stride = (long long)gridDim.x * blockDim.x;
        for (long long first = blockIdx.x * (long long)blockDim.x + threadIdx.x; first < units; first += NF4_UNITS * stride) {
            unsigned int bytes[NF4_UNITS];
            float scale[NF4_UNITS];
            #pragma unroll
            for (int u = 0; u < NF4_UNITS; u++) {
                const long long t = first + u * stride;
                if (t < units) {
                    bytes[u] = ((const unsigned int*)packed)[t];   // packed bytes 4t .. 4t + 3
                    const long long b = (8 * t) >> block_shift;
                    scale[u] = qabsmax ? __fadd_rn(__fmul_rn(code[qabsmax[b]], nested[b >> nested_shift]), offset)
                                       : absmax[b];
                }
            }
            #pragma unroll
            for (int u = 0; u < NF4_UNITS; u++) {
                const long long t = first + u * stride;
                if (t < units) {
                    float v[8];
                    #pragma unroll
                    for (int k = 0; k < 4; k++) {
                        const unsigned int byte = (bytes[u] >> (8 * k)) & 0xffu;   // elements 8t + 2k, 8t + 2k + 1
                        v[2 * k] = __fmul_rn(book[byte >> 4], scale[u]);
                        v[2 * k + 1] = __fmul_rn(book[byte & 15u], scale[u]);
                    }
                    store8(out + 8 * t, v);
                }
            }
        }
    }
    extern "C" __global__ void dequantize_nf4_x8_16(const unsigned char* packed, const float* absmax, const unsigned char* qabsmax,
                                                    const float* nested, const float* code, float offset, int nested_shift,
                                                    int block_shift, storage_t* out, long long n) {
        dequantize_nf4_x8(packed, absmax, qabsmax, nested, code, offset, nested_shift, block_shift, out, n);
    }
    extern "C" __global__ void dequantize_nf4_x8_f32(const unsigned char* packed, const float* absmax, const unsigned char* qabsmax,
                                                     const float* nested, const float* code, float offset, int nested_shift,
                                                     int block_shift, float* out, long long n) {
        dequantize_nf4_x8(packed, absmax, qabsmax, nested, code, offset, nested_shift, block_shift, out, n);
    }
    // Up to 32 dequantizations in one launch, grid row blockIdx.y doing job blockIdx.y as
    // dequantize_nf4_x8_16 (into the storage type): a chunk of a mixture's experts. The jobs are passed
    // by value (__grid_constant__: read in place).
    struct NF4Job {
        const unsigned char* packed; const float* absmax; const unsigned char* qabsmax; const float* nested;
        const float* code; storage_t* out; long long n; float offset; int nested_shift; int block_shift; int unused;
    };
    struct NF4Jobs { NF4Job job[32]; };
    extern "C" __global__ void dequantize_nf4_x8_jobs(const __grid_constant__ NF4Jobs jobs) {
        const NF4Job& j = jobs.job[blockIdx.y];
        dequantize_nf4_x8(j.packed, j.absmax, j.qabsmax, j.nested, j.code, j.offset, j.nested_shift, j.block_shift, j.out, j.n);
    }
    extern "C" __global__ void dequantize_nf4_16(const unsigned char* packed, const float* absmax, const unsigned char* qabsmax,
                                                 const float* nested, const float* code, float offset, int nested_block,
                                                 int block, storage_t* out, long long n) {
        dequantize_nf4(packed, absmax, qabsmax, nested, code, offset, nested_block, block, out, n);
    }
    extern "C" __global__ void dequantize_nf4_f32(const unsigned char* packed, const float* absmax, const unsigned char* qabsmax,
                                                  const float* nested, const float* code, float offset, int nested_block,
                                                  int block, float* out, long long n) {
        dequantize_nf4(packed, absmax, qabsmax, nested, code, offset, nested_block, block, out, n);
    }
    // Quantization: BlockwiseScaling.scale then NF4.code, as the host computes them. Per block the largest
    // magnitude m (sign bit cleared); a full block multiplies by the reciprocal 1 / max(m, tiny), the partial
    // last block divides by max(m, tiny) and stores that; clamped to [-1, 1]; the code by the host's binary
    // search over the midpoints. Every operation is an IEEE f32 one (__fdiv_rn, __fmul_rn: no approximate
    // reciprocal), and Swift's max and min are spelled out (max(x, y) = y >= x ? y : x, min(x, y) =
    // y < x ? y : x) so NaN, infinities and -0 end where they end on the host: a NaN never becomes m, a scaled
    // NaN takes code 0. tiny comes from the host (BlockwiseScaling.tiny, a subnormal: NVRTC keeps them).
    __device__ __forceinline__ float swift_max(float x, float y) { return y >= x ? y : x; }
    __device__ __forceinline__ float swift_min(float x, float y) { return y < x ? y : x; }
    __device__ __forceinline__ float load_value(const float* x, long long i) { return x[i]; }
    __device__ __forceinline__ float load_value(const storage_t* x, long long i) { return to_f32(x[i]); }
    // CodeBook.bucket: how many midpoints lie strictly below v (NaN: none).
    __device__ __forceinline__ unsigned int nf4_bucket(float v, const float* mid) {
        int low = 0, high = 15;
        while (low < high) {
            const int m = (low + high) / 2;
            if (mid[m] < v) low = m + 1; else high = m;
        }
        return (unsigned int)low;
    }
    // A group of 2^lane_shift lanes takes a block of 8 << lane_shift elements (block 64: 8 lanes), eight
    // consecutive elements a lane (one 16-byte load where x is aligned), the group's m by shuffles (the
    // maximum of non-negative non-NaN values: the same in any order), then each lane writes its four packed
    // bytes (one 4-byte store where aligned). Lanes past the end carry zeros, which leave m alone.
    template <typename T>
    __device__ void quantize_nf4(const T* x, unsigned char* packed, float* absmax, float tiny, int lane_shift, long long n) {
        __shared__ float mid[15];
        if (threadIdx.x < 15) mid[threadIdx.x] = __fdiv_rn(__fadd_rn(nf4_code[threadIdx.x], nf4_code[threadIdx.x + 1]), 2.0f);
        __syncthreads();
        const long long block = 8LL << lane_shift, units = ((n + block - 1) / block) << lane_shift;
        const bool vectors = ((unsigned long long)x & 15) == 0, words = ((unsigned long long)packed & 3) == 0;
        const unsigned int zero = nf4_bucket(0.0f, mid);   // the padding nibble of an odd count: NF4.code(0)
        const long long stride = (long long)gridDim.x * blockDim.x;
        const int lane = threadIdx.x & 31;
        // A warp takes its turns together (the shuffles need all 32 lanes): the test is on its first lane.
        for (long long u = blockIdx.x * (long long)blockDim.x + threadIdx.x; u - lane < units; u += stride) {
            const long long first = 8 * u, b = u >> lane_shift;
            const bool active = u < units, whole = first + 8 <= n;
            float v[8];
            if (active && whole && vectors) {
                load8(x + first, v);
            } else {
                for (int k = 0; k < 8; k++) v[k] = active && first + k < n ? load_value(x, first + k) : 0.0f;
            }
            float m = 0.0f;
            for (int k = 0; k < 8; k++) m = swift_max(m, __uint_as_float(__float_as_uint(v[k]) & 0x7fffffffu));
            for (int o = (1 << lane_shift) / 2; o > 0; o >>= 1) m = swift_max(m, __shfl_xor_sync(0xffffffffu, m, o));
            const bool full = (b + 1) * block <= n;
            const float clamped = swift_max(m, tiny), reciprocal = __fdiv_rn(1.0f, clamped);
            unsigned int word = 0;
            for (int k = 0; k < 8; k++) {
                const float scaled = full ? __fmul_rn(v[k], reciprocal) : __fdiv_rn(v[k], clamped);
                const unsigned int code = first + k < n ? nf4_bucket(swift_min(swift_max(scaled, -1.0f), 1.0f), mid) : zero;
                word |= code << (8 * (k / 2) + (k % 2 == 0 ? 4 : 0));   // byte k / 2, first element high
            }
            if (!active) continue;
            if (whole && words) {
                ((unsigned int*)packed)[u] = word;   // packed bytes 4u .. 4u + 3
            } else {
                for (int j = 0; j < 4; j++) {
                    if (first + 2 * j < n) packed[4 * u + j] = (unsigned char)(word >> (8 * j));
                }
            }
            if ((u & ((1 << lane_shift) - 1)) == 0) absmax[b] = full ? m : clamped;
        }
    }
    extern "C" __global__ void quantize_nf4_16(const storage_t* x, unsigned char* packed, float* absmax, float tiny,
                                               int lane_shift, long long n) {
        quantize_nf4(x, packed, absmax, tiny, lane_shift, n);
    }
    extern "C" __global__ void quantize_nf4_f32(const float* x, unsigned char* packed, float* absmax, float tiny,
                                                int lane_shift, long long n) {
        quantize_nf4(x, packed, absmax, tiny, lane_shift, n);
    }
    """
}

extension CUDABackend {
    /// Every weight dequantized into its tensor: those the wide kernel takes, into the storage type,
    /// 32 a launch (`dequantize_nf4_x8_jobs`); the others one by one.
    public func dequantizeNF4(_ weights: [NF4Weight], into outs: [Tensor]) {
        precondition(weights.count == outs.count, "one tensor per weight")
        var jobs: [(bytes: [UInt8], elements: Int)] = []
        for (weight, out) in zip(weights, outs) {
            guard CUDASplitBF16.launchesJobs, out.dtype == computeType, let job = nf4Job(weight, into: out) else {
                dequantizeNF4(weight, into: out)
                continue
            }
            jobs.append(job)
        }
        launch(jobs: jobs, family: [(32, "dequantize_nf4_x8_jobs")], jobBytes: 72, source: CUDANF4.source, op: "dequantizeNF4")
    }

    /// A weight's operands as the kernels take them: packed codes; plain absmax, or the nested
    /// absmax's codes, scales and code book (and offset); the block sizes; and whether the wide kernel
    /// takes it into `out` (sizes and alignment; block sizes powers of two, passed as shifts).
    private struct NF4Operands {
        var packed: UInt64, absmax: UInt64 = 0, qabsmax: UInt64 = 0, nested: UInt64 = 0, code: UInt64 = 0
        var offset: Float = 0, nestedBlock = 1, block: Int, wide: Bool
    }

    private func operands(_ weight: NF4Weight, into out: Tensor) -> NF4Operands {
        precondition(out.count == weight.count, "dequantize NF4 \(weight.shape) into \(out)")
        expect(weight.packed, .u8)
        var o = NF4Operands(packed: UInt64(weight.packed.device), block: weight.blockSize, wide: false)
        switch weight.absmax {
        case let .plain(absmax):
            expect(absmax, .f32)
            o.absmax = UInt64(absmax.device)
        case let .nested(codes, scales, codebook, offset, nested):
            expect(codes, .u8); expect(scales, .f32); expect(codebook, .f32)
            (o.qabsmax, o.nested, o.code, o.offset, o.nestedBlock) = (UInt64(codes.device), UInt64(scales.device),
                                                                      UInt64(codebook.device), offset, nested)
        }
        o.wide = weight.count % 8 == 0 && o.block % 8 == 0 && o.block.nonzeroBitCount == 1 && o.nestedBlock.nonzeroBitCount == 1
            && weight.packed.device % 4 == 0 && out.device % 16 == 0
        return o
    }

    /// The C struct `NF4Job` for the wide kernel, and its thread count; nil where that kernel does not
    /// take the weight.
    private func nf4Job(_ weight: NF4Weight, into out: Tensor) -> (bytes: [UInt8], elements: Int)? {
        let o = operands(weight, into: out)
        guard o.wide else { return nil }
        var job = KernelJob()
        for pointer in [o.packed, o.absmax, o.qabsmax, o.nested, o.code, UInt64(out.device)] { job.append(pointer) }
        job.append(Int64(weight.count)); job.append(o.offset.bitPattern)
        job.append(Int32(o.nestedBlock.trailingZeroBitCount)); job.append(Int32(o.block.trailingZeroBitCount)); job.append(Int32(0))
        return (job.bytes, (weight.count / 8 + 3) / 4)
    }

    public func dequantizeNF4(_ weight: NF4Weight, into out: Tensor) {
        precondition(out.dtype == .f32 || out.dtype == computeType, "dequantize NF4 into \(out.dtype)")
        let o = operands(weight, into: out)
        var args: [KernelArgument] = [.pointer(o.packed), .pointer(o.absmax), .pointer(o.qabsmax), .pointer(o.nested),
                                      .pointer(o.code), .float(o.offset)]
        // the wide kernel: a thread per NF4_UNITS units of eight, block sizes as shifts
        let wide = o.wide
        args += wide ? [.int32(Int32(o.nestedBlock.trailingZeroBitCount)), .int32(Int32(o.block.trailingZeroBitCount))]
                     : [.int32(Int32(o.nestedBlock)), .int32(Int32(o.block))]
        args += [.pointer(out.device), .int64(Int64(weight.count))]
        let suffix = out.dtype == .f32 ? "f32" : "16"
        launchElementwise(wide ? "dequantize_nf4_x8_\(suffix)" : "dequantize_nf4_\(suffix)",
                          count: wide ? (weight.count / 8 + 3) / 4 : (weight.count + 1) / 2, args, source: CUDANF4.source)
    }

    /// A thread per eight elements, `blockSize / 8` of them a block (CUDANF4's `quantize_nf4`).
    public func quantizeNF4(_ x: Tensor, blockSize: Int, into packed: Tensor, absmax: Tensor) {
        precondition((x.dtype == .f32 || x.dtype == computeType) && x.backend === self, "quantize \(x) to NF4")
        expect(packed, .u8); expect(absmax, .f32)
        let blocks = (x.count + blockSize - 1) / blockSize
        precondition(packed.count == (x.count + 1) / 2 && absmax.count == blocks,
                     "quantize \(x) to NF4 (block \(blockSize)) into \(packed) and \(absmax)")
        precondition((8...256).contains(blockSize) && blockSize.nonzeroBitCount == 1,
                     "NF4 quantization on the GPU takes blocks of 8 to 256 elements, a power of two, not \(blockSize)")
        let laneShift = (blockSize / 8).trailingZeroBitCount
        launchElementwise(x.dtype == .f32 ? "quantize_nf4_f32" : "quantize_nf4_16", count: blocks << laneShift,
                          [.pointer(x.device), .pointer(packed.device), .pointer(absmax.device), .float(BlockwiseScaling.tiny),
                           .int32(Int32(laneShift)), .int64(Int64(x.count))], source: CUDANF4.source)
    }
}
