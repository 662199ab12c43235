import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A connected TCP socket (POSIX, blocking, Nagle off) whose reads and writes wait at most
/// `timeout` seconds for progress: a rank that died or hangs becomes a clear error naming the
/// host and port instead of a job that never ends. Foundation's networking is weak on Linux,
/// so this is plain sockets and poll(2).
public final class SocketConnection {
    let fd: Int32
    /// The rendezvous address, for error messages.
    public let host: String
    public let port: Int
    /// Who is at the other end ("rank 2", "rank 0"), for error messages.
    public var peer: String
    /// Seconds a read or write may wait without progress.
    public var timeout: Double

    init(fd: Int32, host: String, port: Int, peer: String, timeout: Double) {
        self.fd = fd; self.host = host; self.port = port; self.peer = peer; self.timeout = timeout
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        // A peer that vanished must not kill this process with SIGPIPE: the write returns EPIPE instead.
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { close(fd) }

    /// Connects to `host:port`, retrying refused connections until `timeout` (the listener may start later).
    public static func connect(host: String, port: Int, peer: String, timeout: Double) throws(DistributedError) -> SocketConnection {
        let deadline = Date().addingTimeInterval(timeout)
        var lastProblem = "no address"
        while true {
            for address in try SocketAddress.resolve(host: host, port: port) {
                let fd = socket(address.family, Int32(SOCK_STREAM.rawValue), 0)
                guard fd >= 0 else { throw DistributedError.socket(host: host, port: port, call: "socket", problem: errnoText()) }
                let result = address.withSockaddr { Glibc.connect(fd, $0, $1) }
                if result == 0 {
                    return SocketConnection(fd: fd, host: host, port: port, peer: peer, timeout: timeout)
                }
                lastProblem = errnoText()
                close(fd)
            }
            if Date() >= deadline {
                throw DistributedError.timeout(host: host, port: port, waitingFor: "listener (last error: \(lastProblem))",
                                               seconds: timeout)
            }
            usleep(100_000)
        }
    }

    /// Writes all of `bytes`.
    public func send(_ bytes: UnsafeRawBufferPointer) throws(DistributedError) {
        var sent = 0
        while sent < bytes.count {
            try wait(for: Int16(POLLOUT), doing: "write")
            let n = Glibc.send(fd, bytes.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL))
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                if errno == EPIPE || errno == ECONNRESET { throw DistributedError.peerClosed(host: host, port: port, peer: peer) }
                throw DistributedError.socket(host: host, port: port, call: "send to \(peer)", problem: errnoText())
            }
            sent += n
        }
    }

    /// Reads exactly `bytes.count` bytes.
    public func receive(into bytes: UnsafeMutableRawBufferPointer) throws(DistributedError) {
        var received = 0
        while received < bytes.count {
            try wait(for: Int16(POLLIN), doing: "data")
            let n = recv(fd, bytes.baseAddress! + received, bytes.count - received, 0)
            if n == 0 { throw DistributedError.peerClosed(host: host, port: port, peer: peer) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                if errno == ECONNRESET { throw DistributedError.peerClosed(host: host, port: port, peer: peer) }
                throw DistributedError.socket(host: host, port: port, call: "recv from \(peer)", problem: errnoText())
            }
            received += n
        }
    }

    public func send<T: BitwiseCopyable>(_ values: [T]) throws(DistributedError) {
        // withUnsafeBytes only rethrows (untyped), so the error is carried out by hand.
        var failure: DistributedError?
        values.withUnsafeBytes { bytes in
            do throws(DistributedError) { try send(bytes) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    public func receive<T: BitwiseCopyable>(_ count: Int, of: T.Type, zero: T) throws(DistributedError) -> [T] {
        var values = [T](repeating: zero, count: count)
        var failure: DistributedError?
        values.withUnsafeMutableBytes { bytes in
            do throws(DistributedError) { try receive(into: bytes) } catch { failure = error }
        }
        if let failure { throw failure }
        return values
    }

    /// A length-prefixed message (the rendezvous' hello and the NCCL unique id).
    public func sendMessage(_ bytes: [UInt8]) throws(DistributedError) {
        try send([UInt64(bytes.count).littleEndian])
        try send(bytes)
    }

    /// Reads a message of `sendMessage`, refusing one longer than `limit` (a stray client on the port).
    public func receiveMessage(limit: Int = 1 << 20) throws(DistributedError) -> [UInt8] {
        let length = Int(UInt64(littleEndian: try receive(1, of: UInt64.self, zero: 0)[0]))
        guard length <= limit else {
            throw DistributedError.protocolViolation(host: host, port: port, problem: "\(peer) announced a message of \(length) bytes")
        }
        return try receive(length, of: UInt8.self, zero: 0)
    }

    private func wait(for event: Int16, doing what: String) throws(DistributedError) {
        var entry = pollfd(fd: fd, events: event, revents: 0)
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let milliseconds = Int32(max(0, min(deadline.timeIntervalSinceNow, 3600)) * 1000)
            let ready = poll(&entry, 1, milliseconds)
            if ready > 0 { return }
            if ready < 0 && errno != EINTR {
                throw DistributedError.socket(host: host, port: port, call: "poll", problem: errnoText())
            }
            if ready == 0 && Date() >= deadline {
                throw DistributedError.timeout(host: host, port: port, waitingFor: "\(what) from \(peer)", seconds: timeout)
            }
        }
    }
}
