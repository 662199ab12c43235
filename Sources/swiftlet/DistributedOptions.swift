import ArgumentParser
import Foundation
import Swiftlet

/// Data-parallel training on this machine: `--gpus N` starts N workers, one per GPU (NCCL);
/// `--nproc N` starts N workers on the `--device` given (`--device cpu --nproc 2`: two CPU processes
/// summing gradients over TCP, how the tests check data parallelism without GPUs). Without either,
/// a process started by torchrun or srun (RANK/WORLD_SIZE or SLURM_PROCID/SLURM_NTASKS with
/// MASTER_ADDR/MASTER_PORT) joins its job by itself.
struct DistributedOptions: ParsableArguments {
    @Option(help: "Train data-parallel on this many local GPUs (one worker process each, NCCL). --batch-size and --grad-accum are per GPU.")
    var gpus: Int?
    @Option(help: "Train data-parallel in this many local worker processes on --device (cpu: summed over TCP).")
    var nproc: Int?
    @Option(help: "Rendezvous port for --gpus/--nproc workers (default: a free port).")
    var masterPort: Int?

    static let launcherFlags: Set<String> = ["--gpus", "--nproc", "--master-port"]

    func validate() throws {
        if gpus != nil && nproc != nil { throw ValidationError("give --gpus or --nproc, not both") }
        if let n = gpus ?? nproc, n < 1 { throw ValidationError("--gpus/--nproc must be 1 or more") }
        if let port = masterPort, !(1...65535).contains(port) { throw ValidationError("--master-port must be 1...65535") }
    }

    /// Whether this invocation starts workers instead of training itself.
    var launchesWorkers: Bool { gpus != nil || nproc != nil }

    /// Starts the workers with the command line (flags from --config included) less the launcher's
    /// flags; with --gpus each worker trains on CUDA (--device cuda), GPU = its local rank.
    func launchWorkers(device: Device) throws {
        let n = gpus ?? nproc!
        if gpus != nil && device == .cpu { throw ValidationError("--gpus trains on GPUs; for CPU workers use --device cpu --nproc N") }
        var arguments = LocalWorkerLauncher.forwardedArguments(try ConfigFile.expand(Array(CommandLine.arguments.dropFirst())),
                                                               removing: Self.launcherFlags)
        if gpus != nil { arguments = LocalWorkerLauncher.forwardedArguments(arguments, removing: ["--device"]) + ["--device", "cuda"] }
        let port = try masterPort ?? LocalWorkerLauncher.freePort()
        print("starting \(n) worker\(n == 1 ? "" : "s") (\(gpus != nil ? "one per GPU, NCCL" : "\(device.rawValue)")), "
            + "rendezvous at 127.0.0.1:\(port); rank 0 prints and writes the outputs")
        try LocalWorkerLauncher(executable: LocalWorkerLauncher.currentExecutable, arguments: arguments,
                                worldSize: n, masterPort: port).run()
    }

    /// The job this process was started into (torchrun, srun, or --gpus/--nproc), if any.
    static func launchEnvironment() throws -> LaunchEnvironment? {
        try LaunchEnvironment.read(ProcessInfo.processInfo.environment)
    }

    /// The backend on this rank's device, and the process group joined over it.
    static func joinJob(_ launch: LaunchEnvironment?, device: Device, precision: Precision,
                        note: (String) -> Void) throws -> (backend: any Backend, group: (any Collective)?) {
        guard let launch else { return (try device.makeBackend(precision: precision, note: note), nil) }
        let ordinal = launch.deviceOrdinal(cudaVisibleDevices: ProcessInfo.processInfo.environment["CUDA_VISIBLE_DEVICES"])
        let backend = try device.makeBackend(precision: precision, ordinal: ordinal, note: note)
        let group = try ProcessGroup.join(launch, backend: backend,
                                          jobKey: ProcessGroup.jobKey(arguments: Array(CommandLine.arguments.dropFirst())))
        if launch.rank == 0 {
            print("data parallel: \(launch.worldSize) rank\(launch.worldSize == 1 ? "" : "s") (\(launch.launcher)), "
                + "\((group as? NCCLCollective).map { "NCCL \($0.library.version) (\($0.library.library.path))" } ?? "TCP") collective, rendezvous \(launch.masterAddress):\(launch.masterPort)")
        }
        return (backend, group)
    }
}
