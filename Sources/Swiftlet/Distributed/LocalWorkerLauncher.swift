import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Set by the launcher's SIGTERM handler (an atomic: nothing else is safe in a handler).
private let launcherTerminated = Atomic<Bool>(false)

/// `swiftlet train --gpus N` / `--nproc N`: one worker process per local rank, as torchrun's
/// standalone mode starts them. Each worker is this same executable with the same arguments (less
/// the launcher's own flags) and torchrun's variables (RANK = LOCAL_RANK = i, WORLD_SIZE = N,
/// MASTER_ADDR = 127.0.0.1, MASTER_PORT = a free port); worker i uses GPU i. The launcher waits; when
/// a worker fails it stops the others (SIGTERM, then SIGKILL after `gracePeriod`) and reports the
/// first failure. Workers share the launcher's process group, so a terminal's Ctrl-C reaches each one
/// once (each saves nothing but rank 0's checkpoint, and all exit 130).
public struct LocalWorkerLauncher {
    public var executable: String
    public var arguments: [String]
    public var worldSize: Int
    public var masterPort: Int
    /// Variables added to (or replacing) each worker's environment besides the rank variables.
    public var extraEnvironment: [String: String] = [:]
    public var gracePeriod: Double = 10

    public init(executable: String, arguments: [String], worldSize: Int, masterPort: Int) {
        self.executable = executable; self.arguments = arguments; self.worldSize = worldSize; self.masterPort = masterPort
    }

    /// The running executable (/proc/self/exe), so workers run the same binary as the launcher.
    public static var currentExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// `arguments` without the launcher's flags (`--gpus 2`, `--nproc=2`, ...) and their values.
    public static func forwardedArguments(_ arguments: [String], removing flags: Set<String>) -> [String] {
        var result: [String] = []
        var skipNext = false
        for argument in arguments {
            if skipNext { skipNext = false; continue }
            if flags.contains(argument) { skipNext = true; continue }
            if let eq = argument.firstIndex(of: "="), flags.contains(String(argument[..<eq])) { continue }
            result.append(argument)
        }
        return result
    }

    /// A TCP port nobody listens on now (the system's pick), for MASTER_PORT.
    public static func freePort() throws -> Int {
        try SocketListener(host: "127.0.0.1", port: 0).port
    }

    /// Starts the workers and waits for them. Returns 0 when all succeeded; throws
    /// `DistributedError.worker` naming the first rank that failed.
    public func run() throws {
        // Ctrl-C reaches the workers straight from the terminal; the launcher stays to wait for their
        // checkpoint and exit status (a handler, not SIG_IGN, so the workers get the default back on exec).
        signal(SIGINT) { _ in }
        launcherTerminated.store(false, ordering: .relaxed)
        signal(SIGTERM) { _ in launcherTerminated.store(true, ordering: .relaxed) }
        defer { signal(SIGINT, SIG_DFL); signal(SIGTERM, SIG_DFL) }
        var base = CUDALibrarySearch.processEnvironment
        for (key, value) in extraEnvironment { base[key] = value }
        var children: [pid_t] = []
        for rank in 0..<worldSize {
            var environment = base
            for (key, value) in LaunchEnvironment.variables(rank: rank, worldSize: worldSize,
                                                             masterAddress: "127.0.0.1", masterPort: masterPort) {
                environment[key] = value
            }
            do {
                children.append(try Self.spawn(executable, arguments, environment: environment))
            } catch {
                stop(children)
                throw error
            }
        }
        var running = Dictionary(uniqueKeysWithValues: children.enumerated().map { ($0.element, $0.offset) })
        // Polled rather than a blocking waitpid, so a SIGTERM to the launcher (a scheduler's cancel, a
        // timeout) is seen and passed on instead of leaving the workers running on their own.
        while !running.isEmpty {
            if launcherTerminated.load(ordering: .relaxed) {
                stop(Array(running.keys))
                throw DistributedError.worker(rank: -1, status: 128 + SIGTERM)
            }
            for (pid, rank) in running {
                var status: Int32 = 0
                guard waitpid(pid, &status, WNOHANG) == pid else { continue }
                running[pid] = nil
                let code = Self.exitCode(status)
                if code != 0 {
                    stop(Array(running.keys))
                    throw DistributedError.worker(rank: rank, status: code)
                }
            }
            usleep(50_000)
        }
    }

    /// SIGTERM, then SIGKILL for whoever is still there after the grace period; reaps them all.
    private func stop(_ pids: [pid_t]) {
        for pid in pids { kill(pid, SIGTERM) }
        let deadline = Date().addingTimeInterval(gracePeriod)
        var left = Set(pids)
        while !left.isEmpty {
            for pid in left {
                var status: Int32 = 0
                if waitpid(pid, &status, WNOHANG) != 0 { left.remove(pid) }
            }
            if Date() >= deadline {
                for pid in left { kill(pid, SIGKILL); var status: Int32 = 0; waitpid(pid, &status, 0) }
                return
            }
            usleep(50_000)
        }
    }

    /// The shell's convention: the exit status, or 128 + the signal that ended the process.
    static func exitCode(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    static func spawn(_ executable: String, _ arguments: [String], environment: [String: String]) throws -> pid_t {
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, nil, nil, argv, envp)
        guard result == 0 else {
            throw DistributedError.mismatch("cannot start a worker (\(executable)): \(String(cString: strerror(result)))")
        }
        return pid
    }
}
