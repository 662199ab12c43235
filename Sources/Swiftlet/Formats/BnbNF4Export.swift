import Foundation

/// Writes a Hugging Face model folder in bitsandbytes' pre-quantized 4-bit layout (what
/// transformers' `save_pretrained` writes for a `load_in_4bit` model): q k v o gate up down of
/// every layer as NF4 (see `BnbNF4Layout`), every other tensor copied as stored, config.json with
/// `quantization_config`, plus generation_config.json and the tokenizer files. Reads and
/// quantizes one tensor at a time from the source checkpoint.
public enum BnbNF4Export {
    public struct Summary: Sendable {
        public var quantized: Int
        public var copied: Int
        public var bytes: Int
    }

    /// The linear weights transformers quantizes in a Llama (every nn.Linear but lm_head), and every
    /// expert's (Mixtral's w1 w2 w3, Qwen3-MoE's per-expert projections, as transformers 4 stored and
    /// quantized them); a mixture's router stays 16-bit, as `--load-in-4bit` leaves it.
    public static func isQuantizable(_ name: String) -> Bool {
        guard name.hasPrefix("model.layers."), name.hasSuffix(".weight"), !LlamaModel.isRouter(name) else { return false }
        return LoRAConfig.Target.allCases.contains { name.hasSuffix(".\($0.rawValue).weight") }
            || LoRAConfig.Target.mixtralAliases.keys.contains { name.hasSuffix(".\($0).weight") && name.contains(".experts.") }
    }

    /// bitsandbytes' tensors for one quantized weight `name`; `dtype` is the source's dtype
    /// (recorded in the quant state as the dtype to dequantize to).
    public static func entries(_ name: String, _ q: NF4Tensor, dtype: DType) throws -> [SafetensorsWriter.Entry] {
        var state: [String: Any] = ["quant_type": "nf4", "blocksize": q.blockSize,
                                    "dtype": MergedExport.torchName(dtype), "shape": q.shape.dims]
        var out: [SafetensorsWriter.Entry] = [
            .init(name: name, dtype: .u8, shape: [q.packed.count, 1], bytes: q.packed),
            .init(name: name + ".quant_map", floats: NF4.codebook, shape: [16]),
        ]
        switch q.absmax {
        case let .plain(values):
            out.append(.init(name: name + ".absmax", floats: values, shape: [values.count]))
        case let .nested(n):
            out.append(.init(name: name + ".absmax", dtype: .u8, shape: [n.codes.count], bytes: n.codes))
            out.append(.init(name: name + ".nested_absmax", floats: n.scales, shape: [n.scales.count]))
            out.append(.init(name: name + ".nested_quant_map", floats: DynamicMap.signed, shape: [256]))
            state["nested_blocksize"] = n.blockSize
            state["nested_dtype"] = "float32"
            state["nested_offset"] = Double(n.offset)
        }
        let json = Array(try JSONSerialization.data(withJSONObject: state, options: [.sortedKeys]))
        out.append(.init(name: name + BnbNF4Layout.stateSuffix, dtype: .u8, shape: [json.count], bytes: json))
        return out
    }

    @discardableResult
    public static func write(from source: URL, to directory: URL, doubleQuant: Bool = true,
                             computeDType: String = "bfloat16") throws -> Summary {
        let fm = FileManager.default
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        let checkpoint = try Checkpoint(directory: source)
        var entries: [SafetensorsWriter.Entry] = []
        var quantized = 0, copied = 0
        for name in checkpoint.names {
            let info = try checkpoint.info(name)
            if isQuantizable(name) && !BnbNF4Layout.isQuantized(name, in: checkpoint) {
                guard info.dtype.isFloatingPoint else {
                    throw BnbNF4Layout.LayoutError.invalid(tensor: name, path: source.path, reason: "\(info.dtype) is not a float weight")
                }
                let q = NF4.quantize(try checkpoint.floats(name), shape: info.shape, doubleQuant: doubleQuant)
                entries += try Self.entries(name, q, dtype: info.dtype)
                quantized += 1
            } else {
                entries.append(.init(name: name, dtype: info.dtype, shape: info.shape, bytes: Array(try checkpoint.rawBytes(name))))
                copied += 1
            }
        }
        let bytes = entries.reduce(0) { $0 + $1.bytes.count }
        try SafetensorsWriter.write(entries, metadata: ["format": "pt"], to: directory.appendingPathComponent(Checkpoint.singleFileName))

        let configData = try Data(contentsOf: source.appendingPathComponent("config.json"))
        guard var config = try JSONSerialization.jsonObject(with: configData) as? [String: Any] else {
            throw BnbQuantizationConfig.ConfigError.unsupported(path: source.appendingPathComponent("config.json").path,
                                                                field: "(root)", value: "", reason: "not a JSON object")
        }
        config["quantization_config"] = BnbQuantizationConfig(doubleQuant: doubleQuant, computeDType: computeDType).json
        // JSONSerialization writes 6.0 as 6, and transformers' BitsAndBytesConfig rejects an integer
        // llm_int8_threshold (as Gemma2Config does integer softcaps): `serialized` spells those as floats.
        try AtomicFile.write(try HFConfig.serialized(config) + Data("\n".utf8), to: directory.appendingPathComponent("config.json"))
        for file in MergedExport.tokenizerFiles + ["generation_config.json"] {
            if let data = try? Data(contentsOf: source.appendingPathComponent(file)) {
                try AtomicFile.write(data, to: directory.appendingPathComponent(file))
            }
        }
        return Summary(quantized: quantized, copied: copied, bytes: bytes)
    }
}
