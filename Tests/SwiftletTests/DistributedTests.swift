import Foundation
import XCTest
@testable import Swiftlet

/// Data-parallel training on the CPU: launch variables, the rendezvous and the TCP collective in
/// threads, the micro-batch split, and end to end with worker processes of the built `swiftlet`
/// binary (every wait bounded, so a hang fails the test instead of CI).
final class DistributedTests: XCTestCase {
    // MARK: launch environment

    func testTorchrunVariables() throws {
        let env = ["RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "node0", "MASTER_PORT": "29501"]
        XCTAssertEqual(try LaunchEnvironment.read(env),
                       LaunchEnvironment(rank: 1, worldSize: 4, localRank: 1, masterAddress: "node0", masterPort: 29501))
        XCTAssertNil(try LaunchEnvironment.read([:]))
        XCTAssertNil(try LaunchEnvironment.read(["MASTER_ADDR": "x", "MASTER_PORT": "1"]))
    }

    func testSlurmVariables() throws {
        let env = ["SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "12345"]
        XCTAssertEqual(try LaunchEnvironment.read(env),
                       LaunchEnvironment(rank: 5, worldSize: 8, localRank: 1, masterAddress: "10.0.0.1", masterPort: 12345, launcher: "SLURM"))
        // A SLURM allocation without MASTER_ADDR is an ordinary single-process run (srun of a normal job).
        XCTAssertNil(try LaunchEnvironment.read(["SLURM_PROCID": "0", "SLURM_NTASKS": "1"]))
    }

    func testWorldSizeOneNeedsNoMaster() throws {
        XCTAssertEqual(try LaunchEnvironment.read(["RANK": "0", "WORLD_SIZE": "1"]),
                       LaunchEnvironment(rank: 0, worldSize: 1, localRank: 0, masterAddress: "127.0.0.1", masterPort: 29500))
    }

    func testBadVariablesNameTheVariable() {
        func problem(_ env: [String: String]) -> String {
            do { _ = try LaunchEnvironment.read(env); return "no error" } catch { return "\(error)" }
        }
        XCTAssertTrue(problem(["RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_PORT": "1"]).contains("MASTER_ADDR is not set"))
        XCTAssertTrue(problem(["RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h"]).contains("MASTER_PORT is not set"))
        XCTAssertTrue(problem(["RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"])
            .contains("RANK is 2; with WORLD_SIZE=2 it must be 0...1"))
        XCTAssertTrue(problem(["RANK": "0", "WORLD_SIZE": "two"]).contains("WORLD_SIZE is \"two\", not an integer"))
        XCTAssertTrue(problem(["RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "70000"])
            .contains("MASTER_PORT is 70000"))
        XCTAssertTrue(problem(["WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"]).contains("RANK is not set"))
    }

    func testDeviceOrdinal() {
        let launch = LaunchEnvironment(rank: 3, worldSize: 4, localRank: 3, masterAddress: "h", masterPort: 1)
        XCTAssertEqual(launch.deviceOrdinal(cudaVisibleDevices: nil), 3)
        XCTAssertEqual(launch.deviceOrdinal(cudaVisibleDevices: "0,1,2,3"), 3)
        XCTAssertEqual(launch.deviceOrdinal(cudaVisibleDevices: "3"), 0)  // narrowed to one GPU per process
    }

    func testForwardedArgumentsDropLauncherFlags() {
        let args = ["train", "--gpus", "2", "--lr", "1e-3", "--nproc=3", "--master-port", "5000", "--output", "o"]
        XCTAssertEqual(LocalWorkerLauncher.forwardedArguments(args, removing: ["--gpus", "--nproc", "--master-port"]),
                       ["train", "--lr", "1e-3", "--output", "o"])
    }

    func testSplitCoversTheStepOnce() {
        for world in 1...4 {
            for perRank in 1...3 {
                let all = (0..<world).flatMap {
                    Array(DataParallelSplit(rank: $0, worldSize: world, microBatchesPerRank: perRank).microBatches)
                }
                XCTAssertEqual(all, Array(0..<world * perRank))
            }
        }
        XCTAssertEqual(DataParallelSplit(rank: 1, worldSize: 2, microBatchesPerRank: 3).microBatches, 3..<6)
    }

    // MARK: rendezvous and TCP collective (threads on loopback)

    /// Runs `body` for each rank of a loopback job in its own thread; returns each rank's result or error.
    private func runRanks<T>(_ world: Int, port: Int, jobKey: (Int) -> String = { _ in "job" }, timeout: Double = 20,
                             _ body: @escaping (TCPCollective) throws -> T) -> [Result<T, Error>] {
        let results = ResultBox<T>(count: world)
        let group = DispatchGroup()
        for rank in 0..<world {
            group.enter()
            let key = jobKey(rank)
            Thread {
                defer { group.leave() }
                results.set(rank, Result {
                    let env = LaunchEnvironment(rank: rank, worldSize: world, localRank: rank, masterAddress: "127.0.0.1", masterPort: port)
                    let rendezvous = try Rendezvous(environment: env, jobKey: key, timeout: timeout)
                    return try body(TCPCollective(rendezvous: rendezvous))
                })
            }.start()
        }
        XCTAssertEqual(group.wait(timeout: .now() + timeout + 30), .success, "ranks did not finish")
        return results.values
    }

    func testTCPAllReduceSumsInRankOrderOnEveryRank() throws {
        let port = try LocalWorkerLauncher.freePort()
        // Values whose float sum depends on the order: ((a + b) + c) is what rank order gives.
        let inputs: [[Double]] = [[1e16, 1, 0.1], [1, -1e16, 0.2], [1, 3, 0.3]]
        let results = runRanks(3, port: port) { group -> [Double] in
            try group.barrier()
            return try group.allReduceSum(inputs[group.rank])
        }
        let expected = (0..<3).map { i in (inputs[0][i] + inputs[1][i]) + inputs[2][i] }
        for result in results { XCTAssertEqual(try result.get(), expected) }
    }

    func testTCPAllReduceAndBroadcastOfTensors() throws {
        let port = try LocalWorkerLauncher.freePort()
        let results = runRanks(2, port: port) { group -> [[Float]] in
            let backend = CPUBackend()
            let a = try backend.upload([1, 2, 3].map { Float($0 + group.rank * 10) }, Shape([3]), .f32)
            let b = try backend.upload([Float(group.rank)], Shape([1]), .f32)
            try group.allReduceSum([a, b])
            let c = try backend.upload([Float(group.rank + 7)], Shape([1]), .f32)
            try group.broadcast([c], from: 0)
            return [backend.download(a), backend.download(b), backend.download(c)]
        }
        for result in results { XCTAssertEqual(try result.get(), [[12, 14, 16], [1], [7]]) }
    }

    func testRanksWithOtherSettingsAreRefused() throws {
        let port = try LocalWorkerLauncher.freePort()
        let results = runRanks(2, port: port, jobKey: { $0 == 0 ? "a" : "b" }) { _ in 0 }
        for result in results {
            guard case let .failure(error) = result else { return XCTFail("a rank with other settings was accepted") }
            XCTAssertTrue("\(error)".contains("other settings") || "\(error)".contains("closed"), "\(error)")
        }
        if case let .failure(error) = results[1] { XCTAssertTrue("\(error)".contains("other settings"), "\(error)") }
    }

    func testMissingRankTimesOutNamingHostAndPort() throws {
        let port = try LocalWorkerLauncher.freePort()
        let env = LaunchEnvironment(rank: 0, worldSize: 2, localRank: 0, masterAddress: "127.0.0.1", masterPort: port)
        let start = Date()
        XCTAssertThrowsError(try Rendezvous(environment: env, jobKey: "k", timeout: 1)) { error in
            XCTAssertTrue("\(error)".contains("127.0.0.1:\(port)"), "\(error)")
            XCTAssertTrue("\(error)".contains("rank(s) 1"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        // A rank whose rank 0 never comes.
        let worker = LaunchEnvironment(rank: 1, worldSize: 2, localRank: 1, masterAddress: "127.0.0.1", masterPort: port)
        XCTAssertThrowsError(try Rendezvous(environment: worker, jobKey: "k", timeout: 1)) { error in
            XCTAssertTrue("\(error)".contains("127.0.0.1:\(port): no listener"), "\(error)")
        }
    }

    // MARK: end to end with worker processes

    /// The demo's model and chat data, written once by a short single-process run.
    private func demoData(in dir: URL) throws -> [String] {
        let (status, output) = try runSwiftlet(["train", "--device", "cpu", "--max-steps", "1", "--output", dir.appendingPathComponent("seed").path])
        XCTAssertEqual(status, 0, output)
        let data = dir.appendingPathComponent("seed/demo-data")
        return ["--model", data.appendingPathComponent("model").path, "--data", data.appendingPathComponent("chat.jsonl").path,
                "--train-on-responses-only", "--device", "cpu", "--lr", "3e-3", "--lora-alpha", "32", "--max-seq-length", "96"]
    }

    /// Two ranks started as torchrun starts them (RANK, WORLD_SIZE, ... in the environment), each in
    /// its own working folder with the same relative --output: rank 0's adapter is bit for bit the
    /// single process's with 2× the accumulation, and rank 1 wrote nothing.
    ///
    /// Bitwise, not a tolerance: with one micro-batch per rank of at most 256 tokens (batch 2 here),
    /// each micro-batch adds its LoRA gradient into the buffer in one rounding (the CPU GEMM walks
    /// the tokens in blocks of 256), so the single process computes g₀ + g₁ exactly as the TCP
    /// collective's rank-ordered sum does; everything after the sum is the same code on the same bits.
    func testTwoRanksEqualOneProcessWithTwiceTheAccumulation() throws {
        let dir = try scratchDirectory()
        let common = try demoData(in: dir) + ["--batch-size", "2", "--max-steps", "3"]
        let reference = dir.appendingPathComponent("reference")
        let single = try runSwiftlet(["train"] + common + ["--grad-accum", "2", "--output", reference.path])
        XCTAssertEqual(single.status, 0, single.output)

        let port = try LocalWorkerLauncher.freePort()
        var ranks: [(Process, URL)] = []
        for rank in 0..<2 {
            let folder = dir.appendingPathComponent("rank\(rank)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            ranks.append(try startSwiftlet(["train"] + common + ["--output", "out"], in: folder,
                                   environment: LaunchEnvironment.variables(rank: rank, worldSize: 2, masterAddress: "127.0.0.1", masterPort: port)))
        }
        let results = try ranks.map { try finishSwiftlet($0) }
        for (rank, result) in results.enumerated() { XCTAssertEqual(result.status, 0, "rank \(rank):\n\(result.output)") }
        XCTAssertTrue(results[0].output.contains("data parallel: 2 ranks"), results[0].output)
        XCTAssertFalse(results[1].output.contains("step 1/3"), "rank 1 printed progress:\n\(results[1].output)")

        let out = dir.appendingPathComponent("rank0/out")
        XCTAssertEqual(try adapterTensors(out), try adapterTensors(reference))
        // The comparison can tell: one process without the second micro-batch trains other adapters.
        let half = dir.appendingPathComponent("half")
        XCTAssertEqual(try runSwiftlet(["train"] + common + ["--output", half.path]).status, 0)
        XCTAssertNotEqual(try adapterTensors(out), try adapterTensors(half))
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("metrics.jsonl").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("rank1/out").path), "rank 1 wrote outputs")
        // The logged losses agree too (sums of per-rank terms: equal to ~1e-15).
        let distributed = try MetricsLog.read(url: out.appendingPathComponent("metrics.jsonl"))
        let alone = try MetricsLog.read(url: reference.appendingPathComponent("metrics.jsonl"))
        XCTAssertEqual(distributed.count, alone.count)
    }

    /// `--nproc 3` (the launcher) bitwise against `--grad-accum 3`; and `--nproc 2 --grad-accum 2`
    /// against `--grad-accum 4` with batches over 256 tokens, where the rank sums re-associate the
    /// accumulation: equal to rounding. SGD, because its update is linear in the gradient, so the
    /// adapters differ by the gradients' rounding (measured 2.6e-7 of each tensor's largest value);
    /// AdamW's first steps are ≈ lr·sign(g) per element, which turns rounding on elements whose
    /// gradient is nearly zero into differences of order lr (measured 4e-6), so it would test Adam's
    /// sensitivity rather than the data-parallel sum.
    func testLauncherWorkersEqualOneProcess() throws {
        let dir = try scratchDirectory()
        let common = try demoData(in: dir) + ["--max-steps", "3"]
        func run(_ name: String, _ extra: [String]) throws -> [String: [Float]] {
            let out = dir.appendingPathComponent(name)
            let result = try runSwiftlet(["train"] + common + extra + ["--output", out.path])
            XCTAssertEqual(result.status, 0, result.output)
            return try adapterTensors(out)
        }
        XCTAssertEqual(try run("three", ["--batch-size", "2", "--nproc", "3"]), try run("three-alone", ["--batch-size", "2", "--grad-accum", "3"]))

        let distributed = try run("sgd-dp", ["--optim", "sgd", "--batch-size", "8", "--nproc", "2", "--grad-accum", "2"])
        let alone = try run("sgd-alone", ["--optim", "sgd", "--batch-size", "8", "--grad-accum", "4"])
        XCTAssertEqual(Set(distributed.keys), Set(alone.keys))
        var worst: Float = 0
        for (name, values) in alone {
            let scale = values.map(abs).max() ?? 1
            for (a, b) in zip(distributed[name]!, values) { worst = max(worst, abs(a - b) / max(scale, 1e-12)) }
        }
        XCTAssertLessThanOrEqual(worst, 1e-6)
    }

    /// A checkpoint of 2 ranks resumes in one process with the same global batch, continuing the
    /// same trajectory bit for bit (the data position is global; the accumulation stored is global).
    func testResumeWithAnotherWorldSize() throws {
        let dir = try scratchDirectory()
        let common = try demoData(in: dir) + ["--batch-size", "2", "--scheduler", "constant", "--save-steps", "2"]
        let straight = dir.appendingPathComponent("straight"), resumed = dir.appendingPathComponent("resumed")
        var r = try runSwiftlet(["train"] + common + ["--grad-accum", "2", "--max-steps", "4", "--output", straight.path])
        XCTAssertEqual(r.status, 0, r.output)
        r = try runSwiftlet(["train"] + common + ["--nproc", "2", "--max-steps", "2", "--output", resumed.path])
        XCTAssertEqual(r.status, 0, r.output)
        // The 2 ranks' logged steps count the global batch's tokens once (each rank reports its own share).
        func history(_ run: URL) throws -> [[String: Any]] {
            let state = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("checkpoint-2/trainer_state.json")))
            return try XCTUnwrap((state as? [String: Any])?["log_history"] as? [[String: Any]])
        }
        for (ranks, alone) in zip(try history(resumed), try history(straight)) {
            for key in ["tokens", "target_tokens"] { XCTAssertEqual(ranks[key] as? Int, alone[key] as? Int, key) }
        }
        r = try runSwiftlet(["train"] + common + ["--grad-accum", "2", "--max-steps", "4", "--resume", "--output", resumed.path])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("resumed from"), r.output)
        XCTAssertEqual(try adapterTensors(resumed), try adapterTensors(straight))
        // Another global batch is refused, naming the accumulation.
        r = try runSwiftlet(["train"] + common + ["--grad-accum", "1", "--max-steps", "4", "--resume", "--output", resumed.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.output.contains("gradientAccumulation"), r.output)
    }

    /// A worker that fails stops the job: the launcher exits non-zero, naming the rank, and nothing hangs.
    func testFailingWorkerStopsTheLauncher() throws {
        let dir = try scratchDirectory()
        let result = try runSwiftlet(["train", "--device", "cpu", "--nproc", "2", "--model", dir.path, "--data",
                                   dir.appendingPathComponent("missing.jsonl").path, "--output", dir.appendingPathComponent("o").path],
                                  environment: ["SWIFTLET_RENDEZVOUS_TIMEOUT": "20"], timeout: 90)
        XCTAssertNotEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("worker rank"), "status \(result.status): \(result.output)")
        // Each worker writes its error in one call, so two failing workers' lines stay whole (they were
        // interleaved inside each other, and inside multi-byte characters, in about one run in six).
        XCTAssertFalse(result.output.contains("\u{FFFD}"), "a line was cut inside a character: \(result.output)")
        for line in result.output.split(separator: "\n") where line.hasPrefix("Error: ") && line.contains("config.json") {
            XCTAssertTrue(line.contains(": cannot be read (") && line.hasSuffix(")"), "an interleaved line: \(line)")
        }
    }

    /// SIGTERM to the launcher (a scheduler cancelling the job) stops its workers too.
    func testTerminatedLauncherStopsItsWorkers() throws {
        let dir = try scratchDirectory()
        // The demo's 300 steps outlast the 1.5 s before the SIGTERM.
        let port = try LocalWorkerLauncher.freePort()
        let started = try startSwiftlet(["train", "--device", "cpu", "--nproc", "2", "--master-port", String(port),
                                 "--output", dir.appendingPathComponent("o").path],
                                environment: ["SWIFTLET_RENDEZVOUS_TIMEOUT": "600"])
        usleep(1_500_000)
        started.0.terminate()
        let result = try finishSwiftlet(started, timeout: 30)
        XCTAssertNotEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("terminated"), result.output)
        // No worker is left: none has the run's unique output folder on its command line.
        let ps = Process()
        ps.executableURL = URL(fileURLWithPath: "/bin/ps")
        ps.arguments = ["-eo", "args"]
        let pipe = Pipe()
        ps.standardOutput = pipe
        try ps.run()
        let listing = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        ps.waitUntilExit()
        XCTAssertFalse(listing.contains(dir.appendingPathComponent("o").path), "a worker outlived its launcher:\n\(listing)")
    }
}

/// Per-rank results written from the rank threads.
private final class ResultBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Result<T, Error>?]
    init(count: Int) { results = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ result: Result<T, Error>) { lock.lock(); results[index] = result; lock.unlock() }
    var values: [Result<T, Error>] {
        lock.lock(); defer { lock.unlock() }
        return results.map { $0 ?? .failure(DistributedError.mismatch("rank did not finish")) }
    }
}
