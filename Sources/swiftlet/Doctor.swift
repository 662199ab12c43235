import ArgumentParser
import Foundation
import Swiftlet

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find the CUDA libraries and the GPU, and self-test the CUDA kernels against the CPU.")

    @Option(help: "GPU index.") var gpu = 0
    @Option(help: "Also check a training step against the CPU on the fixture models in this folder (e.g. Tests/SwiftletTests/Fixtures).")
    var fixtures: String?
    @Option(help: "Only replay this AdamW8bit fixture (from scripts/check_adamw8bit_bnb.py) on the CPU and the GPU, and print one RESULT line of JSON.")
    var adamw8bitFixture: String?
    @Option(help: "Run only these checks, comma-separated (\(CUDADoctor.partialChecks.joined(separator: ", ")); model needs --fixtures).")
    var only: String?

    func run() throws {
        if let adamw8bitFixture { return try replayAdamW8bit(adamw8bitFixture) }
        do {
            let passed = try only.map {
                try CUDADoctor.run(deviceIndex: gpu, only: $0.split(separator: ",").map(String.init),
                                   fixtures: fixtures.map { URL(fileURLWithPath: $0) }) { print($0) }
            }
                ?? CUDADoctor.run(deviceIndex: gpu, fixtures: fixtures.map { URL(fileURLWithPath: $0) }) { print($0) }
            if !passed { throw ExitCode(2) }
        } catch let error as CUDAError {
            print("\(error)")
            throw ExitCode(1)
        }
    }
}

extension Doctor {
    /// `RESULT {"cpu": [...], "cuda": [...]}`: per tensor, our error against bitsandbytes' results
    /// (`AdamW8bitReplay.TensorResult`); `cuda_error` instead of `cuda` where no GPU could be used.
    func replayAdamW8bit(_ path: String) throws {
        let fixture = try AdamW8bitReplay.Fixture(url: URL(fileURLWithPath: path))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var fields = ["\"cpu\":" + String(decoding: try encoder.encode(try AdamW8bitReplay.run(fixture, on: CPUBackend())), as: UTF8.self)]
        do {
            let gpu = try CUDABackend(ordinal: gpu)
            fields.append("\"cuda\":" + String(decoding: try encoder.encode(try AdamW8bitReplay.run(fixture, on: gpu)), as: UTF8.self))
        } catch {
            fields.append("\"cuda_error\":" + String(decoding: try encoder.encode(["\(error)"]), as: UTF8.self))
        }
        print("RESULT {" + fields.joined(separator: ",") + "}")
    }
}
