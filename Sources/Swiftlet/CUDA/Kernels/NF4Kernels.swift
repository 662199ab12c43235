import CCUDA
import Foundation

/// NF4 dequantization on the GPU: sixteen elements a thread (8 packed bytes in one quantization
/// block, 16-byte stores) where the sizes and alignments allow, else one thread per packed byte; the
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
    // Sixteen elements a thread: one 8-byte load, one scale, 16-byte stores, the code book in shared
    // memory (a __constant__ read with sixteen different indices in a warp is serialised). Needs
    // n % 16 == 0, block % 16 == 0, packed 8-byte and out 16-byte aligned (the launcher checks).
    __device__ __forceinline__ void store16(storage_t* out, const float (&v)[16]) {
        unsigned int w[8];
        #pragma unroll
        for (int k = 0; k < 8; k++) w[k] = (unsigned int)to_storage(v[2 * k]) | ((unsigned int)to_storage(v[2 * k + 1]) << 16);
        ((uint4*)out)[0] = make_uint4(w[0], w[1], w[2], w[3]);
        ((uint4*)out)[1] = make_uint4(w[4], w[5], w[6], w[7]);
    }
    __device__ __forceinline__ void store16(float* out, const float (&v)[16]) {
        #pragma unroll
        for (int k = 0; k < 4; k++) ((float4*)out)[k] = make_float4(v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]);
    }
    template <typename T>
    __device__ void dequantize_nf4_x16(const unsigned char* packed, const float* absmax, const unsigned char* qabsmax,
                                       const float* nested, const float* code, float offset, int nested_block,
                                       int block, T* out, long long n) {
        __shared__ float book[16];
        if (threadIdx.x < 16) book[threadIdx.x] = nf4_code[threadIdx.x];
        __syncthreads();
        GRID_STRIDE(t, n / 16) {
            const uint2 bytes = *(const uint2*)(packed + 8 * t);
            const long long b = 16 * t / block;
            const float scale = qabsmax
                ? __fadd_rn(__fmul_rn(code[qabsmax[b]], nested[b / nested_block]), offset)
                : absmax[b];
            float v[16];
            #pragma unroll
            for (int k = 0; k < 8; k++) {
                const unsigned int byte = ((k < 4 ? bytes.x : bytes.y) >> (8 * (k & 3))) & 0xffu;  // byte 8t + k
                v[2 * k] = __fmul_rn(book[byte >> 4], scale);
                v[2 * k + 1] = __fmul_rn(book[byte & 15u], scale);
            }
            store16(out + 16 * t, v);
        }
    }
    extern "C" __global__ void dequantize_nf4_x16_16(const unsigned char* packed, const float* absmax, const unsigned char* qabsmax,
                                                     const float* nested, const float* code, float offset, int nested_block,
                                                     int block, storage_t* out, long long n) {
        dequantize_nf4_x16(packed, absmax, qabsmax, nested, code, offset, nested_block, block, out, n);
    }
    extern "C" __global__ void dequantize_nf4_x16_f32(const unsigned char* packed, const float* absmax, const unsigned char* qabsmax,
                                                      const float* nested, const float* code, float offset, int nested_block,
                                                      int block, float* out, long long n) {
        dequantize_nf4_x16(packed, absmax, qabsmax, nested, code, offset, nested_block, block, out, n);
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
    public func dequantizeNF4(_ weight: NF4Weight, into out: Tensor) {
        precondition(out.count == weight.count, "dequantize NF4 \(weight.shape) into \(out)")
        precondition(out.dtype == .f32 || out.dtype == computeType, "dequantize NF4 into \(out.dtype)")
        expect(weight.packed, .u8)
        var args: [KernelArgument] = [.pointer(weight.packed.device)]
        switch weight.absmax {
        case let .plain(absmax):
            expect(absmax, .f32)
            args += [.pointer(absmax.device), .pointer(0), .pointer(0), .pointer(0), .float(0), .int32(1)]
        case let .nested(codes, scales, codebook, offset, nestedBlock):
            expect(codes, .u8); expect(scales, .f32); expect(codebook, .f32)
            args += [.pointer(0), .pointer(codes.device), .pointer(scales.device), .pointer(codebook.device),
                     .float(offset), .int32(Int32(nestedBlock))]
        }
        args += [.int32(Int32(weight.blockSize)), .pointer(out.device), .int64(Int64(weight.count))]
        let wide = weight.count % 16 == 0 && weight.blockSize % 16 == 0 && weight.packed.device % 8 == 0 && out.device % 16 == 0
        let suffix = out.dtype == .f32 ? "f32" : "16"
        launchElementwise(wide ? "dequantize_nf4_x16_\(suffix)" : "dequantize_nf4_\(suffix)",
                          count: wide ? weight.count / 16 : (weight.count + 1) / 2, args, source: CUDANF4.source)
    }
}
