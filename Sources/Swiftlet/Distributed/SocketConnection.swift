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

/// A listening TCP socket (rank 0's side of the rendezvous).
public final class SocketListener {
    let fd: Int32
    public let host: String
    /// The port listened on (the one asked for, or the one the system chose for port 0).
    public let port: Int

    /// Listens on `host:port` (host "" or "0.0.0.0" listens on every interface), with SO_REUSEADDR so a
    /// restarted job can take the port at once.
    public init(host: String, port: Int, backlog: Int32 = 128) throws(DistributedError) {
        self.host = host
        let bindHost = host.isEmpty ? "0.0.0.0" : host
        guard let address = try SocketAddress.resolve(host: bindHost, port: port).first else {
            throw DistributedError.socket(host: host, port: port, call: "getaddrinfo", problem: "no address")
        }
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw DistributedError.socket(host: host, port: port, call: "socket", problem: errnoText()) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard address.withSockaddr({ bind(fd, $0, $1) }) == 0 else {
            let problem = errnoText()
            close(fd)
            throw DistributedError.socket(host: host, port: port, call: "bind", problem: problem
                + (errno == EADDRINUSE ? " (another job on MASTER_PORT? pick another port)" : ""))
        }
        guard listen(fd, backlog) == 0 else {
            let problem = errnoText()
            close(fd)
            throw DistributedError.socket(host: host, port: port, call: "listen", problem: problem)
        }
        self.fd = fd
        var bound = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.port = SocketAddress.port(of: bound) ?? port
    }

    deinit { close(fd) }

    /// Accepts one connection, waiting at most `timeout` seconds.
    public func accept(timeout: Double, waitingFor what: String) throws(DistributedError) -> SocketConnection {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let milliseconds = Int32(max(0, min(deadline.timeIntervalSinceNow, 3600)) * 1000)
            let ready = poll(&entry, 1, milliseconds)
            if ready > 0 {
                let client = Glibc.accept(fd, nil, nil)
                if client >= 0 { return SocketConnection(fd: client, host: host, port: port, peer: "a new connection", timeout: timeout) }
                if errno == EINTR || errno == ECONNABORTED { continue }
                throw DistributedError.socket(host: host, port: port, call: "accept", problem: errnoText())
            }
            if ready < 0 && errno != EINTR {
                throw DistributedError.socket(host: host, port: port, call: "poll", problem: errnoText())
            }
            if Date() >= deadline { throw DistributedError.timeout(host: host, port: port, waitingFor: what, seconds: timeout) }
        }
    }
}

/// A resolved IPv4 or IPv6 address.
struct SocketAddress {
    var storage: sockaddr_storage
    var length: socklen_t
    var family: Int32 { Int32(storage.ss_family) }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafePointer(to: storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) } }
    }

    /// getaddrinfo for a TCP `host:port`.
    static func resolve(host: String, port: Int) throws(DistributedError) -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>? = nil
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0 else {
            throw DistributedError.socket(host: host, port: port, call: "getaddrinfo", problem: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(list) }
        var result: [SocketAddress] = []
        var entry = list
        while let e = entry {
            var storage = sockaddr_storage()
            withUnsafeMutableBytes(of: &storage) { raw in
                raw.copyMemory(from: UnsafeRawBufferPointer(start: e.pointee.ai_addr, count: Int(e.pointee.ai_addrlen)))
            }
            result.append(SocketAddress(storage: storage, length: e.pointee.ai_addrlen))
            entry = e.pointee.ai_next
        }
        return result
    }

    static func port(of storage: sockaddr_storage) -> Int? {
        var copy = storage
        return withUnsafePointer(to: &copy) { pointer -> Int? in
            switch Int32(storage.ss_family) {
            case AF_INET: return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
            case AF_INET6: return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            default: return nil
            }
        }
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }
