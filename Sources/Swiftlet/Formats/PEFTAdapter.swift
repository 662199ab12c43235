import Foundation

/// A PEFT LoRA adapter directory: `adapter_config.json` + `adapter_model.safetensors`, with
/// PEFT's tensor names (`base_model.model.<module>.lora_A.weight`). What Swiftlet writes,
/// Python's PEFT loads, and the other way round.
public enum PEFTAdapter {
    static let configFile = "adapter_config.json"
    static let weightsFile = "adapter_model.safetensors"

    /// Reads the LoRA settings of an adapter directory; settings we cannot honour are errors
    /// naming the field.
    public static func config(directory: URL) throws -> LoRAConfig {
        let url = directory.appendingPathComponent(configFile)
        guard let data = try? Data(contentsOf: url) else {
            throw ConfigError(file: url.path, field: nil, problem: "cannot be read")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ConfigError(file: url.path, field: nil, problem: "is not a JSON object")
        }
        func fail(_ field: String, _ problem: String) -> ConfigError {
            ConfigError(file: url.path, field: field, problem: problem)
        }
        let peftType = json["peft_type"] as? String ?? "LORA"
        guard peftType == "LORA" else { throw fail("peft_type", "'\(peftType)' is not supported (only LORA)") }
        guard let r = (json["r"] as? NSNumber)?.intValue, r > 0 else { throw fail("r", "must be a positive integer") }
        let alpha = (json["lora_alpha"] as? NSNumber)?.floatValue ?? 8
        let dropout = (json["lora_dropout"] as? NSNumber)?.floatValue ?? 0
        let rslora = json["use_rslora"] as? Bool ?? false
        if json["use_dora"] as? Bool == true { throw fail("use_dora", "DoRA is not supported") }
        if let bias = json["bias"] as? String, bias != "none" { throw fail("bias", "'\(bias)' is not supported (only none)") }
        if json["fan_in_fan_out"] as? Bool == true { throw fail("fan_in_fan_out", "true is not supported") }
        for field in ["rank_pattern", "alpha_pattern"] {
            if let pattern = json[field] as? [String: Any], !pattern.isEmpty {
                throw fail(field, "per-module ranks or alphas are not supported")
            }
        }
        for field in ["modules_to_save", "layers_to_transform"] {
            if let value = json[field], !(value is NSNull) {
                if let list = value as? [Any], list.isEmpty { continue }
                throw fail(field, "is not supported")
            }
        }
        let targets: Set<LoRAConfig.Target>
        if let list = json["target_modules"] as? [String] {
            targets = try LoRAConfig.targets(parsing: list.joined(separator: ","))
        } else if let single = json["target_modules"] as? String {
            do { targets = try LoRAConfig.targets(parsing: single) } catch {
                throw fail("target_modules", "'\(single)' (a regular expression) is not supported; list module names")
            }
        } else {
            throw fail("target_modules", "is missing")
        }
        return LoRAConfig(r: r, alpha: alpha, dropout: dropout, targets: targets, useRSLoRA: rslora)
    }

    /// Attaches the adapter in `directory` to `model`, checking every tensor is present, shaped
    /// right, and that the file holds nothing the model would ignore.
    @discardableResult
    public static func load(directory: URL, into model: LlamaModel) throws -> LoRAConfig {
        let config = try config(directory: directory)
        let file = try SafetensorsFile(url: directory.appendingPathComponent(weightsFile))
        var unused = Set(file.names)
        try model.attachLoRA(config) { module, inFeatures, outFeatures in
            func tensor(_ name: String, _ shape: Shape) throws -> Tensor {
                guard unused.remove(name) != nil else { throw ModelError.missingTensor(name: name, source: file.url.path) }
                let found = try file.info(name).shape
                guard found == shape else {
                    throw ModelError.shapeMismatch(name: name, source: file.url.path, expected: shape, found: found)
                }
                return try model.backend.upload(file.floats(name), shape, .f32)
            }
            let prefix = "base_model.model.\(module)"
            return try LoRAAdapter(module: module,
                                   a: tensor(prefix + ".lora_A.weight", [config.r, inFeatures]),
                                   b: tensor(prefix + ".lora_B.weight", [outFeatures, config.r]),
                                   scaling: config.scaling, dropout: config.dropout)
        }
        if let stray = unused.sorted().first {
            throw LoRAError.invalid("\(file.url.path): tensor '\(stray)' matches no LoRA module of the model "
                + "(target_modules or layer count differ)")
        }
        return config
    }

    /// Writes the model's adapters as a PEFT adapter directory (atomically, file by file).
    public static func save(_ model: LlamaModel, config: LoRAConfig, to directory: URL,
                            baseModel: String? = nil) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var entries: [SafetensorsWriter.Entry] = []
        for adapter in model.adapters {
            entries.append(.init(name: adapter.peftNameA, floats: model.backend.download(adapter.a), shape: adapter.a.shape, dtype: .f32))
            entries.append(.init(name: adapter.peftNameB, floats: model.backend.download(adapter.b), shape: adapter.b.shape, dtype: .f32))
        }
        try SafetensorsWriter.write(entries, metadata: ["format": "pt"], to: directory.appendingPathComponent(weightsFile))

        let json: [String: Any] = [
            "peft_type": "LORA", "task_type": "CAUSAL_LM",
            "base_model_name_or_path": baseModel.map { $0 as Any } ?? NSNull(),
            "r": config.r, "lora_alpha": config.alpha == config.alpha.rounded() ? Int(config.alpha) as Any : Double(config.alpha), "lora_dropout": Double(config.dropout),
            // The modules the model's adapters are on ("all" resolved to the family's linears).
            "target_modules": (model.loraConfig?.targets ?? config.targets).sorted().map(\.rawValue),
            "use_rslora": config.useRSLoRA, "use_dora": false, "bias": "none",
            "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true,
            "modules_to_save": NSNull(), "layers_to_transform": NSNull(), "layers_pattern": NSNull(),
            "rank_pattern": [String: Any](), "alpha_pattern": [String: Any](), "revision": NSNull(),
        ]
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(data, to: directory.appendingPathComponent(configFile))
    }
}

/// Writes files so that a reader sees either the old file or the whole new one: a temporary
/// file in the same folder, flushed, then renamed over the target.
public enum AtomicFile {
    public static func write(_ data: Data, to url: URL) throws {
        let temporary = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        do {
            try data.write(to: temporary)
            guard rename(temporary.path, url.path) == 0 else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path])
            }
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw error
        }
    }
}
