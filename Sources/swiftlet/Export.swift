import ArgumentParser
import Foundation
import Swiftlet

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge a LoRA adapter into its base model and write a Hugging Face model folder.")

    enum Format: String, ExpressibleByArgument, CaseIterable { case merged, gguf }
    enum ExportDType: String, ExpressibleByArgument, CaseIterable {
        case bf16, f16, f32
        var dtype: DType { switch self { case .bf16: return .bf16; case .f16: return .f16; case .f32: return .f32 } }
    }

    @Option(help: "Hugging Face base model folder.") var model: String
    @Option(help: "PEFT adapter folder to merge.") var adapter: String
    @Option(help: "Output format: merged (a Hugging Face folder). gguf is not built yet.") var format: Format = .merged
    @Option(help: "Output folder.") var out: String
    @Option(help: "Weight storage type: bf16, f16 or f32.") var dtype: ExportDType = .bf16
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
        if format != .merged {
            throw ValidationError("--format \(format.rawValue): GGUF export is not built yet; use --format merged")
        }
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
        let summary = try MergedExport.write(model: model, to: outURL, dtype: dtype.dtype,
                                             maxShardBytes: Self.parseSize(maxShardSize)!, sourceDirectory: modelURL)
        print("merged \(summary.mergedModules) LoRA modules (r=\(lora.r)) into \(summary.tensors) tensors, "
            + "\(dtype.rawValue), \(summary.totalSize) bytes in \(summary.files.count) file(s) -> \(out)")
    }
}
