/// Memory that a backend owns: host memory for the CPU backend, device memory for CUDA.
/// Freed (returned to its backend) when the last tensor viewing it goes away.
public final class Buffer: @unchecked Sendable {
    public let byteCount: Int
    /// Host pointer (CPU) or device address (CUDA), as the owning backend defines it.
    public let address: UnsafeMutableRawPointer
    public let backend: any Backend

    init(byteCount: Int, address: UnsafeMutableRawPointer, backend: any Backend) {
        self.byteCount = byteCount
        self.address = address
        self.backend = backend
    }

    deinit { backend.release(self) }
}

/// A typed view on a Buffer: dtype, shape and a byte offset. Value type; copying a Tensor copies
/// the view, not the data.
public struct Tensor: @unchecked Sendable, CustomStringConvertible {
    public let buffer: Buffer
    public let dtype: DType
    public let shape: Shape
    public let byteOffset: Int

    public init(buffer: Buffer, dtype: DType, shape: Shape, byteOffset: Int = 0) {
        precondition(byteOffset + shape.count * dtype.size <= buffer.byteCount,
                     "view \(shape) \(dtype) at \(byteOffset) exceeds buffer of \(buffer.byteCount) bytes")
        self.buffer = buffer
        self.dtype = dtype
        self.shape = shape
        self.byteOffset = byteOffset
    }

    public var count: Int { shape.count }
    public var byteCount: Int { count * dtype.size }
    public var backend: any Backend { buffer.backend }
    public var address: UnsafeMutableRawPointer { buffer.address + byteOffset }
    public var description: String { "Tensor(\(dtype), \(shape), \(backend.name))" }

    /// The same elements seen with another shape of equal count.
    public func reshaped(_ shape: Shape) -> Tensor {
        precondition(shape.count == count, "cannot reshape \(self.shape) to \(shape)")
        return Tensor(buffer: buffer, dtype: dtype, shape: shape, byteOffset: byteOffset)
    }

    /// Rows `range` of the outermost dimension.
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(range.lowerBound >= 0 && range.upperBound <= shape[0])
        let rowElements = shape.count / Swift.max(shape[0], 1)
        var dims = shape.dims
        dims[0] = range.count
        return Tensor(buffer: buffer, dtype: dtype, shape: Shape(dims),
                      byteOffset: byteOffset + range.lowerBound * rowElements * dtype.size)
    }
}
