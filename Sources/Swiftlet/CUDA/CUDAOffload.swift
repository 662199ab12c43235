import CCUDA
import Foundation

/// Pinned host memory for gradient checkpointing's offload mode: blocks binned like device
/// memory and reused across steps (cuMemAllocHost costs milliseconds; a step offloads every layer).
final class PinnedHostPool: @unchecked Sendable {
    private let libs: CUDALibraries
    private var pool: [Int: [UnsafeMutableRawPointer]] = [:]
    private var binOf: [UnsafeMutableRawPointer: Int] = [:]
    private let lock = NSLock()

    init(libs: CUDALibraries) { self.libs = libs }

    func allocate(bytes: Int) throws -> UnsafeMutableRawPointer {
        let bin = CUDAMemory.binSize(bytes)
        if let p = lock.withLock({ pool[bin]?.popLast() }) { return p }
        var p: UnsafeMutableRawPointer? = nil
        try libs.check(libs.cuMemAllocHost(&p, bin), "cuMemAllocHost_v2(\(bin) bytes)")
        guard let p else { throw CUDAError.invalid("cuMemAllocHost returned no memory") }
        lock.withLock { binOf[p] = bin }
        return p
    }

    func free(_ p: UnsafeMutableRawPointer) {
        lock.withLock {
            guard let bin = binOf[p] else { return }
            pool[bin, default: []].append(p)
        }
    }
}

extension CUDABackend {
    /// Device → pinned host, queued on the stream (the host does not wait; the reload, queued
    /// later on the same stream, cannot overtake it).
    public func offload(_ tensor: Tensor) throws -> OffloadedTensor {
        let pool = pinnedHost
        let host = try pool.allocate(bytes: Swift.max(tensor.byteCount, 1))
        try device.libs.check(device.libs.cuMemcpyDtoHAsync(host, tensor.device, tensor.byteCount, device.stream),
                              "cuMemcpyDtoHAsync_v2")
        return OffloadedTensor(dtype: tensor.dtype, shape: tensor.shape, host: host, giveBack: { pool.free($0) })
    }

    public func reload(_ offloaded: OffloadedTensor) throws -> Tensor {
        let t = try zeros(offloaded.shape, offloaded.dtype)
        try device.libs.check(device.libs.cuMemcpyHtoDAsync(t.device, offloaded.host, offloaded.byteCount, device.stream),
                              "cuMemcpyHtoDAsync_v2")
        return t
    }
}
