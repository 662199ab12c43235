/// CUDA C that every kernel source starts with: the 16-bit storage type of the backend (bf16, or
/// fp16 on GPUs without bf16) as raw bits with its conversions, and the reductions. No #include,
/// so NVRTC needs no headers. The bf16 conversion is bit-identical to `BFloat16` in DType.swift
/// (round to nearest even, NaN → 0x7FC0); fp16 uses the hardware's round-to-nearest-even.
enum CUDAKernelSource {
    static func prelude(storage: DType) -> String {
        precondition(storage == .bf16 || storage == .f16, "CUDA storage must be bf16 or f16, not \(storage)")
        return (storage == .bf16 ? bf16 : f16) + common + reductions
    }

    // SWIFTLET_BF16 picks the tensor-core instructions' input type (FlashAttentionKernels).
    static let bf16 = """
    #define SWIFTLET_BF16 1
    typedef unsigned short storage_t;
    __device__ __forceinline__ float to_f32(storage_t b) { return __uint_as_float(((unsigned int)b) << 16); }
    __device__ __forceinline__ storage_t to_storage(float f) {
        unsigned int u = __float_as_uint(f);
        if ((u & 0x7fffffffu) > 0x7f800000u) return (storage_t)0x7fc0;
        u += 0x7fffu + ((u >> 16) & 1u);
        return (storage_t)(u >> 16);
    }

    """

    static let f16 = """
    #define SWIFTLET_BF16 0
    typedef unsigned short storage_t;
    __device__ __forceinline__ float to_f32(storage_t h) {
        float f; asm("{ .reg .f16 t; mov.b16 t, %1; cvt.f32.f16 %0, t; }" : "=f"(f) : "h"(h)); return f;
    }
    __device__ __forceinline__ storage_t to_storage(float f) {
        storage_t h; asm("{ .reg .f16 t; cvt.rn.f16.f32 t, %1; mov.b16 %0, t; }" : "=h"(h) : "f"(f)); return h;
    }

    """

    static let common = """
    // Sum of v over the block; every thread gets the result. shared: 32 floats. blockDim.x % 32 == 0.
    __device__ __forceinline__ float block_sum(float v, float* shared) {
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
        if (lane == 0) shared[warp] = v;
        __syncthreads();
        if (warp == 0) {
            v = lane < warps ? shared[lane] : 0.0f;
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == 0) shared[0] = v;
        }
        __syncthreads();
        const float total = shared[0];
        __syncthreads();
        return total;
    }

    // Eight 16-bit values through one 16-byte access (the vector paths of the memory-bound kernels:
    // each thread keeps several loads in flight instead of one 2-byte load). p 16-byte aligned.
    __device__ __forceinline__ void load8(const storage_t* __restrict__ p, float (&f)[8]) {
        const uint4 u = *(const uint4*)p;
        const unsigned int w[4] = {u.x, u.y, u.z, u.w};
        #pragma unroll
        for (int k = 0; k < 4; k++) {
            f[2 * k] = to_f32((storage_t)(w[k] & 0xffffu));
            f[2 * k + 1] = to_f32((storage_t)(w[k] >> 16));
        }
    }
    __device__ __forceinline__ void store8(storage_t* __restrict__ p, const float (&f)[8]) {
        unsigned int w[4];
        #pragma unroll
        for (int k = 0; k < 4; k++) w[k] = (unsigned int)to_storage(f[2 * k]) | ((unsigned int)to_storage(f[2 * k + 1]) << 16);
        *(uint4*)p = make_uint4(w[0], w[1], w[2], w[3]);
    }
    __device__ __forceinline__ void load8(const float* __restrict__ p, float (&f)[8]) {
        const float4 a = *(const float4*)p, b = *(const float4*)(p + 4);
        f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w; f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
    }
    __device__ __forceinline__ void store8(float* __restrict__ p, const float (&f)[8]) {
        *(float4*)p = make_float4(f[0], f[1], f[2], f[3]);
        *(float4*)(p + 4) = make_float4(f[4], f[5], f[6], f[7]);
    }

    """
}

extension CUDAKernelSource {
    /// Every kernel family's source (without the prelude), for compiling them all at once.
    static let families: [(name: String, source: String)] = [
        ("elementwise", CUDAElementwise.source), ("rmsnorm", CUDARMSNorm.source), ("rope", CUDARoPE.source),
        ("attention", CUDAAttention.source), ("cached_attention", CUDACachedAttention.source),
        ("flash_attention", CUDAFlashAttention.source), ("gated_linear_unit", CUDAGatedLinearUnit.source),
        ("cross_entropy", CUDACrossEntropy.source), ("optimizer", CUDAOptimizer.source),
        ("adamw8bit", CUDAAdamW8bit.source), ("multi_tensor", CUDAMultiTensor.source),
        ("nf4", CUDANF4.source), ("lora", CUDALoRA.source), ("split_bf16", CUDASplitBF16.source),
        ("column_copy", CUDAColumnCopy.source), ("mixture_of_experts", CUDAMixtureOfExperts.source),
        ("pointer_table", CUBLASGrouped.source),
    ]
}
