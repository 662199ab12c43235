/// CUDA C shared by the kernels: bf16 <-> f32 conversions (bit-identical to `BFloat16` in
/// DType.swift: round to nearest even, NaN -> 0x7FC0) and a block-wide sum. No #include, so NVRTC
/// needs no headers.
enum CUDAKernelSource {
    static let common = """
    typedef unsigned short bf16_t;
    __device__ __forceinline__ float bf16_to_f32(bf16_t b) { return __uint_as_float(((unsigned int)b) << 16); }
    __device__ __forceinline__ bf16_t f32_to_bf16(float f) {
        unsigned int u = __float_as_uint(f);
        if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)0x7fc0;
        u += 0x7fffu + ((u >> 16) & 1u);
        return (bf16_t)(u >> 16);
    }
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

    """
}
