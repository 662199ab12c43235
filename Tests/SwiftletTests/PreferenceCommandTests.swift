import Foundation
import XCTest
@testable import Swiftlet

/// `swiftlet dpo` and `swiftlet orpo` end to end with the built binary: data parallel over CPU
/// worker processes (TCP collective) against one process with N× the accumulation, and the data
/// file read once.
final class PreferenceCommandTests: XCTestCase {
    /// The demo model and 8 (or `pairs`) demo preference pairs; returns the flags every run shares.
    private func demoFlags(in dir: URL, pairs: Int = 8) throws -> [String] {
        try DemoTask.write(to: dir)
        let data = dir.appendingPathComponent("pairs.jsonl")
        try PreferenceTrainingCase.writeDemoPairs(to: data, count: pairs)
        return ["--model", dir.appendingPathComponent("model").path, "--data", data.path, "--device", "cpu",
                "--lr", "3e-3", "--lora-alpha", "32", "--max-length", "96", "--batch-size", "1", "--logging-steps", "1"]
    }

    /// Runs one command to `dir/name`; returns the adapter and the logged steps.
    private func train(_ command: [String], _ dir: URL, _ name: String) throws -> (adapter: [String: [Float]], steps: [[String: Any]]) {
        let out = dir.appendingPathComponent(name)
        let result = try runSwiftlet(command + ["--output", out.path], timeout: 300)
        XCTAssertEqual(result.status, 0, "\(name):\n\(result.output)")
        if let i = command.firstIndex(of: "--nproc") {
            XCTAssertTrue(result.output.contains("data parallel: \(command[i + 1]) ranks"), result.output)
        }
        let steps = try MetricsLog.read(url: out.appendingPathComponent("metrics.jsonl")).filter { $0["train_runtime"] == nil }
        return (try adapterTensors(out), steps)
    }

    /// Each logged step's numbers (loss, grad norm, learning rate, epoch, tokens, the objective's
    /// metrics) but its timings.
    private func values(_ steps: [[String: Any]]) -> [[String: Double]] {
        let timings: Set<String> = ["tokens_per_second", "memory_gib", "allreduce_ms"]
        return steps.map { row in row.filter { !timings.contains($0.key) }.compactMapValues { $0 as? Double } }
    }

    /// 2 ranks equal 1 process with 2× accumulation, bit for bit: one micro-batch of one pair per
    /// rank (two rows, under the CPU GEMM's 256-token block), so each micro-batch's LoRA gradient
    /// enters the sum in one rounding and the single process adds g₀ + g₁ as the TCP collective does;
    /// the loss and metrics are divided by the global micro-batch count before the same rank-ordered sum.
    private func checkTwoRanks(_ objective: String) throws {
        let dir = try scratchDirectory()
        let common = [objective] + (try demoFlags(in: dir)) + ["--max-steps", "3"]
        let alone = try train(common + ["--grad-accum", "2"], dir, "alone")
        let parallel = try train(common + ["--nproc", "2"], dir, "parallel")
        XCTAssertEqual(parallel.adapter, alone.adapter, "\(objective): 2 ranks vs 1 process with --grad-accum 2")
        XCTAssertEqual(parallel.steps.count, 3)
        XCTAssertEqual(values(parallel.steps), values(alone.steps), "\(objective): logged loss and metrics")
        for key in ["loss", "grad_norm", "num_tokens", "rewards/accuracies"] { XCTAssertNotNil(values(parallel.steps).first?[key], key) }
        XCTAssertNotNil(parallel.steps.first?["allreduce_ms"], "the gradient sum is timed")
        // The comparison can tell: one process without the second micro-batch trains other adapters.
        XCTAssertNotEqual(try train(common, dir, "half").adapter, alone.adapter)
    }

    func testDPOTwoRanksEqualOneProcessWithTwiceTheAccumulation() throws { try checkTwoRanks("dpo") }

    func testORPOTwoRanksEqualOneProcessWithTwiceTheAccumulation() throws { try checkTwoRanks("orpo") }

    /// --precompute-ref-logps over 2 ranks (each scores every other batch; one sum) and the steps of
    /// an epoch without --max-steps (global batches): the adapter of one process with 2× accumulation.
    func testDPOPrecomputedReferenceAndEpochOverTwoRanks() throws {
        let dir = try scratchDirectory()
        let common = ["dpo"] + (try demoFlags(in: dir)) + ["--precompute-ref-logps", "--num-train-epochs", "1"]
        let alone = try train(common + ["--grad-accum", "2"], dir, "alone")
        let parallel = try train(common + ["--nproc", "2"], dir, "parallel")
        XCTAssertEqual(alone.steps.count, 4, "8 pairs, 2 per step")
        XCTAssertEqual(parallel.steps.count, 4, "an epoch counts global batches")
        XCTAssertEqual(parallel.adapter, alone.adapter)
        XCTAssertEqual(values(parallel.steps), values(alone.steps))
    }

    /// 3 ranks, where the 8 reference batches do not divide evenly (ranks score 3, 3 and 2 of them),
    /// against one process with 3× accumulation: bit for bit, the sum being ((g₀ + g₁) + g₂) in both.
    func testDPOPrecomputedReferenceOverThreeRanks() throws {
        let dir = try scratchDirectory()
        let common = ["dpo"] + (try demoFlags(in: dir)) + ["--precompute-ref-logps", "--max-steps", "2"]
        let alone = try train(common + ["--grad-accum", "3"], dir, "alone")
        let parallel = try train(common + ["--nproc", "3"], dir, "parallel")
        XCTAssertEqual(parallel.adapter, alone.adapter)
        XCTAssertEqual(values(parallel.steps), values(alone.steps))
    }

    /// Without --max-steps the pairs are counted for the epoch's steps; the file must still be read
    /// once. The data is a FIFO that the test writes once: a second read would wait forever for a
    /// writer (the run then times out and fails).
    func testDataIsReadOnce() throws {
        for objective in ["dpo", "orpo"] {
            let dir = try scratchDirectory()
            let flags = try demoFlags(in: dir, pairs: 4)
            let file = dir.appendingPathComponent("pairs.jsonl")
            let content = try Data(contentsOf: file)
            try FileManager.default.removeItem(at: file)
            let fifo = dir.appendingPathComponent("once.jsonl")
            XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
            var arguments = [objective] + flags + ["--num-train-epochs", "1", "--output", dir.appendingPathComponent("out").path]
            arguments[arguments.firstIndex(of: file.path)!] = fifo.path
            let started = try startSwiftlet(arguments)
            // Open for writing once the command opens it for reading (non-blocking: ENXIO until then).
            var fd: Int32 = -1
            let deadline = Date().addingTimeInterval(120)
            while fd < 0 && started.0.isRunning && Date() < deadline {
                fd = open(fifo.path, O_WRONLY | O_NONBLOCK)
                if fd < 0 { usleep(20_000) }
            }
            XCTAssertGreaterThanOrEqual(fd, 0, "\(objective) never opened the data")
            if fd >= 0 {
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
                content.withUnsafeBytes { buffer in
                    var written = 0
                    while written < buffer.count {
                        let n = write(fd, buffer.baseAddress! + written, buffer.count - written)
                        if n <= 0 { break }
                        written += n
                    }
                }
                close(fd)
            }
            let result = try finishSwiftlet(started, timeout: 60)
            XCTAssertEqual(result.status, 0, "\(objective) (a second read of the data waits for a writer forever):\n\(result.output)")
            XCTAssertTrue(result.output.contains("4 preference pairs"), result.output)
        }
    }
}
