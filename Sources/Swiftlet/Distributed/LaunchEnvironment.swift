import Foundation

/// Where this process sits in a multi-process job, read from the variables the launchers set:
/// torchrun's (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`; `swiftlet train --gpus`
/// sets the same), or SLURM's (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`) with `MASTER_ADDR` and
/// `MASTER_PORT` exported by the batch script, as with PyTorch under srun.
public struct LaunchEnvironment: Sendable, Equatable {
    public var rank: Int
    public var worldSize: Int
    /// This process's index on its machine: the GPU it uses.
    public var localRank: Int
    /// Where rank 0 listens for the rendezvous.
    public var masterAddress: String
    public var masterPort: Int
    /// Which launcher's variables were read ("torchrun" or "SLURM"), for messages.
    public var launcher: String

    public init(rank: Int, worldSize: Int, localRank: Int, masterAddress: String, masterPort: Int, launcher: String = "torchrun") {
        self.rank = rank; self.worldSize = worldSize; self.localRank = localRank
        self.masterAddress = masterAddress; self.masterPort = masterPort; self.launcher = launcher
    }

    /// The job this process belongs to, or nil when no launcher variables are set (a single-process
    /// run). `WORLD_SIZE` (or, without it, `SLURM_NTASKS`) decides; a world of one is still a job
    /// (world size 1 over NCCL is how a one-GPU machine checks the multi-GPU path).
    /// Throws naming the variable when the set is incomplete or malformed.
    public static func read(_ environment: [String: String]) throws(DistributedError) -> LaunchEnvironment? {
        let torchrun = environment["WORLD_SIZE"] != nil || environment["RANK"] != nil
        let slurm = !torchrun && environment["SLURM_NTASKS"] != nil && environment["MASTER_ADDR"] != nil
        guard torchrun || slurm else { return nil }
        let names = torchrun ? (rank: "RANK", world: "WORLD_SIZE", local: "LOCAL_RANK")
                             : (rank: "SLURM_PROCID", world: "SLURM_NTASKS", local: "SLURM_LOCALID")
        func integer(_ name: String, default fallback: Int? = nil) throws(DistributedError) -> Int {
            guard let text = environment[name], !text.isEmpty else {
                if let fallback { return fallback }
                throw DistributedError.environment(variable: name, problem: "is not set (\(torchrun ? "torchrun" : "SLURM") launch: "
                    + "\(names.rank), \(names.world), MASTER_ADDR and MASTER_PORT are needed)")
            }
            guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
                throw DistributedError.environment(variable: name, problem: "is \"\(text)\", not an integer")
            }
            return value
        }
        let worldSize = try integer(names.world)
        let rank = try integer(names.rank)
        guard worldSize >= 1 else { throw DistributedError.environment(variable: names.world, problem: "is \(worldSize); it must be 1 or more") }
        guard (0..<worldSize).contains(rank) else {
            throw DistributedError.environment(variable: names.rank, problem: "is \(rank); with \(names.world)=\(worldSize) it must be 0...\(worldSize - 1)")
        }
        // One process per machine needs no LOCAL_RANK; torchrun and srun always set it.
        let localRank = try integer(names.local, default: worldSize == 1 ? 0 : nil)
        guard localRank >= 0 else { throw DistributedError.environment(variable: names.local, problem: "is \(localRank); it must be 0 or more") }
        let address = environment["MASTER_ADDR"].map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        // World size 1 needs no peer, so the address may be left out (it then listens on loopback).
        guard !address.isEmpty || worldSize == 1 else {
            throw DistributedError.environment(variable: "MASTER_ADDR", problem: "is not set (the host where rank 0 listens for the rendezvous)")
        }
        let port = try integer("MASTER_PORT", default: worldSize == 1 ? 29500 : nil)
        guard (1...65535).contains(port) else {
            throw DistributedError.environment(variable: "MASTER_PORT", problem: "is \(port); it must be a TCP port, 1...65535")
        }
        return LaunchEnvironment(rank: rank, worldSize: worldSize, localRank: localRank,
                                 masterAddress: address.isEmpty ? "127.0.0.1" : address, masterPort: port,
                                 launcher: torchrun ? "torchrun" : "SLURM")
    }

    /// The variables a launcher sets for `rank` of `worldSize` on one machine (what `swiftlet train
    /// --gpus N` gives each worker; torchrun's names).
    public static func variables(rank: Int, worldSize: Int, masterAddress: String, masterPort: Int) -> [String: String] {
        ["RANK": String(rank), "WORLD_SIZE": String(worldSize), "LOCAL_RANK": String(rank),
         "LOCAL_WORLD_SIZE": String(worldSize), "MASTER_ADDR": masterAddress, "MASTER_PORT": String(masterPort)]
    }

    /// The GPU this process uses: `LOCAL_RANK`, or the only GPU visible when the launcher narrowed
    /// `CUDA_VISIBLE_DEVICES` to one per process (as SLURM's `--gpus-per-task` does).
    public func deviceOrdinal(cudaVisibleDevices: String?) -> Int {
        let visible = cudaVisibleDevices?.split(separator: ",").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        return visible?.count == 1 ? 0 : localRank
    }
}
