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
    /// Device → pinned host on the copy stream, after the work that wrote `tensor`; the compute
    /// stream runs on. `tensor` is kept until `settleOffloads` (the next offload, or the model after
    /// its last) orders later work after the copy: by then a layer's forward has run, so the wait
    /// costs nothing, and no tensor allocated meanwhile can take the memory being read.
    public func offload(_ tensor: Tensor) throws -> OffloadedTensor {
        try settleOffloads()
        let libs = device.libs, pool = pinnedHost
        let host = try pool.allocate(bytes: Swift.max(tensor.byteCount, 1))
        try CUDAEvent(after: device.stream, libs: libs).precedes(device.copyStream)
        try libs.check(libs.cuMemcpyDtoHAsync(host, tensor.device, tensor.byteCount, device.copyStream),
                       "cuMemcpyDtoHAsync_v2")
        let copied = try CUDAEvent(after: device.copyStream, libs: libs)
        lock.withLock { offloadsInFlight.append((tensor, copied)) }
        return OffloadedTensor(dtype: tensor.dtype, shape: tensor.shape, host: host, giveBack: { pool.free($0) })
    }

    public func settleOffloads() throws {
        let inFlight = lock.withLock { () -> [(source: Tensor, copied: CUDAEvent)] in
            defer { offloadsInFlight.removeAll() }
            return offloadsInFlight
        }
        for (_, copied) in inFlight { try copied.precedes(device.stream) }
    }

    /// Host → device on the copy stream, after the offload's copy out (the same stream) and after
    /// the work queued so far (the new tensor's memory may have been another's, still in use);
    /// `reload` makes the compute stream wait for it.
    public func prefetch(_ offloaded: OffloadedTensor) throws {
        guard offloaded.staged == nil else { return }
        let libs = device.libs, stream = device.stream
        let t = try empty(offloaded.shape, offloaded.dtype)
        try CUDAEvent(after: stream, libs: libs).precedes(device.copyStream)
        try libs.check(libs.cuMemcpyHtoDAsync(t.device, offloaded.host, offloaded.byteCount, device.copyStream),
                       "cuMemcpyHtoDAsync_v2")
        let copied = try CUDAEvent(after: device.copyStream, libs: libs)
        offloaded.staged = StagedCopy(tensor: t) { try copied.precedes(stream) }
    }
}
