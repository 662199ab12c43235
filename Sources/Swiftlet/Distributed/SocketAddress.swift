import Foundation
#if canImport(Glibc)
import Glibc
#endif

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

/// The C library's message for the current errno.
func errnoText() -> String { String(cString: strerror(errno)) }
