import Foundation

/// The CPU backend: plain Swift over host memory, Float32 storage and math. It is the exact
/// reference every GPU kernel is tested against, and what CI runs.
///
/// Each op family lives in its own file as a generic kernel (so tests can run it in Float64
/// against finite differences) plus the `CPUBackend` method that runs it on Float32 tensors.
public final class CPUBackend: Backend, @unchecked Sendable {
    public let name = "cpu"
    public let computeType = DType.f32
    public let memory = MemoryCounter()

    public init() {}

    public func synchronize() {}

    public func zeros(_ shape: Shape, _ dtype: DType) throws -> Tensor {
        let bytes = Swift.max(shape.count * dtype.size, 1)
        // 64-byte alignment keeps SIMD loads aligned in the GEMM's packed panels.
        guard let address = aligned_alloc_zeroed(bytes) else {
            throw BackendError.outOfMemory(backend: name, requested: bytes, inUse: memory.current)
        }
        memory.allocated(bytes)
        return Tensor(buffer: Buffer(byteCount: bytes, address: address, backend: self),
                      dtype: dtype, shape: shape)
    }

    /// Filled with 0xFF bytes (NaN in every float type): an op that reads an `empty` output
    /// before writing all of it shows up as NaN in the CPU tests, not as a GPU-only heisenbug.
    public func empty(_ shape: Shape, _ dtype: DType) throws -> Tensor {
        let t = try zeros(shape, dtype)
        memset(t.address, 0xFF, t.buffer.byteCount)
        return t
    }

    public func release(_ buffer: Buffer) {
        memory.freed(buffer.byteCount)
        free(buffer.address)
    }

    public func upload(_ values: [Float], _ shape: Shape, _ dtype: DType) throws -> Tensor {
        precondition(values.count == shape.count, "\(values.count) values for shape \(shape)")
        let t = try zeros(shape, dtype)
        values.withUnsafeBufferPointer { src in
            switch dtype {
            case .f32: t.address.copyMemory(from: src.baseAddress!, byteCount: values.count * 4)
            case .bf16:
                let dst = t.address.assumingMemoryBound(to: UInt16.self)
                for i in 0..<values.count { dst[i] = BFloat16.bits(src[i]) }
            case .f16:
                let dst = t.address.assumingMemoryBound(to: UInt16.self)
                for i in 0..<values.count { dst[i] = Half.bits(src[i]) }
            default: preconditionFailure("upload of Float values as \(dtype)")
            }
        }
        return t
    }

    public func upload(_ values: [Int32], _ shape: Shape) throws -> Tensor {
        precondition(values.count == shape.count, "\(values.count) values for shape \(shape)")
        let t = try zeros(shape, .i32)
        values.withUnsafeBytes { t.address.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return t
    }

    public func download(_ tensor: Tensor) -> [Float] {
        switch tensor.dtype {
        case .f32: return Array(tensor.floats)
        case .bf16:
            let p = tensor.address.assumingMemoryBound(to: UInt16.self)
            return (0..<tensor.count).map { BFloat16.float(p[$0]) }
        case .f16:
            let p = tensor.address.assumingMemoryBound(to: UInt16.self)
            return (0..<tensor.count).map { Half.float(p[$0]) }
        default: preconditionFailure("download of \(tensor.dtype) as Float")
        }
    }

    public func downloadInts(_ tensor: Tensor) -> [Int32] { Array(tensor.ints) }

    public func upload(bytes: [UInt8], _ shape: Shape, _ dtype: DType) throws -> Tensor {
        precondition(bytes.count == shape.count * dtype.size, "\(bytes.count) bytes for \(dtype) \(shape)")
        let t = try zeros(shape, dtype)
        bytes.withUnsafeBytes { t.address.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return t
    }

    public func downloadBytes(_ tensor: Tensor) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: tensor.address, count: tensor.byteCount))
    }

    public func copy(_ source: Tensor, into destination: Tensor) {
        precondition(source.count == destination.count, "copy \(source.shape) into \(destination.shape)")
        if source.dtype == destination.dtype {
            destination.address.copyMemory(from: source.address, byteCount: source.byteCount)
        } else {
            let values = download(source)
            let converted = try! upload(values, destination.shape, destination.dtype)
            destination.address.copyMemory(from: converted.address, byteCount: destination.byteCount)
        }
    }

    /// The CPU's "device" is host memory too: offloading copies into memory outside this backend's
    /// count, so the same code path (and its peak-memory effect) is testable without a GPU.
    public func offload(_ tensor: Tensor) throws -> OffloadedTensor {
        guard let host = malloc(Swift.max(tensor.byteCount, 1)) else {
            throw BackendError.outOfMemory(backend: "host", requested: tensor.byteCount, inUse: memory.current)
        }
        host.copyMemory(from: tensor.address, byteCount: tensor.byteCount)
        return OffloadedTensor(dtype: tensor.dtype, shape: tensor.shape, host: host, giveBack: { free($0) })
    }

    /// Copies back at once (one thread of work, nothing to overlap): `reload` takes the copy.
    public func prefetch(_ offloaded: OffloadedTensor) throws {
        guard offloaded.staged == nil else { return }
        let t = try empty(offloaded.shape, offloaded.dtype)
        t.address.copyMemory(from: offloaded.host, byteCount: offloaded.byteCount)
        offloaded.staged = StagedCopy(tensor: t, join: {})
    }
}

/// Errors a backend reports.
public enum BackendError: Error, CustomStringConvertible {
    case outOfMemory(backend: String, requested: Int, inUse: Int)
    case unavailable(String)

    public var description: String {
        switch self {
        case let .outOfMemory(backend, requested, inUse):
            return "out of memory on \(backend): asked for \(ByteCount(requested)), \(ByteCount(inUse)) in use. "
                + "Try a smaller --batch-size or --max-seq-length."
        case let .unavailable(why): return why
        }
    }
}

/// Bytes, printed for people (KiB, MiB, GiB).
public struct ByteCount: CustomStringConvertible {
    public var bytes: Int
    public init(_ bytes: Int) { self.bytes = bytes }
    public var description: String {
        let b = Double(bytes), kib = 1024.0
        if b >= kib * kib * kib { return String(format: "%.2f GiB", b / (kib * kib * kib)) }
        if b >= kib * kib { return String(format: "%.1f MiB", b / (kib * kib)) }
        if b >= kib { return String(format: "%.1f KiB", b / kib) }
        return "\(bytes) B"
    }
}

private func aligned_alloc_zeroed(_ bytes: Int) -> UnsafeMutableRawPointer? {
    var p: UnsafeMutableRawPointer?
    guard posix_memalign(&p, 64, bytes) == 0, let p else { return nil }
    memset(p, 0, bytes)
    return p
}

extension Tensor {
    /// The elements of an f32 tensor in host memory (CPU backend only).
    var floats: UnsafeMutableBufferPointer<Float> {
        precondition(dtype == .f32 && backend is CPUBackend, "\(self) is not a CPU f32 tensor")
        return UnsafeMutableBufferPointer(start: address.assumingMemoryBound(to: Float.self), count: count)
    }
    /// The elements of a u8 tensor in host memory (CPU backend only).
    var bytes: UnsafeMutableBufferPointer<UInt8> {
        precondition(dtype == .u8 && backend is CPUBackend, "\(self) is not a CPU u8 tensor")
        return UnsafeMutableBufferPointer(start: address.assumingMemoryBound(to: UInt8.self), count: count)
    }
    /// The elements of an i32 tensor in host memory (CPU backend only).
    var ints: UnsafeMutableBufferPointer<Int32> {
        precondition(dtype == .i32 && backend is CPUBackend, "\(self) is not a CPU i32 tensor")
        return UnsafeMutableBufferPointer(start: address.assumingMemoryBound(to: Int32.self), count: count)
    }
}
