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
        // PEFT's one per-module pattern we honour: a mixture's fused expert gate_up with rank 2r and
        // alpha 2α, which PEFT writes when gate_proj + up_proj (w1 + w3) are targeted.
        let gateUpPattern = #".*\.gate_up_proj"#
        let expected: [String: Double] = ["rank_pattern": Double(r), "alpha_pattern": Double(alpha)]
        for field in ["rank_pattern", "alpha_pattern"] {
            guard let pattern = json[field] as? [String: Any], !pattern.isEmpty else { continue }
            let doubled = pattern.count == 1 && (pattern[gateUpPattern] as? NSNumber)?.doubleValue == 2 * expected[field]!
            if !doubled {
                throw fail(field, "per-module ranks or alphas are not supported (only PEFT's doubled rank and alpha "
                           + "of a mixture's gate_up_proj)")
            }
        }
        for field in ["modules_to_save", "layers_to_transform"] {
            if let value = json[field], !(value is NSNull) {
                if let list = value as? [Any], list.isEmpty { continue }
                throw fail(field, "is not supported")
            }
        }
        var targets = Set<LoRAConfig.Target>()
        let parameters = json["target_parameters"] as? [String] ?? []
        if let list = json["target_modules"] as? [String] {
            if !list.isEmpty { targets = try LoRAConfig.targets(parsing: list.joined(separator: ",")) }
        } else if let single = json["target_modules"] as? String {
            do { targets = try LoRAConfig.targets(parsing: single) } catch {
                throw fail("target_modules", "'\(single)' (a regular expression) is not supported; list module names")
            }
        } else if parameters.isEmpty {
            throw fail("target_modules", "is missing")
        }
        // transformers 5's 3-D expert tensors and the router, as PEFT names them in target_parameters.
        for name in parameters {
            var key = name
            for prefix in ["mlp.", "experts."] where key.hasPrefix(prefix) { key.removeFirst(prefix.count) }
            switch key {
            case "gate_up_proj":
                guard (json["rank_pattern"] as? [String: Any])?[gateUpPattern] != nil else {
                    throw fail("target_parameters", "gate_up_proj without PEFT's doubled rank (rank_pattern \(gateUpPattern): "
                               + "\(2 * r)) is not supported")
                }
                targets.formUnion([.gate, .up])
            case "down_proj": targets.insert(.down)
            case "gate.weight": targets.insert(.router)
            default: throw fail("target_parameters", "'\(name)' is not supported (experts.gate_up_proj, experts.down_proj, gate.weight)")
            }
        }
        guard !targets.isEmpty else { throw fail("target_modules", "names no module") }
        return LoRAConfig(r: r, alpha: alpha, dropout: dropout, targets: targets, useRSLoRA: rslora)
    }

    /// Attaches the adapter in `directory` to `model`, checking every tensor is present, shaped
    /// right, and that the file holds nothing the model would ignore.
    @discardableResult
    public static func load(directory: URL, into model: LlamaModel) throws -> LoRAConfig {
        let config = try config(directory: directory)
        var reader = PairReader(try SafetensorsFile(url: directory.appendingPathComponent(weightsFile)))
        try model.attachLoRA(config) { site in
            let (r, inF, outF) = (site.rank, site.inFeatures, site.outFeatures)
            let (a, b) = try reader.pair(module: site.module, rank: r, inFeatures: inF, outFeatures: outF, expert: site.expert)
            return try LoRAAdapter(module: site.module, a: model.backend.upload(a, [r, inF], .f32),
                                   b: model.backend.upload(b, [outF, r], .f32),
                                   scaling: site.scaling, dropout: config.dropout, expert: site.expert)
        }
        if let stray = reader.unused.sorted().first {
            throw LoRAError.invalid("\(reader.file.url.path): tensor '\(stray)' matches no LoRA module of the model "
                + "(target_modules or layer count differ)")
        }
        return config
    }

    /// The model's adapters' tensors under their PEFT names, f32: `pick` chooses each adapter's pair
    /// shaped as A and B (the weights, or their gradients). A mixture's experts share one pair per
    /// module, every expert's joined in PEFT's layout (`ExpertLoRALayout`).
    public static func tensors(of model: LlamaModel, _ pick: (LoRAAdapter) -> (a: Tensor, b: Tensor)) -> [SafetensorsWriter.Entry] {
        var entries: [SafetensorsWriter.Entry] = []
        var experts: [String: [LoRAAdapter]] = [:], expertOrder: [String] = []
        for adapter in model.adapters {
            guard adapter.expert == nil else {
                if experts[adapter.module] == nil { expertOrder.append(adapter.module) }
                experts[adapter.module, default: []].append(adapter)
                continue
            }
            let (a, b) = pick(adapter)
            entries.append(.init(name: adapter.peftNameA, floats: model.backend.download(a), shape: a.shape, dtype: .f32))
            entries.append(.init(name: adapter.peftNameB, floats: model.backend.download(b), shape: b.shape, dtype: .f32))
        }
        for module in expertOrder {
            let parts = experts[module]!.sorted { $0.expert!.index < $1.expert!.index }
            let (a, b) = ExpertLoRALayout.join(parts.map { let (a, b) = pick($0); return (model.backend.download(a), model.backend.download(b)) },
                                               rank: parts[0].rank, outFeatures: parts[0].outFeatures)
            entries.append(.init(name: parts[0].peftNameA, floats: a, shape: [parts[0].rank * parts.count, parts[0].inFeatures], dtype: .f32))
            entries.append(.init(name: parts[0].peftNameB, floats: b, shape: [parts[0].outFeatures, parts[0].rank * parts.count], dtype: .f32))
        }
        return entries
    }

    /// Writes the model's adapters as a PEFT adapter directory (atomically, file by file).
    public static func save(_ model: LlamaModel, config: LoRAConfig, to directory: URL,
                            baseModel: String? = nil) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try SafetensorsWriter.write(tensors(of: model) { ($0.a, $0.b) }, metadata: ["format": "pt"],
                                    to: directory.appendingPathComponent(weightsFile))

        func number(_ x: Float) -> Any { x == x.rounded() ? Int(x) as Any : Double(x) }
        // The modules the model's adapters are on ("all" resolved to the family's linears). A
        // mixture's experts and router are PEFT's target_parameters, with gate_up's doubled rank.
        let targets = model.loraConfig?.targets ?? config.targets
        var moduleTargets = targets, parameterTargets: [String] = []
        var rankPattern: [String: Any] = [:], alphaPattern: [String: Any] = [:]
        if model.config.moe != nil {
            moduleTargets.subtract([.gate, .up, .down, .router])
            if targets.contains(.down) { parameterTargets.append("down_proj") }
            if targets.contains(.gate) {
                parameterTargets.append("gate_up_proj")
                rankPattern[#".*\.gate_up_proj"#] = 2 * config.r
                alphaPattern[#".*\.gate_up_proj"#] = number(2 * config.alpha)
            }
            if targets.contains(.router) { parameterTargets.append("gate.weight") }
        }
        var json: [String: Any] = [
            "peft_type": "LORA", "task_type": "CAUSAL_LM",
            "base_model_name_or_path": baseModel.map { $0 as Any } ?? NSNull(),
            "r": config.r, "lora_alpha": number(config.alpha), "lora_dropout": Double(config.dropout),
            "target_modules": moduleTargets.sorted().map(\.rawValue),
            "use_rslora": config.useRSLoRA, "use_dora": false, "bias": "none",
            "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true,
            "modules_to_save": NSNull(), "layers_to_transform": NSNull(), "layers_pattern": NSNull(),
            "rank_pattern": rankPattern, "alpha_pattern": alphaPattern, "revision": NSNull(),
        ]
        if !parameterTargets.isEmpty { json["target_parameters"] = parameterTargets }
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(data, to: directory.appendingPathComponent(configFile))
    }
}

extension PEFTAdapter {
    /// One adapter's A [r, in] and B [out, r] at a time from a PEFT weights file, by their PEFT names,
    /// each checked present and shaped right; an expert's out of its module's joined pair, read once for
    /// all the experts (`ExpertLoRALayout`). `unused`: the names no pair has read yet.
    struct PairReader {
        let file: SafetensorsFile
        private(set) var unused: Set<String>
        private var joined: [String: [Float]] = [:]

        init(_ file: SafetensorsFile) {
            self.file = file
            unused = Set(file.names)
        }

        mutating func pair(module: String, rank r: Int, inFeatures: Int, outFeatures: Int,
                           expert: (index: Int, count: Int)?) throws -> (a: [Float], b: [Float]) {
            let nameA = "base_model.model.\(module).lora_A.weight", nameB = "base_model.model.\(module).lora_B.weight"
            guard let (e, count) = expert else {
                return (try values(nameA, [r, inFeatures]), try values(nameB, [outFeatures, r]))
            }
            let a = try values(nameA, [r * count, inFeatures]), b = try values(nameB, [outFeatures, r * count])
            (joined[nameA], joined[nameB]) = (a, b)
            let (expertA, expertB) = ExpertLoRALayout.split(a: a, b: b, expert: e, experts: count, rank: r, outFeatures: outFeatures)
            return (expertA, expertB)
        }

        private mutating func values(_ name: String, _ shape: Shape) throws -> [Float] {
            if let cached = joined[name] { return cached }
            guard unused.remove(name) != nil else { throw ModelError.missingTensor(name: name, source: file.url.path) }
            let found = try file.info(name).shape
            guard found == shape else { throw ModelError.shapeMismatch(name: name, source: file.url.path, expected: shape, found: found) }
            return try file.floats(name)
        }
    }
}

/// PEFT's layout of one LoRA pair over a 3-D expert parameter [E, out, in] (its ParamWrapper):
/// A [r·E, in] holds expert e's A in rows e·r ..< (e+1)·r; B [out, r·E] holds expert e's B[o, j] in
/// column j·E + e (`lora_B.weight.reshape(out, r, E)`).
enum ExpertLoRALayout {
    /// Expert e's A [r, in] and B [out, r] out of the whole pair.
    static func split(a: [Float], b: [Float], expert e: Int, experts: Int, rank r: Int, outFeatures: Int) -> ([Float], [Float]) {
        let inF = a.count / (r * experts)
        let expertA = Array(a[(e * r * inF)..<((e + 1) * r * inF)])
        var expertB = [Float](repeating: 0, count: outFeatures * r)
        for o in 0..<outFeatures {
            for j in 0..<r { expertB[o * r + j] = b[o * r * experts + j * experts + e] }
        }
        return (expertA, expertB)
    }

    /// The whole pair from every expert's (A, B), in expert order.
    static func join(_ parts: [([Float], [Float])], rank r: Int, outFeatures: Int) -> (a: [Float], b: [Float]) {
        let experts = parts.count
        var b = [Float](repeating: 0, count: outFeatures * r * experts)
        for (e, part) in parts.enumerated() {
            for o in 0..<outFeatures {
                for j in 0..<r { b[o * r * experts + j * experts + e] = part.1[o * r + j] }
            }
        }
        return (parts.flatMap(\.0), b)
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
