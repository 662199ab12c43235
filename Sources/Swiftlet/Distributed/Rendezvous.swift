import Foundation

/// How the processes of a job find each other: rank 0 listens at MASTER_ADDR:MASTER_PORT, every other
/// rank connects and says who it is (rank, world size, a key of the job's settings); rank 0 checks
/// that they agree and answers each with the same payload (NCCL's unique id, or nothing for the TCP
/// collective). The connections stay open: the TCP collective runs over them, and they carry the
/// barrier at the end. A rank that never comes, or disagrees, is an error naming the host and port
/// on every rank, within `timeout` seconds.
public final class Rendezvous {
    public let environment: LaunchEnvironment
    /// Rank 0: the connection to each other rank, indexed by rank (index 0 unused). Others: [rank 0].
    let peers: [SocketConnection?]
    /// What rank 0 handed out.
    public let payload: [UInt8]
    /// Kept so the port stays ours until the job ends.
    private let listener: SocketListener?

    static let magic = Array("swiftlet-rendezvous-1".utf8)

    /// Joins the job. `jobKey` must be equal on all ranks (a digest of the arguments and data), so
    /// two differently configured processes fail at once instead of training different things.
    /// `makePayload` runs on rank 0 only.
    public init(environment: LaunchEnvironment, jobKey: String, timeout: Double,
                makePayload: () throws(DistributedError) -> [UInt8] = { [] }) throws(DistributedError) {
        self.environment = environment
        let host = environment.masterAddress, port = environment.masterPort
        if environment.rank == 0 {
            let payload = try makePayload()
            self.payload = payload
            // A loopback address listens on loopback only; any other listens on every interface, as
            // torch's TCPStore does (MASTER_ADDR may name the host by an address another interface answers).
            let loopback = host == "localhost" || host.hasPrefix("127.") || host == "::1"
            let listener = try SocketListener(host: loopback ? host : "", port: port)
            self.listener = listener
            var peers = [SocketConnection?](repeating: nil, count: environment.worldSize)
            let deadline = Date().addingTimeInterval(timeout)
            var problems: [String] = []
            for _ in 1..<max(environment.worldSize, 1) {
                let missing = (1..<environment.worldSize).filter { peers[$0] == nil }.map(String.init).joined(separator: ", ")
                let connection: SocketConnection
                do {
                    connection = try listener.accept(timeout: max(deadline.timeIntervalSinceNow, 0.001),
                                                     waitingFor: "connection from rank(s) \(missing) of \(environment.worldSize)")
                } catch {
                    // Report the whole wait, not what was left of it for this rank.
                    if case let .timeout(host, port, what, _) = error { throw .timeout(host: host, port: port, waitingFor: what, seconds: timeout) }
                    throw error
                }
                connection.timeout = timeout
                let hello = try connection.receiveMessage(limit: 1 << 16)
                var problem: String?
                var theirRank = -1
                if let parsed = Self.parseHello(hello) {
                    theirRank = parsed.rank
                    connection.peer = "rank \(parsed.rank)"
                    if parsed.worldSize != environment.worldSize {
                        problem = "rank \(parsed.rank) has WORLD_SIZE \(parsed.worldSize), rank 0 has \(environment.worldSize)"
                    } else if !(1..<environment.worldSize).contains(parsed.rank) || peers[parsed.rank] != nil {
                        problem = "two processes claim rank \(parsed.rank) (or it is out of range); check RANK"
                    } else if parsed.jobKey != jobKey {
                        problem = "rank \(parsed.rank) was started with other settings than rank 0 "
                            + "(arguments or data differ: \(parsed.jobKey) vs \(jobKey))"
                    }
                } else {
                    throw DistributedError.protocolViolation(host: host, port: port, problem: "a connection sent no swiftlet hello")
                }
                try connection.sendMessage(Array((problem ?? "ok").utf8))
                if let problem { problems.append(problem); continue }
                try connection.sendMessage(payload)
                peers[theirRank] = connection
            }
            if let first = problems.first { throw DistributedError.mismatch(first) }
            self.peers = peers
        } else {
            listener = nil
            let connection = try SocketConnection.connect(host: host, port: port, peer: "rank 0", timeout: timeout)
            var hello = Self.magic
            hello += withUnsafeBytes(of: UInt32(environment.rank).littleEndian, Array.init)
            hello += withUnsafeBytes(of: UInt32(environment.worldSize).littleEndian, Array.init)
            hello += Array(jobKey.utf8)
            try connection.sendMessage(hello)
            let answer = String(decoding: try connection.receiveMessage(limit: 1 << 16), as: UTF8.self)
            guard answer == "ok" else { throw DistributedError.mismatch(answer) }
            payload = try connection.receiveMessage()
            peers = [connection]
        }
    }

    static func parseHello(_ bytes: [UInt8]) -> (rank: Int, worldSize: Int, jobKey: String)? {
        let m = magic.count
        guard bytes.count >= m + 8, Array(bytes[0..<m]) == magic else { return nil }
        func u32(_ at: Int) -> Int { Int(bytes[at..<at + 4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }) }
        return (u32(m), u32(m + 4), String(decoding: bytes[(m + 8)...], as: UTF8.self))
    }

    /// Rank 0's connection to `rank`, or (on other ranks) the connection to rank 0.
    func connection(to rank: Int) -> SocketConnection {
        environment.rank == 0 ? peers[rank]! : peers[0]!
    }

    /// Returns when every rank has called it (star: each tells rank 0, rank 0 answers all).
    public func barrier() throws(DistributedError) {
        if environment.rank == 0 {
            for rank in 1..<environment.worldSize { _ = try connection(to: rank).receive(1, of: UInt8.self, zero: 0) }
            for rank in 1..<environment.worldSize { try connection(to: rank).send([UInt8(1)]) }
        } else if environment.worldSize > 1 {
            try connection(to: 0).send([UInt8(1)])
            _ = try connection(to: 0).receive(1, of: UInt8.self, zero: 0)
        }
    }

    /// Sets how long each later read or write may wait (the rendezvous may allow less than a training step needs).
    public func setTimeout(_ seconds: Double) {
        for case let peer? in peers { peer.timeout = seconds }
    }
}
