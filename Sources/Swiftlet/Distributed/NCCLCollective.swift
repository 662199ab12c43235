import CCUDA

/// The collective between GPUs, through NCCL on the training stream. The LoRA gradients (many
/// small f32 tensors) are copied into one flat device buffer and all-reduced in buckets of
/// `bucketBytes` inside one NCCL group, then copied back: a few large transfers instead of hundreds
/// of tiny ones, and the stream order keeps it after the backward and before the optimizer without
/// a host sync. NCCL chooses its own reduction order (ring or tree), so sums over 2+ GPUs are
/// reproducible run to run but are not the single-GPU accumulation's bits; with one GPU the
/// all-reduce is a copy.
public final class NCCLCollective: Collective {
    public let rank: Int
    public let worldSize: Int
    public let library: NCCLLibrary
    let backend: CUDABackend
    let communicator: ncclComm_t
    /// The rendezvous that handed out the unique id; it carries the barrier.
    public let rendezvous: Rendezvous
    /// Gradient bytes per all-reduce call.
    public let bucketBytes: Int
    /// The flat buffer the gradients are gathered in, kept between steps (same tensors each step).
    private var flat: Tensor?
    /// Room for the host values (loss sums, counts) as f64.
    private var scalars: Tensor?

    /// Joins the job: rank 0 makes NCCL's unique id, the rendezvous at MASTER_ADDR:MASTER_PORT hands
    /// it to every rank, then each creates its communicator on `backend`'s GPU.
    public init(environment: LaunchEnvironment, jobKey: String, backend: CUDABackend, timeout: Double,
                bucketBytes: Int = 4 << 20) throws {
        let library = try NCCLLibrary()
        self.library = library
        self.backend = backend
        self.bucketBytes = bucketBytes
        rank = environment.rank
        worldSize = environment.worldSize
        let rendezvous = try Rendezvous(environment: environment, jobKey: jobKey, timeout: timeout) { () throws(DistributedError) in try library.uniqueId() }
        self.rendezvous = rendezvous
        guard rendezvous.payload.count == MemoryLayout<ncclUniqueId>.size else {
            throw DistributedError.protocolViolation(host: environment.masterAddress, port: environment.masterPort,
                                                     problem: "rank 0 sent a \(rendezvous.payload.count)-byte NCCL id, not \(MemoryLayout<ncclUniqueId>.size)")
        }
        var id = ncclUniqueId()
        withUnsafeMutableBytes(of: &id) { $0.copyBytes(from: rendezvous.payload) }
        try backend.device.makeCurrent()
        var comm: ncclComm_t? = nil
        try library.check(library.commInitRank(&comm, Int32(worldSize), id, Int32(rank)),
                          "ncclCommInitRank(rank \(rank) of \(worldSize))")
        guard let comm else { throw DistributedError.nccl(call: "ncclCommInitRank", code: -1, message: "no communicator returned") }
        communicator = comm
    }

    deinit { _ = library.commDestroy(communicator) }

    public func allReduceSum(_ tensors: [Tensor]) throws {
        guard !tensors.isEmpty else { return }
        for t in tensors where t.dtype != .f32 || !(t.backend === backend) {
            throw DistributedError.mismatch("NCCL all-reduce of \(t) needs f32 tensors on the training GPU")
        }
        let total = tensors.reduce(0) { $0 + $1.count }
        if flat?.count != total { flat = try backend.empty(Shape([total]), .f32) }
        let buffer = flat!
        let libs = backend.device.libs, stream = backend.device.stream
        var offset = 0
        for t in tensors {
            try libs.check(libs.cuMemcpyDtoDAsync(buffer.device + CUdeviceptr(offset * 4), t.device, t.byteCount, stream),
                           "cuMemcpyDtoDAsync (gradients into the all-reduce buffer)")
            offset += t.count
        }
        let perBucket = max(bucketBytes / 4, 1)
        try library.check(library.groupStart(), "ncclGroupStart")
        var start = 0
        var problem: Error?
        while start < total {
            let count = min(perBucket, total - start)
            let address = UnsafeRawPointer(bitPattern: UInt(buffer.device + CUdeviceptr(start * 4)))
            do {
                try library.check(library.allReduce(address, UnsafeMutableRawPointer(mutating: address), count,
                                                    SWIFTLET_NCCL_FLOAT32, SWIFTLET_NCCL_SUM, communicator, stream),
                                  "ncclAllReduce (\(count) floats)")
            } catch { problem = error; break }
            start += count
        }
        try library.check(library.groupEnd(), "ncclGroupEnd")
        if let problem { throw problem }
        offset = 0
        for t in tensors {
            try libs.check(libs.cuMemcpyDtoDAsync(t.device, buffer.device + CUdeviceptr(offset * 4), t.byteCount, stream),
                           "cuMemcpyDtoDAsync (summed gradients back)")
            offset += t.count
        }
    }

    public func allReduceSum(_ values: [Double]) throws -> [Double] {
        guard !values.isEmpty else { return values }
        if (scalars?.count ?? 0) < values.count { scalars = try backend.empty(Shape([max(values.count, 64)]), .f64) }
        let buffer = scalars!
        let libs = backend.device.libs, stream = backend.device.stream
        var result = values
        try values.withUnsafeBytes {
            try libs.check(libs.cuMemcpyHtoDAsync(buffer.device, $0.baseAddress, $0.count, stream), "cuMemcpyHtoDAsync")
        }
        let address = UnsafeMutableRawPointer(bitPattern: UInt(buffer.device))
        try library.check(library.allReduce(address, address, values.count, SWIFTLET_NCCL_FLOAT64, SWIFTLET_NCCL_SUM,
                                            communicator, stream), "ncclAllReduce (\(values.count) doubles)")
        try result.withUnsafeMutableBytes {
            try libs.check(libs.cuMemcpyDtoHAsync($0.baseAddress, buffer.device, $0.count, stream), "cuMemcpyDtoHAsync")
        }
        try libs.check(libs.cuStreamSynchronize(stream), "cuStreamSynchronize (after the NCCL all-reduce)")
        return result
    }

    public func broadcast(_ tensors: [Tensor], from root: Int) throws {
        let stream = backend.device.stream
        try library.check(library.groupStart(), "ncclGroupStart")
        var problem: Error?
        for t in tensors {
            let address = UnsafeMutableRawPointer(bitPattern: UInt(t.device))
            do {
                // Bytes (ncclInt8 = 0): any dtype broadcasts as its storage.
                try library.check(library.broadcast(address, address, t.byteCount, 0, Int32(root), communicator, stream),
                                  "ncclBroadcast (\(t))")
            } catch { problem = error; break }
        }
        try library.check(library.groupEnd(), "ncclGroupEnd")
        if let problem { throw problem }
    }

    public func barrier() throws {
        backend.synchronize()
        try rendezvous.barrier()
    }
}
