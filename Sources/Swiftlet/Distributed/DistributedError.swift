/// Errors of multi-process training. Each names what the user can fix: the environment variable,
/// the host and port, the rank, or the library call.
public enum DistributedError: Error, CustomStringConvertible, Equatable {
    /// An environment variable is missing or malformed (`RANK`, `WORLD_SIZE`, `MASTER_PORT`, ...).
    case environment(variable: String, problem: String)
    /// A socket call failed talking to `host:port`.
    case socket(host: String, port: Int, call: String, problem: String)
    /// Nothing answered, or a peer stopped answering, within the time allowed.
    case timeout(host: String, port: Int, waitingFor: String, seconds: Double)
    /// A peer closed its connection (it probably failed; its own output says why).
    case peerClosed(host: String, port: Int, peer: String)
    /// A peer sent something that does not fit the protocol (another program, or another job on the port).
    case protocolViolation(host: String, port: Int, problem: String)
    /// The processes disagree about the job (world size, arguments, data).
    case mismatch(String)
    /// An NCCL call failed.
    case nccl(call: String, code: Int32, message: String)
    /// A worker process of `swiftlet train --gpus/--nproc` failed.
    case worker(rank: Int, status: Int32)

    public var description: String {
        switch self {
        case let .environment(variable, problem): return "distributed launch: \(variable) \(problem)"
        case let .socket(host, port, call, problem): return "rendezvous \(host):\(port): \(call) failed: \(problem)"
        case let .timeout(host, port, what, seconds):
            return "rendezvous \(host):\(port): no \(what) within \(Int(seconds)) s "
                + "(are all ranks started, with the same MASTER_ADDR/MASTER_PORT, and is the port reachable?)"
        case let .peerClosed(host, port, peer):
            return "rendezvous \(host):\(port): \(peer) closed the connection (did that process fail? its output says why)"
        case let .protocolViolation(host, port, problem):
            return "rendezvous \(host):\(port): \(problem) (is another job or program using MASTER_PORT?)"
        case let .mismatch(what): return "distributed training: \(what)"
        case let .nccl(call, code, message): return "NCCL: \(call) failed: \(message) (ncclResult \(code))"
        case let .worker(rank, status):
            if rank < 0 { return "the launcher was terminated (SIGTERM); the workers were stopped" }
            return "worker rank \(rank) failed (exit status \(status)); the other workers were stopped"
        }
    }
}
