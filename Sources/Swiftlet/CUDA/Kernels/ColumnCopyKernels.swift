import CCUDA

/// Backend.copyColumns on the GPU: a grid-stride loop over the block's elements, moving 16-bit
/// or 32-bit words unchanged (a copy, so exact; the CPU twin is CPU/ColumnCopy.swift).
enum CUDAColumnCopy {
    static let source = """
    template <typename T>
    __device__ void copy_columns(const T* __restrict__ src, long long srcColumns, long long srcColumn,
                                 T* __restrict__ dst, long long dstColumns, long long dstColumn,
                                 long long width, long long rows) {
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < rows * width;
             i += (long long)gridDim.x * blockDim.x) {
            const long long r = i / width, j = i - r * width;
            dst[r * dstColumns + dstColumn + j] = src[r * srcColumns + srcColumn + j];
        }
    }
    extern "C" __global__ void copy_columns_16(const unsigned short* src, long long srcColumns, long long srcColumn,
                                               unsigned short* dst, long long dstColumns, long long dstColumn,
                                               long long width, long long rows) {
        copy_columns(src, srcColumns, srcColumn, dst, dstColumns, dstColumn, width, rows);
    }
    extern "C" __global__ void copy_columns_32(const unsigned int* src, long long srcColumns, long long srcColumn,
                                               unsigned int* dst, long long dstColumns, long long dstColumn,
                                               long long width, long long rows) {
        copy_columns(src, srcColumns, srcColumn, dst, dstColumns, dstColumn, width, rows);
    }
    """
}

extension CUDABackend {
    public func copyColumns(_ source: Tensor, sourceColumn: Int, into destination: Tensor, destinationColumn: Int, width: Int) {
        let (rows, sourceColumns, destinationColumns) = ColumnCopy.validated(
            source, sourceColumn: sourceColumn, destination, destinationColumn: destinationColumn, width: width)
        precondition(source.dtype.size == 2 || source.dtype.size == 4, "copyColumns of \(source.dtype)")
        launchElementwise(source.dtype.size == 2 ? "copy_columns_16" : "copy_columns_32", count: rows * width,
                          [.pointer(source.device), .int64(Int64(sourceColumns)), .int64(Int64(sourceColumn)),
                           .pointer(destination.device), .int64(Int64(destinationColumns)), .int64(Int64(destinationColumn)),
                           .int64(Int64(width)), .int64(Int64(rows))],
                          source: CUDAColumnCopy.source)
    }
}
