import ArgumentParser
import Foundation
import Swiftlet

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge a LoRA adapter into its base model and write a Hugging Face model folder or a GGUF file.")

    enum Format: String, ExpressibleByArgument, CaseIterable { case merged, gguf }
    enum GGUFQuant: String, ExpressibleByArgument, CaseIterable { case f16, q8_0, q4_k_m }
    enum ExportDType: String, ExpressibleByArgument, CaseIterable {
        case bf16, f16, f32
        var dtype: DType { switch self { case .bf16: return .bf16; case .f16: return .f16; case .f32: return .f32 } }
    }

    @Option(help: "Hugging Face base model folder.") var model: String
    @Option(help: "PEFT adapter folder to merge.") var adapter: String
    @Option(help: "Output format: merged (a Hugging Face folder) or gguf (one llama.cpp file).") var format: Format = .merged
    @Option(help: "Output folder (merged) or file (gguf).") var out: String
    @Option(help: "Weight storage type of --format merged: bf16, f16 or f32.") var dtype: ExportDType = .bf16
    @Option(help: "2-D weight type of --format gguf: f16, q8_0, or q4_k_m (llama.cpp's Q4_K_M mix of Q4_K and Q6_K; rows must be multiples of 256 long).") var quant: GGUFQuant = .f16
    @Option(help: "Largest shard, e.g. 5GB, 500MB, 2GiB or a byte count (GB = 10^9, GiB = 2^30, as transformers).")
    var maxShardSize = "5GB"

    static func parseSize(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).uppercased()
        let units: [(String, Int)] = [("TIB", 1 << 40), ("GIB", 1 << 30), ("MIB", 1 << 20), ("KIB", 1 << 10),
                                      ("TB", 1_000_000_000_000), ("GB", 1_000_000_000), ("MB", 1_000_000),
                                      ("KB", 1_000), ("B", 1)]
        for (suffix, scale) in units where t.hasSuffix(suffix) {
            guard let n = Double(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), n > 0 else { return nil }
            return Int(n * Double(scale))
        }
        guard let n = Int(t), n > 0 else { return nil }
        return n
    }

    func validate() throws {
        if Self.parseSize(maxShardSize) == nil {
            throw ValidationError("--max-shard-size '\(maxShardSize)' is not a size (e.g. 5GB, 500MB, 2GiB, 1000000)")
        }
    }

    func run() throws {
        let modelURL = URL(fileURLWithPath: self.model)
        let outURL = URL(fileURLWithPath: out)
        if modelURL.standardizedFileURL == outURL.standardizedFileURL {
            throw ValidationError("--out must differ from --model (the base weights would be overwritten)")
        }
        let model = try LlamaModel.load(directory: modelURL, on: CPUBackend())
        let lora = try PEFTAdapter.load(directory: URL(fileURLWithPath: adapter), into: model)
        if format == .gguf {
            let q = GGUFExport.Quant(rawValue: quant.rawValue)!
            let name = modelURL.standardizedFileURL.lastPathComponent
            let summary = try GGUFExport.write(model: model, to: outURL, quant: q, name: name, tokenizerDirectory: modelURL)
            print("merged \(summary.mergedModules) LoRA modules (r=\(lora.r)) into \(summary.tensors) GGUF tensors, "
                + "\(quant.rawValue), \(summary.bytes) bytes -> \(out)"
                + (summary.hasTokenizer ? "" : " (no tokenizer.json in --model: the file has no vocabulary)"))
            return
        }
        let summary = try MergedExport.write(model: model, to: outURL, dtype: dtype.dtype,
                                             maxShardBytes: Self.parseSize(maxShardSize)!, sourceDirectory: modelURL)
        print("merged \(summary.mergedModules) LoRA modules (r=\(lora.r)) into \(summary.tensors) tensors, "
            + "\(dtype.rawValue), \(summary.totalSize) bytes in \(summary.files.count) file(s) -> \(out)")
    }
}
