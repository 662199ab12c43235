import Foundation

/// Joins the job of a `LaunchEnvironment` with the collective that suits the backend: NCCL between
/// GPUs, TCP between CPU processes. `SWIFTLET_COLLECTIVE=tcp` forces TCP on GPUs too (a machine
/// without libnccl, or to rule NCCL out while debugging); `SWIFTLET_RENDEZVOUS_TIMEOUT` (seconds,
/// default 300) bounds the wait for all ranks to arrive, `SWIFTLET_COLLECTIVE_TIMEOUT` (default 1800,
/// the TCP collective only: rank 0's evaluation or checkpoint may keep the others waiting) each sum.
public enum ProcessGroup {
    public static func join(_ launch: LaunchEnvironment, backend: any Backend, jobKey: String,
                            environment: [String: String] = CUDALibrarySearch.processEnvironment) throws -> any Collective {
        func seconds(_ name: String, _ fallback: Double) throws -> Double {
            guard let text = environment[name] else { return fallback }
            guard let value = Double(text), value > 0 else {
                throw DistributedError.environment(variable: name, problem: "is \"\(text)\", not a positive number of seconds")
            }
            return value
        }
        let rendezvousTimeout = try seconds("SWIFTLET_RENDEZVOUS_TIMEOUT", 300)
        let collectiveTimeout = try seconds("SWIFTLET_COLLECTIVE_TIMEOUT", 1800)
        let choice = environment["SWIFTLET_COLLECTIVE"]?.lowercased()
        guard choice == nil || choice == "tcp" || choice == "nccl" else {
            throw DistributedError.environment(variable: "SWIFTLET_COLLECTIVE", problem: "is \"\(choice!)\"; use nccl or tcp")
        }
        if let cuda = backend as? CUDABackend, choice != "tcp" {
            let nccl = try NCCLCollective(environment: launch, jobKey: jobKey, backend: cuda, timeout: rendezvousTimeout)
            nccl.rendezvous.setTimeout(collectiveTimeout)
            return nccl
        }
        if choice == "nccl" {
            throw DistributedError.environment(variable: "SWIFTLET_COLLECTIVE", problem: "is nccl, but the backend is \(backend.name) (NCCL needs --device cuda)")
        }
        let rendezvous = try Rendezvous(environment: launch, jobKey: jobKey, timeout: rendezvousTimeout)
        rendezvous.setTimeout(collectiveTimeout)
        return TCPCollective(rendezvous: rendezvous)
    }

    /// A short digest of the command line, so ranks started with different arguments refuse to train
    /// together (they would compute different things and hang or diverge).
    public static func jobKey(arguments: [String]) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in arguments.joined(separator: "\u{0}").utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return String(h, radix: 16)
    }
}
