import Foundation

/// config.json's `quantization_config` for bitsandbytes (what transformers writes for a model
/// loaded with `BitsAndBytesConfig`). Swiftlet reads 4-bit NF4, with or without double
/// quantization; anything else is an error naming the field.
public struct BnbQuantizationConfig: Sendable, Equatable {
    /// `bnb_4bit_use_double_quant`
    public var doubleQuant: Bool
    /// `bnb_4bit_compute_dtype` as transformers spells it ("bfloat16", "float16", "float32").
    public var computeDType: String?

    public init(doubleQuant: Bool, computeDType: String? = nil) {
        self.doubleQuant = doubleQuant
        self.computeDType = computeDType
    }

    public enum ConfigError: Error, CustomStringConvertible {
        case unsupported(path: String, field: String, value: String, reason: String)
        public var description: String {
            switch self {
            case let .unsupported(path, field, value, reason):
                return "\(path): quantization_config.\(field) = \(value): \(reason)"
            }
        }
    }

    /// nil when config.json has no `quantization_config` (a 16-bit model).
    public static func load(_ configURL: URL) throws -> BnbQuantizationConfig? {
        let data = try Data(contentsOf: configURL)
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let q = root["quantization_config"] as? [String: Any] else { return nil }
        return try parse(q, path: configURL.path)
    }

    public static func parse(_ q: [String: Any], path: String) throws -> BnbQuantizationConfig {
        func fail(_ field: String, _ reason: String) -> ConfigError {
            .unsupported(path: path, field: field, value: q[field].map { "\($0)" } ?? "(missing)", reason: reason)
        }
        guard (q["quant_method"] as? String) == "bitsandbytes" else {
            throw fail("quant_method", "only bitsandbytes checkpoints are supported")
        }
        if (q["load_in_8bit"] as? Bool) == true {
            throw fail("load_in_8bit", "8-bit (LLM.int8) checkpoints are not supported; Swiftlet loads 4-bit NF4")
        }
        guard (q["load_in_4bit"] as? Bool) == true else {
            throw fail("load_in_4bit", "expected true (a 4-bit bitsandbytes checkpoint)")
        }
        guard (q["bnb_4bit_quant_type"] as? String ?? "fp4") == "nf4" else {
            throw fail("bnb_4bit_quant_type", "only nf4 is supported (fp4 is not)")
        }
        if let storage = q["bnb_4bit_quant_storage"] as? String, storage != "uint8" {
            throw fail("bnb_4bit_quant_storage", "only uint8 storage is supported")
        }
        return BnbQuantizationConfig(doubleQuant: q["bnb_4bit_use_double_quant"] as? Bool ?? false,
                                     computeDType: q["bnb_4bit_compute_dtype"] as? String)
    }

    /// What transformers writes for it (Swiftlet's `quantize`).
    public var json: [String: Any] {
        [
            "quant_method": "bitsandbytes", "_load_in_4bit": true, "_load_in_8bit": false,
            "load_in_4bit": true, "load_in_8bit": false,
            "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": doubleQuant,
            "bnb_4bit_compute_dtype": computeDType ?? "bfloat16", "bnb_4bit_quant_storage": "uint8",
            "llm_int8_enable_fp32_cpu_offload": false, "llm_int8_has_fp16_weight": false,
            "llm_int8_skip_modules": NSNull(), "llm_int8_threshold": 6.0,
        ]
    }
}
