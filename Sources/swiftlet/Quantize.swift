import ArgumentParser
import Foundation
import Swiftlet

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model in bitsandbytes' pre-quantized 4-bit NF4 layout (loads in transformers and Swiftlet).")

    @Option(help: "Hugging Face model folder (16-bit or f32 safetensors).") var model: String
    @Option(help: "Output folder.") var out: String
    @Flag(inversion: .prefixedNo, help: "Double quantization of the absmax (bnb_4bit_use_double_quant).") var doubleQuant = true
    @Option(help: "bnb_4bit_compute_dtype recorded in config.json.") var computeDtype = "bfloat16"

    func run() throws {
        let source = URL(fileURLWithPath: model), destination = URL(fileURLWithPath: out)
        if source.standardizedFileURL == destination.standardizedFileURL {
            throw ValidationError("--out must differ from --model")
        }
        let summary = try BnbNF4Export.write(from: source, to: destination, doubleQuant: doubleQuant, computeDType: computeDtype)
        print("quantized \(summary.quantized) linear weights to NF4\(doubleQuant ? " (double quant)" : ""); "
            + "\(summary.bytes) bytes of tensors -> \(out)")
    }
}
