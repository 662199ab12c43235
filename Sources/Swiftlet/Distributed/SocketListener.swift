import Foundation
#if canImport(Glibc)
import Glibc
#endif

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
