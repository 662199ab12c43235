import ArgumentParser
import Foundation
import Swiftlet

/// One forward and backward over a data file taken as a single batch, writing the loss and every
/// LoRA gradient (PEFT names) to a safetensors file: how Swiftlet is compared with PyTorch + PEFT.
struct Gradients: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the loss and the LoRA gradients of one batch to a safetensors file (for comparisons).")

    @Option(help: "Hugging Face model folder.") var model: String
    @Option(help: "PEFT adapter folder.") var adapter: String
    @Option(help: "JSONL of pre-tokenized rows, taken as one right-padded batch.") var data: String
    @Option(help: "Output .safetensors file.") var out: String
    @Flag(name: .customLong("load-in-4bit"), help: "Quantize the base to 4-bit NF4 while loading (a pre-quantized bitsandbytes checkpoint is 4-bit without it).")
    var loadIn4bit = false
    @Option(help: "cpu, cuda or auto.") var device: Device = .auto
    @Option(help: "GPU storage: auto (bf16 where supported, else fp16), bf16 or fp16.") var precision: Precision = .auto
    @Option(help: "off, on (recompute each layer from its input) or offload (inputs in host memory): the gradients must not change.")
    var gradientCheckpointing: GradientCheckpointing = .off

    func run() throws {
        let backend = try device.makeBackend(precision: precision) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        let model = try LlamaModel.load(directory: URL(fileURLWithPath: self.model), on: backend, loadIn4bit: loadIn4bit)
        try PEFTAdapter.load(directory: URL(fileURLWithPath: adapter), into: model)
        model.gradientCheckpointing = gradientCheckpointing
        let examples = try TokenizedDataset.load(URL(fileURLWithPath: data), vocabSize: model.config.vocabSize)
        let batch = Batch(examples: examples)
        let n = batch.targetCount
        let loss = try model.step(batch, gradScale: 1 / Float(max(n, 1))) / Double(max(n, 1))
        var entries: [SafetensorsWriter.Entry] = [.init(name: "loss", floats: [Float(loss)], shape: [1])]
        // PEFT's names and layout (a mixture's experts joined, as PEFT's 3-D parameters' gradients are)
        for var entry in PEFTAdapter.tensors(of: model, { ($0.gradA, $0.gradB) }) {
            entry.name = "grad." + entry.name
            entries.append(entry)
        }
        try SafetensorsWriter.write(entries, metadata: ["backend": backend.name, "targets": "\(n)"],
                                    to: URL(fileURLWithPath: out))
        print("loss \(loss) over \(n) targets on \(backend.name); gradients of \(model.adapters.count) modules written to \(out)")
    }
}
