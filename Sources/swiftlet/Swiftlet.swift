import ArgumentParser
import Swiftlet

@main
struct SwiftletCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftlet",
        abstract: "Fast, exact LoRA finetuning of Llama-family models.",
        subcommands: [Train.self, Eval.self, Tokenize.self, Template.self, Bench.self, Doctor.self, Gradients.self])
}

extension Device: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}
extension LRScheduler: ExpressibleByArgument {}
extension TrainingArguments.OptimizerKind: ExpressibleByArgument {}
