import CCUDA

/// A point in one stream's work that another stream can be made to wait for, on the device: the
/// host never blocks. Gradient checkpointing's offload orders its copy stream and the compute
/// stream with these.
final class CUDAEvent {
    private let libs: CUDALibraries
    private let event: CUevent

    /// Marks the work enqueued on `stream` so far.
    init(after stream: CUstream, libs: CUDALibraries) throws {
        var e: CUevent? = nil
        try libs.check(libs.cuEventCreate(&e, UInt32(CCUDA_EVENT_DISABLE_TIMING)), "cuEventCreate")
        guard let e else { throw CUDAError.invalid("cuEventCreate returned no event") }
        self.libs = libs
        event = e
        try libs.check(libs.cuEventRecord(e, stream), "cuEventRecord")
    }

    /// Work enqueued on `stream` from now on starts after the marked work is done.
    func precedes(_ stream: CUstream) throws {
        try libs.check(libs.cuStreamWaitEvent(stream, event, 0), "cuStreamWaitEvent")
    }

    // The driver releases an event still waited for once it completes.
    deinit { _ = libs.cuEventDestroy(event) }
}
