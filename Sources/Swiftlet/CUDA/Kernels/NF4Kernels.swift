import CCUDA
import Foundation

/// NF4 dequantization on the GPU: four units of eight elements a thread (4 packed bytes in one
/// quantization block, one 16-byte store) where the sizes and alignments allow, else one thread per packed byte; the
/// block's scale resolved inline from the double-quantized absmax. Every product and sum is an explicitly
/// rounded f32 operation (`__fmul_rn`, `__fadd_rn`): NVRTC would otherwise fuse them into an FMA
/// and differ from bitsandbytes and the CPU backend in the last bit.
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
}
