/// The collective over the rendezvous' TCP connections, for processes without NCCL (the CPU
/// backend; tests on one machine; CPU clusters). A star: every rank sends its values to rank 0,
/// which adds them in rank order — ((v₀ + v₁) + v₂) + … — and sends the sums back. The order is
/// fixed, so results are reproducible, every rank gets the same bits, and with one micro-batch per
/// rank the sum is the single-process accumulation's own (g₀ + g₁ + … added in micro-batch order).
/// Rank 0's link carries (N-1)× the data of a ring; for LoRA gradients (MiBs) on a few processes
/// that is fine.
public final class TCPCollective: Collective {
    public let rendezvous: Rendezvous
    public var rank: Int { rendezvous.environment.rank }
    public var worldSize: Int { rendezvous.environment.worldSize }

    public init(rendezvous: Rendezvous) { self.rendezvous = rendezvous }

    public func allReduceSum(_ tensors: [Tensor]) throws {
        guard worldSize > 1, let backend = tensors.first?.backend else { return }
        for t in tensors where t.dtype != .f32 {
            throw DistributedError.mismatch("all-reduce of \(t) needs f32 tensors")
        }
        // One message for all tensors: one round trip per step instead of one per tensor.
        var flat: [Float] = []
        flat.reserveCapacity(tensors.reduce(0) { $0 + $1.count })
        for t in tensors { flat += backend.download(t) }
        let summed = try reduce(flat)
        var offset = 0
        for t in tensors {
            backend.copy(try backend.upload(Array(summed[offset..<offset + t.count]), t.shape, .f32), into: t)
            offset += t.count
        }
    }

    public func allReduceSum(_ values: [Double]) throws -> [Double] {
        guard worldSize > 1 else { return values }
        return try reduce(values)
    }

    public func broadcast(_ tensors: [Tensor], from root: Int) throws {
        guard worldSize > 1, let backend = tensors.first?.backend else { return }
        precondition(root == 0, "the TCP collective broadcasts from rank 0 (the star's centre)")
        if rank == 0 {
            var flat: [Float] = []
            for t in tensors { flat += backend.download(t) }
            for peer in 1..<worldSize { try send(flat, to: peer) }
        } else {
            let flat: [Float] = try receive(tensors.reduce(0) { $0 + $1.count }, from: 0)
            var offset = 0
            for t in tensors {
                backend.copy(try backend.upload(Array(flat[offset..<offset + t.count]), t.shape, t.dtype), into: t)
                offset += t.count
            }
        }
    }

    public func barrier() throws { try rendezvous.barrier() }

    /// Rank 0 sums everyone's `values` in rank order and returns the sums to all.
    func reduce<T: BinaryFloatingPoint & BitwiseCopyable>(_ values: [T]) throws -> [T] {
        if rank == 0 {
            var sum = values
            for peer in 1..<worldSize {
                let theirs: [T] = try receive(values.count, from: peer)
                for i in sum.indices { sum[i] += theirs[i] }
            }
            for peer in 1..<worldSize { try send(sum, to: peer) }
            return sum
        }
        try send(values, to: 0)
        return try receive(values.count, from: 0)
    }

    /// Each message starts with its element count, so ranks that disagree on the sizes (different
    /// adapters) fail with a message instead of mixing up the stream.
    private func send<T: BitwiseCopyable>(_ values: [T], to peer: Int) throws {
        let connection = rendezvous.connection(to: peer)
        try connection.send([UInt64(values.count).littleEndian])
        try connection.send(values)
    }

    private func receive<T: BinaryFloatingPoint & BitwiseCopyable>(_ count: Int, from peer: Int) throws -> [T] {
        let connection = rendezvous.connection(to: peer)
        let announced = Int(UInt64(littleEndian: try connection.receive(1, of: UInt64.self, zero: 0)[0]))
        guard announced == count else {
            throw DistributedError.mismatch("\(connection.peer) sent \(announced) values where rank \(rank) expected \(count) "
                + "(are the ranks training the same adapters?)")
        }
        return try connection.receive(count, of: T.self, zero: 0)
    }
}
