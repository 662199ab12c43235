import ArgumentParser
import Swiftlet

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find the CUDA libraries and the GPU, and self-test the CUDA kernels against the CPU.")

    @Option(help: "GPU index.") var gpu = 0

    func run() throws {
        do {
            let passed = try CUDADoctor.run(deviceIndex: gpu) { print($0) }
            if !passed { throw ExitCode(2) }
        } catch let error as CUDAError {
            print("\(error)")
            throw ExitCode(1)
        }
    }
}
