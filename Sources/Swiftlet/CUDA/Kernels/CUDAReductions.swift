/// Warp reductions and a block-wide max, appended to `CUDAKernelSource.common` by the kernels that
/// need them.
extension CUDAKernelSource {
    static let reductions = """
    #define NEG_INF __int_as_float(0xff800000)
    __device__ __forceinline__ float warp_sum(float v) {
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        return v;
    }
    __device__ __forceinline__ float warp_max(float v) {
        for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
        return v;
    }
    // Max of v over the block; every thread gets the result. shared: 32 floats. blockDim.x % 32 == 0.
    __device__ __forceinline__ float block_max(float v, float* shared) {
        v = warp_max(v);
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
        if (lane == 0) shared[warp] = v;
        __syncthreads();
        if (warp == 0) {
            v = lane < warps ? shared[lane] : NEG_INF;
            v = warp_max(v);
            if (lane == 0) shared[0] = v;
        }
        __syncthreads();
        const float total = shared[0];
        __syncthreads();
        return total;
    }

    """
}
