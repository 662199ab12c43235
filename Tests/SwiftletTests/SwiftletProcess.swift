import Foundation
import XCTest
@testable import Swiftlet

/// The built `swiftlet` binary as a child process, for tests of the commands end to end (data
/// parallel workers, what a command reads): every wait is bounded, so a hang fails the test.
extension XCTestCase {
    /// The binary next to the test bundle; the test is skipped when it was not built.
    var swiftletBinary: URL {
        get throws {
            var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            while dir.path.hasSuffix(".xctest") || dir.lastPathComponent == "Contents" || dir.lastPathComponent == "MacOS" {
                dir = dir.deletingLastPathComponent()
            }
            let binary = dir.appendingPathComponent("swiftlet")
            guard FileManager.default.isExecutableFile(atPath: binary.path) else {
                throw XCTSkip("swiftlet binary not built next to the tests (\(binary.path))")
            }
            return binary
        }
    }

    /// Runs the binary (killed after `timeout` seconds); returns its exit status and output.
    @discardableResult
    func runSwiftlet(_ arguments: [String], in directory: URL? = nil, environment: [String: String] = [:],
                     timeout: Double = 180) throws -> (status: Int32, output: String) {
        try finishSwiftlet(try startSwiftlet(arguments, in: directory, environment: environment), timeout: timeout)
    }

    /// Starts the binary without the launch variables of the test's own environment, stdout and
    /// stderr into one log file; returns the process and the log.
    func startSwiftlet(_ arguments: [String], in directory: URL? = nil, environment: [String: String] = [:]) throws -> (Process, URL) {
        let process = Process()
        process.executableURL = try swiftletBinary
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        var env = ProcessInfo.processInfo.environment
        for key in ["RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS", "SLURM_PROCID"] { env[key] = nil }
        env.merge(environment) { $1 }
        process.environment = env
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("swiftlet-run-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return (process, log)
    }

    /// Waits for a started binary (killing it after `timeout` seconds, which fails the test).
    func finishSwiftlet(_ started: (Process, URL), timeout: Double = 180) throws -> (status: Int32, output: String) {
        let (process, log) = started
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning {
            process.terminate()
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            XCTFail("swiftlet \(process.arguments ?? []) did not finish within \(timeout) s:\n\((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
        }
        process.waitUntilExit()
        // Decoded leniently: the launcher and its workers write to one shared log, and two processes'
        // writes can interleave inside a multi-byte character (a strict decode would return nothing).
        let output = (try? Data(contentsOf: log)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        try? FileManager.default.removeItem(at: log)
        return (process.terminationStatus, output)
    }

    /// A fresh folder, removed after the test.
    func scratchDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swiftlet-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    /// A PEFT adapter's tensors by name.
    func adapterTensors(_ folder: URL) throws -> [String: [Float]] {
        let file = try SafetensorsFile(url: folder.appendingPathComponent(PEFTAdapter.weightsFile))
        return Dictionary(uniqueKeysWithValues: try file.names.map { ($0, try file.floats($0)) })
    }
}
