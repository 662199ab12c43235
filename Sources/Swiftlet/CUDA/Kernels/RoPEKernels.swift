import CCUDA

/// Rotary embedding in place on bf16 [tokens, heads·headDim], half-split layout; sign −1 is the
/// inverse rotation (the backward). The twin of CPU/RoPE.swift.
enum CUDARoPE {
    static let source = """
    extern "C" __global__ void rope_16(storage_t* x, const int* positions, const float* cosTable, const float* sinTable,
                                         int heads, int headDim, long long tokens, float sign) {
        const int half = headDim / 2;
        const long long total = tokens * heads * half;
        for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total; idx += (long long)gridDim.x * blockDim.x) {
            const int i = idx % half;
            const long long th = idx / half;
            const long long n = th / heads;
            const int h = th % heads;
            const long long p = positions[n];
            const float c = cosTable[p * half + i], s = sign * sinTable[p * half + i];
            storage_t* base = x + n * heads * headDim + (long long)h * headDim;
            const float a = to_f32(base[i]), b = to_f32(base[i + half]);
            base[i] = to_storage(a * c - b * s);
            base[i + half] = to_storage(b * c + a * s);
        }
    }
    // Eight rotations a thread (half % 8 == 0, rows 16-byte aligned), the same math per element.
    extern "C" __global__ void rope_16_v8(storage_t* x, const int* positions, const float* cosTable, const float* sinTable,
                                          int heads, int headDim, long long tokens, float sign) {
        const int half = headDim / 2, groups = half / 8;
        const long long total = tokens * heads * groups;
        for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total; idx += (long long)gridDim.x * blockDim.x) {
            const int i = (int)(idx % groups) * 8;
            const long long th = idx / groups;
            const long long n = th / heads;
            const int h = th % heads;
            const long long p = positions[n];
            float c[8], s[8], a[8], b[8];
            load8(cosTable + p * half + i, c);
            load8(sinTable + p * half + i, s);
            storage_t* base = x + n * heads * headDim + (long long)h * headDim;
            load8(base + i, a);
            load8(base + i + half, b);
            float ra[8], rb[8];
            #pragma unroll
            for (int k = 0; k < 8; k++) {
                const float sk = sign * s[k];
                ra[k] = a[k] * c[k] - b[k] * sk;
                rb[k] = b[k] * c[k] + a[k] * sk;
            }
            store8(base + i, ra);
            store8(base + i + half, rb);
        }
    }
    """
}

extension CUDABackend {
    public func rope(_ x: Tensor, positions: Tensor, table: RoPETable, heads: Int, inverse: Bool) {
        expect(x, computeType); expect(positions, .i32); expect(table.cos, .f32)
        let vectors = table.headDim % 16 == 0 && x.device % 16 == 0 && table.cos.device % 16 == 0 && table.sin.device % 16 == 0
        launchElementwise(vectors ? "rope_16_v8" : "rope_16", count: positions.count * heads * table.headDim / (vectors ? 16 : 2),
                          [.pointer(x.device), .pointer(positions.device), .pointer(table.cos.device),
                           .pointer(table.sin.device), .int32(Int32(heads)), .int32(Int32(table.headDim)),
                           .int64(Int64(positions.count)), .float(inverse ? -1 : 1)],
                          source: CUDARoPE.source)
    }
}
