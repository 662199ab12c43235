import CCUDA

/// A block of device memory from `CUDAMemory`. `bytes` is what was asked; the block may be larger.
public struct DeviceBuffer: @unchecked Sendable {
    public let pointer: CUdeviceptr
    public let bytes: Int
    let binBytes: Int
}

/// A caching allocator: blocks are binned by rounded size and freed blocks go back to their bin for
/// reuse instead of to cuMemFree. Not thread-safe (one training thread drives the device).
public final class CUDAMemory: @unchecked Sendable {
    unowned let device: CUDADevice
    private var pool: [Int: [CUdeviceptr]] = [:]
    /// Bytes in blocks handed out (rounded sizes).
    public private(set) var current = 0
    public private(set) var peak = 0
    /// Bytes held in the pool, free for reuse.
    public private(set) var cached = 0

    init(device: CUDADevice) { self.device = device }

    /// The bin a request falls in: powers of two from 512 B up to 1 MiB, then multiples of 2 MiB.
    public static func binSize(_ bytes: Int) -> Int {
        let b = max(bytes, 1)
        if b <= 1 << 20 {
            var s = 512
            while s < b { s <<= 1 }
            return s
        }
        let step = 2 << 20
        return (b + step - 1) / step * step
    }

    public func allocate(bytes: Int) throws -> DeviceBuffer {
        let bin = Self.binSize(bytes)
        if var blocks = pool[bin], let p = blocks.popLast() {
            pool[bin] = blocks
            cached -= bin
            return hand(p, bytes, bin)
        }
        let libs = device.libs
        var p: CUdeviceptr = 0
        var r = libs.cuMemAlloc(&p, bin)
        if r == CCUDA_ERROR_OUT_OF_MEMORY && cached > 0 {
            try releaseCached()
            r = libs.cuMemAlloc(&p, bin)
        }
        if r == CCUDA_ERROR_OUT_OF_MEMORY {
            throw CUDAError.outOfMemory(requested: bytes, inUse: current, free: try? device.memoryInfo().free)
        }
        try libs.check(r, "cuMemAlloc_v2(\(bin) bytes)")
        return hand(p, bytes, bin)
    }

    private func hand(_ p: CUdeviceptr, _ bytes: Int, _ bin: Int) -> DeviceBuffer {
        current += bin
        peak = max(peak, current)
        return DeviceBuffer(pointer: p, bytes: bytes, binBytes: bin)
    }

    /// Returns a block to the pool.
    public func free(_ buffer: DeviceBuffer) {
        current -= buffer.binBytes
        cached += buffer.binBytes
        pool[buffer.binBytes, default: []].append(buffer.pointer)
    }

    /// Gives every pooled block back to the driver.
    public func releaseCached() throws {
        for (_, blocks) in pool {
            for p in blocks { try device.libs.check(device.libs.cuMemFree(p), "cuMemFree_v2") }
        }
        pool = [:]
        cached = 0
    }

    // MARK: transfers (synchronous)

    /// Fills a buffer with one byte value (0xFF gives NaN in bf16 and f32: used to poison outputs).
    public func fill(_ buffer: DeviceBuffer, byte: UInt8) throws {
        try device.libs.check(device.libs.cuMemsetD8(buffer.pointer, byte, buffer.bytes), "cuMemsetD8_v2")
        try device.libs.check(device.libs.cuCtxSynchronize(), "cuCtxSynchronize")
    }

    /// Copies `values` to a new buffer stored as `dtype` (.f32 or .bf16, round-to-nearest-even).
    public func upload(_ values: [Float], as dtype: DType) throws -> DeviceBuffer {
        let buffer = try allocate(bytes: values.count * dtype.size)
        do {
            try copy(values, into: buffer, as: dtype)
        } catch {
            free(buffer)
            throw error
        }
        return buffer
    }

    public func copy(_ values: [Float], into buffer: DeviceBuffer, as dtype: DType) throws {
        let bytes = values.count * dtype.size
        guard bytes <= buffer.bytes else { throw CUDAError.invalid("copy of \(bytes) bytes into a \(buffer.bytes)-byte buffer") }
        let libs = device.libs
        switch dtype {
        case .f32:
            try values.withUnsafeBytes { try libs.check(libs.cuMemcpyHtoD(buffer.pointer, $0.baseAddress, bytes), "cuMemcpyHtoD_v2") }
        case .bf16:
            let bits = values.map { BFloat16.bits($0) }
            try bits.withUnsafeBytes { try libs.check(libs.cuMemcpyHtoD(buffer.pointer, $0.baseAddress, bytes), "cuMemcpyHtoD_v2") }
        default:
            throw CUDAError.invalid("upload supports f32 and bf16, not \(dtype)")
        }
        try libs.check(libs.cuCtxSynchronize(), "cuCtxSynchronize")
    }

    /// Reads `count` elements stored as `dtype` back as Float. Waits for the device's stream first.
    public func download(_ buffer: DeviceBuffer, count: Int, as dtype: DType) throws -> [Float] {
        let bytes = count * dtype.size
        guard bytes <= buffer.bytes else { throw CUDAError.invalid("read of \(bytes) bytes from a \(buffer.bytes)-byte buffer") }
        let libs = device.libs
        try device.synchronize()
        switch dtype {
        case .f32:
            var out = [Float](repeating: 0, count: count)
            try out.withUnsafeMutableBytes { try libs.check(libs.cuMemcpyDtoH($0.baseAddress, buffer.pointer, bytes), "cuMemcpyDtoH_v2") }
            return out
        case .bf16:
            var bits = [UInt16](repeating: 0, count: count)
            try bits.withUnsafeMutableBytes { try libs.check(libs.cuMemcpyDtoH($0.baseAddress, buffer.pointer, bytes), "cuMemcpyDtoH_v2") }
            return bits.map { BFloat16.float($0) }
        default:
            throw CUDAError.invalid("download supports f32 and bf16, not \(dtype)")
        }
    }
}
