import ArgumentParser
import Foundation
import Swiftlet

@main
struct SwiftletCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftlet",
        abstract: "Fast, exact LoRA finetuning of Llama-family models.",
        subcommands: [Train.self, DPO.self, ORPO.self, Eval.self, Generate.self, Chat.self, Tokenize.self, Template.self, Export.self, Quantize.self, Bench.self, Doctor.self, Gradients.self])

    static func main() {
        setvbuf(stdout, nil, _IOLBF, 0)  // line by line, so printed lines and the progress display keep their order
        let given = Array(CommandLine.arguments.dropFirst())
        do {
            let arguments = try ConfigFile.expand(given)
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            if let i = given.firstIndex(of: "--config"), i + 1 < given.count, !(error is ExitCode) {
                FileHandle.standardError.write(Data("(flags were read from \(given[i + 1]) too; its keys are flag names)\n".utf8))
            }
            exitWithOneWrite(error)
        }
    }

    /// ArgumentParser's `exit(withError:)`, with the message written in one call: the workers of a
    /// data-parallel run share the launcher's terminal or log, and piecewise writes of two failing
    /// workers interleaved inside each other's lines (and inside multi-byte characters).
    static func exitWithOneWrite(_ error: Error) -> Never {
        let code = exitCode(for: error)
        let message = fullMessage(for: error)
        if !message.isEmpty {
            let handle = code == .success ? FileHandle.standardOutput : FileHandle.standardError
            handle.write(Data((message.hasSuffix("\n") ? message : message + "\n").utf8))
        }
        Foundation.exit(code.rawValue)
    }
}

extension Device: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}
extension GradientCheckpointing: ExpressibleByArgument {
    /// Also TRL's and Unsloth's spellings: `true`/`false` (YAML booleans) and `unsloth` (offload).
    public init?(argument: String) {
        switch argument.lowercased() {
        case "true": self = .on
        case "false": self = .off
        case "unsloth": self = .offload
        default: self.init(rawValue: argument)
        }
    }
}
extension LRScheduler: ExpressibleByArgument {}
extension TrainingArguments.OptimizerKind: ExpressibleByArgument {
    public init?(argument: String) { self.init(name: argument) }
}
