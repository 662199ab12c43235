import Foundation

/// Writes a model with its LoRA adapters folded in — W' = W + scaling · B·A, computed in Float32 on
/// the host as PEFT's `merge_and_unload` does — as a Hugging Face model folder in 16-bit (or f32)
/// storage: `model.safetensors`, or `model-0000i-of-0000N.safetensors` shards plus
/// `model.safetensors.index.json`, then config.json, generation_config.json and the tokenizer
/// files of the source folder. transformers loads it with no PEFT involved.
public enum MergedExport {
    /// What `write` produced.
    public struct Summary: Sendable {
        /// Weight files written, in order.
        public var files: [String]
        /// Bytes of tensor data (the index's `total_size`).
        public var totalSize: Int
        /// Linear layers that had an adapter merged into them.
        public var mergedModules: Int
        public var tensors: Int
    }

    public enum ExportError: Error, CustomStringConvertible {
        case unsupportedDType(DType)
        case invalidShardSize(Int)
        public var description: String {
            switch self {
            case let .unsupportedDType(d): return "cannot export weights as \(d) (use bf16, f16 or f32)"
            case let .invalidShardSize(n): return "maximum shard size must be positive, not \(n)"
            }
        }
    }

    /// Tokenizer files copied from the source folder when present.
    public static let tokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "tokenizer.model", "chat_template.jinja"]

    /// transformers' name for a dtype in config.json.
    public static func torchName(_ dtype: DType) -> String {
        switch dtype {
        case .bf16: return "bfloat16"
        case .f16: return "float16"
        default: return "float32"
        }
    }

    /// The merged host floats of one base weight: adapters folded into the linears that carry
    /// one, every other weight as downloaded. An NF4 base is dequantized first (to the compute
    /// type, the weight the adapter was trained against), as PEFT merges into a 4-bit model.
    public static func mergedWeight(_ weight: FrozenWeight, adapter: LoRAAdapter?) throws -> [Float] {
        var w = try weight.floats()
        guard let adapter else { return w }
        // delta = (B·A) · scaling in f32, then W + delta: PEFT's get_delta_weight + merge.
        let cpu = CPUBackend()
        let a = try cpu.upload(adapter.a.backend.download(adapter.a), adapter.a.shape, .f32)
        let b = try cpu.upload(adapter.b.backend.download(adapter.b), adapter.b.shape, .f32)
        let delta = try cpu.zeros([adapter.outFeatures, adapter.inFeatures], .f32)
        cpu.matmul(b, transposeA: false, a, transposeB: false, into: delta, alpha: 1, beta: 0)
        let d = cpu.download(delta)
        precondition(d.count == w.count, "LoRA delta of \(adapter.module) does not match its weight")
        let s = adapter.scaling
        w.withUnsafeMutableBufferPointer { wp in
            d.withUnsafeBufferPointer { dp in
                for i in 0..<wp.count { wp[i] += dp[i] * s }
            }
        }
        return w
    }

    /// Which adapter belongs to each exported weight: by module for the plain linears, by checkpoint
    /// name for a mixture's router and experts (whose names differ from the adapters' modules; gate
    /// and up are the two row halves of one fused gate_up, merged whole and then cut).
    struct AdapterLookup {
        var byWeightName: [String: LoRAAdapter] = [:]
        var expertParts: [String: (weight: FrozenWeight, adapter: LoRAAdapter?, rows: Range<Int>?)]

        init(_ model: LlamaModel) {
            for adapter in model.adapters where adapter.expert == nil { byWeightName[adapter.module + ".weight"] = adapter }
            expertParts = model.expertLinearParts
        }

        /// `name`'s weight with its adapter folded in, and whether there was one.
        func merged(_ name: String, _ weight: FrozenWeight) throws -> (floats: [Float], adapted: Bool) {
            guard let part = expertParts[name] else {
                let adapter = byWeightName[name]
                return (try mergedWeight(weight, adapter: adapter), adapter != nil)
            }
            var floats = try mergedWeight(part.weight, adapter: part.adapter)
            if let rows = part.rows {
                let columns = part.weight.shape[1]
                floats = Array(floats[(rows.lowerBound * columns)..<(rows.upperBound * columns)])
            }
            return (floats, part.adapter != nil)
        }
    }

    /// Splits tensors of `sizes` bytes, in order, into shards of at most `maxBytes` (a single
    /// tensor larger than that gets a shard of its own), as transformers' `save_pretrained` does.
    public static func planShards(sizes: [Int], maxBytes: Int) -> [[Int]] {
        var shards: [[Int]] = []
        var current: [Int] = []
        var currentBytes = 0
        for (i, size) in sizes.enumerated() {
            if !current.isEmpty && currentBytes + size > maxBytes {
                shards.append(current)
                current = []
                currentBytes = 0
            }
            current.append(i)
            currentBytes += size
        }
        if !current.isEmpty { shards.append(current) }
        return shards
    }

    public static func shardName(_ index: Int, of count: Int) -> String {
        func pad(_ n: Int) -> String { let s = String(n); return String(repeating: "0", count: max(0, 5 - s.count)) + s }
        return "model-\(pad(index + 1))-of-\(pad(count)).safetensors"
    }

    /// Writes the merged model to `directory` (created if needed). Each file is written
    /// atomically; weight files of an earlier export that this one does not use are removed,
    /// so the folder never mixes two exports' shards.
    @discardableResult
    public static func write(model: LlamaModel, to directory: URL, dtype: DType = .bf16,
                             maxShardBytes: Int = 5 << 30, sourceDirectory: URL?) throws -> Summary {
        guard [.bf16, .f16, .f32].contains(dtype) else { throw ExportError.unsupportedDType(dtype) }
        guard maxShardBytes > 0 else { throw ExportError.invalidShardSize(maxShardBytes) }
        let fm = FileManager.default
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)

        let weights = model.namedWeights
        let adapters = AdapterLookup(model)
        let sizes = weights.map { $0.weight.shape.count * dtype.size }
        let shards = planShards(sizes: sizes, maxBytes: maxShardBytes)
        let fileNames = shards.count == 1 ? [Checkpoint.singleFileName]
            : shards.indices.map { shardName($0, of: shards.count) }

        var weightMap: [String: String] = [:]
        var merged = 0
        for (s, shard) in shards.enumerated() {
            var entries: [SafetensorsWriter.Entry] = []
            for i in shard {
                let (name, weight) = weights[i]
                let (floats, adapted) = try adapters.merged(name, weight)
                if adapted { merged += 1 }
                entries.append(.init(name: name, floats: floats, shape: weight.shape, dtype: dtype))
                weightMap[name] = fileNames[s]
            }
            try SafetensorsWriter.write(entries, metadata: ["format": "pt"], to: directory.appendingPathComponent(fileNames[s]))
        }
        let totalSize = sizes.reduce(0, +)
        if shards.count > 1 {
            let index: [String: Any] = ["metadata": ["total_size": totalSize], "weight_map": weightMap]
            try writeJSON(index, to: directory.appendingPathComponent(Checkpoint.indexFileName))
        }
        // Drop weight files of an earlier export (a stale model.safetensors would shadow the index).
        let keep = Set(fileNames + (shards.count > 1 ? [Checkpoint.indexFileName] : []))
        for name in (try? fm.contentsOfDirectory(atPath: directory.path)) ?? [] where !keep.contains(name) {
            let isShard = name.hasPrefix("model-") && name.hasSuffix(".safetensors") && name.contains("-of-")
            if isShard || name == Checkpoint.singleFileName || name == Checkpoint.indexFileName {
                try fm.removeItem(at: directory.appendingPathComponent(name))
            }
        }

        var config = HFConfig.json(model.config)
        config["torch_dtype"] = torchName(dtype)
        config["dtype"] = torchName(dtype)
        try AtomicFile.write(try HFConfig.serialized(config) + Data("\n".utf8), to: directory.appendingPathComponent("config.json"))

        let sourceGeneration = sourceDirectory?.appendingPathComponent("generation_config.json")
        if let sourceGeneration, let data = try? Data(contentsOf: sourceGeneration) {
            try AtomicFile.write(data, to: directory.appendingPathComponent("generation_config.json"))
        } else {
            var generation: [String: Any] = [:]
            if let b = model.config.bosTokenId { generation["bos_token_id"] = b }
            if let e = model.config.eosTokenId { generation["eos_token_id"] = e }
            try writeJSON(generation, to: directory.appendingPathComponent("generation_config.json"))
        }
        if let sourceDirectory, sourceDirectory.standardizedFileURL != directory.standardizedFileURL {
            for name in tokenizerFiles {
                if let data = try? Data(contentsOf: sourceDirectory.appendingPathComponent(name)) {
                    try AtomicFile.write(data, to: directory.appendingPathComponent(name))
                }
            }
        }
        return Summary(files: fileNames, totalSize: totalSize, mergedModules: merged, tensors: weights.count)
    }

    static func writeJSON(_ object: [String: Any], to url: URL) throws {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(data + Data("\n".utf8), to: url)
    }
}
