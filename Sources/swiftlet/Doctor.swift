import ArgumentParser
import Foundation
import Swiftlet

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find the CUDA libraries and the GPU, and self-test the CUDA kernels against the CPU.")

    @Option(help: "GPU index.") var gpu = 0
    @Option(help: "Also check a training step against the CPU on the fixture models in this folder (e.g. Tests/SwiftletTests/Fixtures).")
    var fixtures: String?

    func run() throws {
        do {
            let passed = try CUDADoctor.run(deviceIndex: gpu, fixtures: fixtures.map { URL(fileURLWithPath: $0) }) { print($0) }
            if !passed { throw ExitCode(2) }
        } catch let error as CUDAError {
            print("\(error)")
            throw ExitCode(1)
        }
    }
}
