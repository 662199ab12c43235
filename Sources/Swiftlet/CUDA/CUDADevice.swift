import CCUDA

/// One GPU: its primary context (current on the creating thread), the stream all compute runs
/// on, and a second stream for copies to and from host memory that overlap it.
public final class CUDADevice: @unchecked Sendable {
    public let libs: CUDALibraries
    public let ordinal: Int
    let device: CUdevice
    let context: CUcontext
    public let stream: CUstream
    /// Gradient checkpointing's offload copies run here, beside the compute; `CUDAEvent`s order
    /// the two streams where one reads what the other writes.
    let copyStream: CUstream

    public let name: String
    public let computeCapability: (major: Int, minor: Int)
    public let multiprocessors: Int
    /// The most shared memory one block may have, static and dynamic together, when its kernel asks
    /// (227 KiB on 9.0, 163 KiB on 8.0, 99 KiB on 8.6/8.9).
    public let sharedMemoryPerBlockOptIn: Int
    public let totalMemory: Int

    public private(set) lazy var memory = CUDAMemory(device: self)

    public init(libs: CUDALibraries, ordinal: Int = 0) throws {
        self.libs = libs
        self.ordinal = ordinal
        try libs.check(libs.cuInit(0), "cuInit")
        var count: Int32 = 0
        try libs.check(libs.cuDeviceGetCount(&count), "cuDeviceGetCount")
        guard ordinal >= 0, ordinal < Int(count) else {
            throw CUDAError.invalid("no GPU with index \(ordinal) (the driver sees \(count))")
        }
        var dev: CUdevice = 0
        try libs.check(libs.cuDeviceGet(&dev, Int32(ordinal)), "cuDeviceGet")
        device = dev

        var nameBuffer = [CChar](repeating: 0, count: 256)
        try libs.check(libs.cuDeviceGetName(&nameBuffer, Int32(nameBuffer.count - 1), dev), "cuDeviceGetName")
        name = String(cString: nameBuffer)

        func attribute(_ a: Int32, _ what: String) throws -> Int {
            var v: Int32 = 0
            try libs.check(libs.cuDeviceGetAttribute(&v, a, dev), "cuDeviceGetAttribute(\(what))")
            return Int(v)
        }
        computeCapability = (try attribute(CCUDA_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, "COMPUTE_CAPABILITY_MAJOR"),
                             try attribute(CCUDA_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, "COMPUTE_CAPABILITY_MINOR"))
        multiprocessors = try attribute(CCUDA_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, "MULTIPROCESSOR_COUNT")
        sharedMemoryPerBlockOptIn = try attribute(CCUDA_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                                                  "MAX_SHARED_MEMORY_PER_BLOCK_OPTIN")
        var total = 0
        try libs.check(libs.cuDeviceTotalMem(&total, dev), "cuDeviceTotalMem_v2")
        totalMemory = total

        var ctx: CUcontext? = nil
        try libs.check(libs.cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain")
        guard let ctx else { throw CUDAError.invalid("cuDevicePrimaryCtxRetain returned no context") }
        context = ctx
        try libs.check(libs.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
        func newStream(flags: UInt32) throws -> CUstream {
            var s: CUstream? = nil
            try libs.check(libs.cuStreamCreate(&s, flags), "cuStreamCreate")
            guard let s else { throw CUDAError.invalid("cuStreamCreate returned no stream") }
            return s
        }
        // The compute stream is blocking (flags 0): it synchronizes with the legacy NULL stream, which
        // the synchronous cuMemcpy*/cuMemset* calls use, so a download waits for the compute. The copy
        // stream is not (CU_STREAM_NON_BLOCKING): events order it against the compute where one reads
        // what the other writes, and a download (a loss read back during the head) must not also wait
        // for an offload copy running beside it.
        stream = try newStream(flags: 0)
        copyStream = try newStream(flags: 1)
    }

    /// Makes this device's context current on the calling thread.
    public func makeCurrent() throws { try libs.check(libs.cuCtxSetCurrent(context), "cuCtxSetCurrent") }

    public func synchronize() throws { try libs.check(libs.cuStreamSynchronize(stream), "cuStreamSynchronize") }

    /// (free, total) bytes on the device, as the driver reports them.
    public func memoryInfo() throws -> (free: Int, total: Int) {
        var free = 0, total = 0
        try libs.check(libs.cuMemGetInfo(&free, &total), "cuMemGetInfo_v2")
        return (free, total)
    }

    /// "sm_90" for compute capability 9.0.
    public var architecture: String { "sm_\(computeCapability.major)\(computeCapability.minor)" }

    /// Times `body` (work enqueued on `stream`) with device events; returns milliseconds.
    public func time(_ body: () throws -> Void) throws -> Float {
        var start: CUevent? = nil, end: CUevent? = nil
        try libs.check(libs.cuEventCreate(&start, UInt32(CCUDA_EVENT_DEFAULT)), "cuEventCreate")
        try libs.check(libs.cuEventCreate(&end, UInt32(CCUDA_EVENT_DEFAULT)), "cuEventCreate")
        try libs.check(libs.cuEventRecord(start, stream), "cuEventRecord")
        try body()
        try libs.check(libs.cuEventRecord(end, stream), "cuEventRecord")
        try libs.check(libs.cuEventSynchronize(end), "cuEventSynchronize")
        var ms: Float = 0
        try libs.check(libs.cuEventElapsedTime(&ms, start, end), "cuEventElapsedTime")
        return ms
    }
}
