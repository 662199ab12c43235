import Foundation

/// Training checkpoints in the HF Trainer's layout: `output/checkpoint-N/` holding the PEFT adapter
/// (`adapter_config.json`, `adapter_model.safetensors`), `optimizer.safetensors` (AdamW's `exp_avg`
/// and `exp_avg_sq` per LoRA tensor, f32, named `<PEFT name>.exp_avg[_sq]`, or for one expert of a
/// mixture, whose PEFT tensors hold every expert's, `<PEFT name>.expert<e>.exp_avg[_sq]`; for AdamW8bit the 8-bit
/// tensors' `.state1`/`.state2` (u8 codes) and `.absmax1`/`.absmax2` (f32), the small tensors'
/// `.exp_avg[_sq]`; metadata `optimizer` names which; absent for SGD) and
/// `trainer_state.json` (global step, epoch, log history, data position, loss scaler, the arguments
/// that must match on resume). A checkpoint is written into `output/.checkpoint-N.tmp-<pid>/`, every
/// file fsynced, then the folder is renamed to `checkpoint-N`, so a checkpoint is whole or absent.
public enum TrainingCheckpoint {
    public static let stateFile = "trainer_state.json"
    public static let optimizerFile = "optimizer.safetensors"
    public static let adapterFiles = [PEFTAdapter.configFile, PEFTAdapter.weightsFile]

    /// The `checkpoint-N` folders of `output`, oldest (lowest N) first; temporary folders are not listed.
    public static func list(in output: URL) -> [(step: Int, url: URL)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: output.path)) ?? []
        return names.compactMap { name -> (Int, URL)? in
            guard name.hasPrefix("checkpoint-"), let step = Int(name.dropFirst("checkpoint-".count)), step >= 0,
                  name == "checkpoint-\(step)" else { return nil }
            var isDirectory: ObjCBool = false
            let url = output.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue
            else { return nil }
            return (step, url)
        }.sorted { $0.0 < $1.0 }.map { (step: $0.0, url: $0.1) }
    }

    /// The newest checkpoint (highest step) in `output`, as HF's `get_last_checkpoint`.
    public static func latest(in output: URL) -> URL? { list(in: output).last?.url }

    /// Removes half-written `.checkpoint-*.tmp-*` (and `.old-*`) folders left by an interrupted save.
    public static func removeTemporaries(in output: URL) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: output.path)) ?? []
        for name in names where name.hasPrefix(".checkpoint-") && (name.contains(".tmp-") || name.contains(".old-")) {
            try? FileManager.default.removeItem(at: output.appendingPathComponent(name))
        }
    }

    /// Deletes the oldest checkpoints so that at most `limit` remain (0 keeps all).
    public static func prune(in output: URL, keep limit: Int) {
        guard limit > 0 else { return }
        for old in list(in: output).dropLast(limit) { try? FileManager.default.removeItem(at: old.url) }
    }

    static func fsync(path: String, directory: Bool = false) throws {
        let fd = open(path, directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY)
        guard fd >= 0 else { throw CheckpointError.io(path: path, problem: String(cString: strerror(errno))) }
        defer { close(fd) }
        if Foundation.fsync(fd) != 0 && !directory {
            throw CheckpointError.io(path: path, problem: "fsync: " + String(cString: strerror(errno)))
        }
    }
}

public enum CheckpointError: Error, CustomStringConvertible, Equatable {
    case noCheckpoint(directory: String)
    case missingFile(checkpoint: String, file: String)
    case mismatch(checkpoint: String, what: String)
    case invalid(checkpoint: String, problem: String)
    case io(path: String, problem: String)

    public var description: String {
        switch self {
        case let .noCheckpoint(directory): return "no checkpoint-N folder in \(directory) to resume from"
        case let .missingFile(checkpoint, file): return "checkpoint \(checkpoint) is incomplete: \(file) is missing"
        case let .mismatch(checkpoint, what): return "cannot resume from \(checkpoint): \(what)"
        case let .invalid(checkpoint, problem): return "checkpoint \(checkpoint): \(problem)"
        case let .io(path, problem): return "\(path): \(problem)"
        }
    }
}

/// `trainer_state.json`: HF's keys where they exist (global_step, epoch, max_steps, save_steps,
/// log_history), plus what an exact resume needs.
struct TrainerState: Codable {
    struct DataPosition: Codable {
        /// Whole epochs done, the next row of this epoch's order, and that order (row indices).
        var epochIndex: Int
        var cursor: Int
        var order: [Int]
        var rowCount: Int
        /// FNV-1a over every row's tokens, labels and masks: resuming on other data is an error.
        var fingerprint: String
    }
    struct Scaler: Codable {
        var scale: Float
        var growthFactor: Float
        var backoffFactor: Float
        var growthInterval: Int
        var cleanSteps: Int
    }
    /// The arguments that shape the trajectory; they must match on resume (max_steps may change).
    struct Arguments: Codable, Equatable {
        var batchSize: Int
        var gradientAccumulation: Int
        var learningRate: Double
        var scheduler: String
        var warmupSteps: Int
        var weightDecay: Float
        var maxGradNorm: Float
        var optimizer: String
        var adamBeta1: Float
        var adamBeta2: Float
        var adamEpsilon: Float
        var seed: String
        var shuffle: Bool
        var maxSeqLength: Int
        var packing: Bool

        init(_ a: TrainingArguments) {
            batchSize = a.batchSize; gradientAccumulation = a.gradientAccumulation; learningRate = a.learningRate
            scheduler = a.scheduler.rawValue; warmupSteps = a.warmupSteps; weightDecay = a.weightDecay
            maxGradNorm = a.maxGradNorm; optimizer = a.optimizer.rawValue; adamBeta1 = a.adamBeta1
            adamBeta2 = a.adamBeta2; adamEpsilon = a.adamEpsilon; seed = String(a.seed); shuffle = a.shuffle
            maxSeqLength = a.maxSeqLength; packing = a.packing
        }
    }
    struct Model: Codable, Equatable {
        var vocabSize, hiddenSize, intermediateSize, layers, heads, kvHeads, headDim: Int
        init(_ c: LlamaConfig) {
            vocabSize = c.vocabSize; hiddenSize = c.hiddenSize; intermediateSize = c.intermediateSize
            layers = c.layers; heads = c.heads; kvHeads = c.kvHeads; headDim = c.headDim
        }
    }
    struct LoRA: Codable, Equatable {
        var r: Int
        var modules: [String]
    }

    var formatVersion = 1
    var globalStep: Int
    /// Steps run including fp16 steps skipped on overflow.
    var stepsTaken: Int
    var maxSteps: Int
    var saveSteps: Int
    var epoch: Double
    var logHistory: [Trainer.StepLog]
    var data: DataPosition
    var lossScaler: Scaler?
    var arguments: Arguments
    var model: Model
    var lora: LoRA
    /// The objective's settings that must match on resume (DPO's loss, beta…); absent for SFT.
    var objective: String?

    static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return e
    }
    static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return d
    }
}

extension Trainer {
    /// FNV-1a over the training rows, to tell whether a resume sees the same data.
    var dataFingerprint: String { objective.dataFingerprint }

    /// The optimizer's state tensors with their names in `optimizer.safetensors`: `<PEFT name>.<suffix>`,
    /// with `.expert<e>` between for an expert's adapter (one PEFT tensor holds every expert's).
    var optimizerStateTensors: [(name: String, tensor: Tensor)] {
        let names = model.adapters.flatMap { adapter in
            let expert = adapter.expert.map { ".expert\($0.index)" } ?? ""
            return [adapter.peftNameA + expert, adapter.peftNameB + expert]
        }
        switch optimizer.kind {
        case .adamw:
            return zip(names, optimizer.moments).flatMap { name, mv in
                [(name + ".exp_avg", mv.m), (name + ".exp_avg_sq", mv.v)]
            }
        case .adamw8bit:
            return zip(names, optimizer.adamW8bitStates).flatMap { name, state in
                state.tensors.map { (name + "." + $0.suffix, $0.tensor) }
            }
        case .sgd:
            return []
        }
    }

    /// The LoRA settings for adapter_config.json: `loraConfig`, or derived from the adapters.
    var checkpointLoRAConfig: LoRAConfig {
        if let loraConfig { return loraConfig }
        let first = model.adapters[0]
        let suffixes = Set(model.adapters.compactMap { $0.module.split(separator: ".").last.map(String.init) })
        let targets = Set(suffixes.compactMap(LoRAConfig.Target.init(rawValue:)))
        return LoRAConfig(r: first.rank, alpha: first.scaling * Float(first.rank), dropout: first.dropout, targets: targets)
    }

    /// Writes `output/checkpoint-<globalStep>/` atomically (see `TrainingCheckpoint`), removes
    /// leftover temporary folders, then keeps only the newest `saveTotalLimit` checkpoints.
    /// Returns the checkpoint's folder.
    @discardableResult
    public func saveCheckpoint(to output: URL) throws -> URL {
        let fm = FileManager.default
        try fm.createDirectory(at: output, withIntermediateDirectories: true)
        TrainingCheckpoint.removeTemporaries(in: output)
        let pid = getpid()
        let name = "checkpoint-\(globalStep)"
        let final = output.appendingPathComponent(name)
        let temporary = output.appendingPathComponent(".\(name).tmp-\(pid)")
        try fm.createDirectory(at: temporary, withIntermediateDirectories: true)
        do {
            try PEFTAdapter.save(model, config: checkpointLoRAConfig, to: temporary, baseModel: baseModel)
            if optimizer.kind != .sgd {
                // Element bytes as stored (f32 moments and absmax, u8 codes): a resume restores them exactly.
                let entries = optimizerStateTensors.map { name, tensor in
                    SafetensorsWriter.Entry(name: name, dtype: tensor.dtype, shape: tensor.shape,
                                            bytes: tensor.backend.downloadBytes(tensor))
                }
                try SafetensorsWriter.write(entries, metadata: ["format": "pt", "optimizer": optimizer.kind.rawValue,
                                                                "step": String(optimizer.steps)],
                                            to: temporary.appendingPathComponent(TrainingCheckpoint.optimizerFile))
            }
            let state = TrainerState(
                globalStep: globalStep, stepsTaken: stepsTaken, maxSteps: arguments.maxSteps, saveSteps: arguments.saveSteps,
                epoch: Double(epoch) + Double(cursor) / Double(objective.rowCount), logHistory: logHistory,
                data: .init(epochIndex: epoch, cursor: cursor, order: order, rowCount: objective.rowCount, fingerprint: dataFingerprint),
                lossScaler: lossScaler.map {
                    .init(scale: $0.scale, growthFactor: $0.growthFactor, backoffFactor: $0.backoffFactor,
                          growthInterval: $0.growthInterval, cleanSteps: $0.cleanSteps)
                },
                arguments: .init(globalArguments), model: .init(model.config),
                lora: .init(r: model.adapters[0].rank, modules: model.adapters.map(\.module)),
                objective: objective.resumeKey)
            try TrainerState.encoder().encode(state).write(to: temporary.appendingPathComponent(TrainingCheckpoint.stateFile))
            for file in try fm.contentsOfDirectory(atPath: temporary.path) {
                try TrainingCheckpoint.fsync(path: temporary.appendingPathComponent(file).path)
            }
            try TrainingCheckpoint.fsync(path: temporary.path, directory: true)
            // A checkpoint of this step already there (a re-run) is swapped out, then removed.
            var replaced: URL?
            if fm.fileExists(atPath: final.path) {
                let old = output.appendingPathComponent(".\(name).old-\(pid)")
                try? fm.removeItem(at: old)
                guard rename(final.path, old.path) == 0 else {
                    throw CheckpointError.io(path: final.path, problem: "rename: " + String(cString: strerror(errno)))
                }
                replaced = old
            }
            guard rename(temporary.path, final.path) == 0 else {
                throw CheckpointError.io(path: final.path, problem: "rename: " + String(cString: strerror(errno)))
            }
            try? TrainingCheckpoint.fsync(path: output.path, directory: true)
            if let replaced { try? fm.removeItem(at: replaced) }
        } catch {
            try? fm.removeItem(at: temporary)
            throw error
        }
        TrainingCheckpoint.prune(in: output, keep: arguments.saveTotalLimit)
        return final
    }

    /// Continues from `checkpoint` (a `checkpoint-N` folder): adapter weights, optimizer moments and
    /// step, data order and position, loss scaler and log history. The model must have the same shape
    /// and LoRA adapters (rank, modules) as when it was saved, the data and the trajectory-shaping
    /// arguments must match; anything else is an error before any state changes.
    public func resume(from checkpoint: URL) throws {
        let fm = FileManager.default
        let path = checkpoint.path
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CheckpointError.invalid(checkpoint: path, problem: "is not a folder")
        }
        let required = TrainingCheckpoint.adapterFiles + [TrainingCheckpoint.stateFile]
        for file in required where !fm.fileExists(atPath: checkpoint.appendingPathComponent(file).path) {
            throw CheckpointError.missingFile(checkpoint: path, file: file)
        }
        let state: TrainerState
        do {
            state = try TrainerState.decoder().decode(TrainerState.self, from: Data(contentsOf: checkpoint.appendingPathComponent(TrainingCheckpoint.stateFile)))
        } catch {
            throw CheckpointError.invalid(checkpoint: path, problem: "\(TrainingCheckpoint.stateFile) cannot be read: \(error)")
        }
        func mismatch(_ what: String) -> CheckpointError { .mismatch(checkpoint: path, what: what) }

        let shape = TrainerState.Model(model.config)
        if state.model != shape {
            throw mismatch("the model's shape differs: the checkpoint was trained on \(state.model), this model is \(shape)")
        }
        let config = try PEFTAdapter.config(directory: checkpoint)
        let rank = model.adapters[0].rank
        if config.r != rank || state.lora.r != rank {
            throw mismatch("LoRA rank differs: the checkpoint has r=\(config.r), the model's adapters have r=\(rank)")
        }
        let modules = model.adapters.map(\.module)
        if state.lora.modules != modules {
            throw mismatch("the LoRA modules differ: the checkpoint has \(state.lora.modules.count) "
                + "(\(Set(state.lora.modules.compactMap { $0.split(separator: ".").last }).sorted().joined(separator: ","))), "
                + "the model \(modules.count) (\(Set(modules.compactMap { $0.split(separator: ".").last }).sorted().joined(separator: ",")))")
        }
        let current = TrainerState.Arguments(globalArguments)
        if state.arguments != current {
            let saved = Mirror(reflecting: state.arguments).children, now = Mirror(reflecting: current).children
            let differing = zip(saved, now).compactMap { s, n -> String? in
                "\(s.value)" == "\(n.value)" ? nil : "\(s.label ?? "?") \(s.value) -> \(n.value)"
            }
            throw mismatch("training arguments differ from the checkpoint's: " + differing.joined(separator: ", "))
        }
        if state.objective != objective.resumeKey {
            throw mismatch("the objective differs: the checkpoint trained \(state.objective ?? "sft"), this run \(objective.resumeKey ?? "sft")")
        }
        if state.data.rowCount != objective.rowCount || state.data.fingerprint != dataFingerprint {
            throw mismatch("the training data differs (the checkpoint saw \(state.data.rowCount) rows, now \(objective.rowCount)"
                + (state.data.rowCount == objective.rowCount ? ", with other contents)" : ")"))
        }
        guard state.data.order.count == objective.rowCount, Set(state.data.order) == Set(0..<objective.rowCount),
              (0...objective.rowCount).contains(state.data.cursor), state.data.epochIndex >= 0, state.globalStep >= 0,
              state.stepsTaken >= state.globalStep else {
            throw CheckpointError.invalid(checkpoint: path, problem: "the data position in \(TrainingCheckpoint.stateFile) is inconsistent")
        }
        if (lossScaler == nil) != (state.lossScaler == nil) {
            throw mismatch("the checkpoint was trained \(state.lossScaler == nil ? "without" : "with") fp16 loss scaling, "
                + "this backend trains \(lossScaler == nil ? "without" : "with") it")
        }

        // Read every tensor before changing anything.
        var reader = PEFTAdapter.PairReader(try SafetensorsFile(url: checkpoint.appendingPathComponent(PEFTAdapter.weightsFile)))
        var adapterValues: [[Float]] = []
        for adapter in model.adapters {
            let (a, b) = try reader.pair(module: adapter.module, rank: adapter.rank, inFeatures: adapter.inFeatures,
                                         outFeatures: adapter.outFeatures, expert: adapter.expert)
            adapterValues += [a, b]
        }
        // The optimizer state, as stored bytes; the file must be the one this optimizer writes.
        var optimizerValues: [(bytes: [UInt8], tensor: Tensor)] = []
        if optimizer.kind != .sgd {
            let url = checkpoint.appendingPathComponent(TrainingCheckpoint.optimizerFile)
            guard fm.fileExists(atPath: url.path) else {
                throw CheckpointError.missingFile(checkpoint: path, file: TrainingCheckpoint.optimizerFile)
            }
            let file = try SafetensorsFile(url: url)
            let written = file.metadata["optimizer"] ?? "adamw"
            if written != optimizer.kind.rawValue {
                throw mismatch("\(TrainingCheckpoint.optimizerFile) holds \(written) state, this run uses \(optimizer.kind.rawValue)")
            }
            for (name, tensor) in optimizerStateTensors {
                guard file.contains(name) else { throw ModelError.missingTensor(name: name, source: url.path) }
                let info = try file.info(name)
                guard info.shape == tensor.shape else {
                    throw ModelError.shapeMismatch(name: name, source: url.path, expected: tensor.shape, found: info.shape)
                }
                guard info.dtype == tensor.dtype else {
                    throw CheckpointError.invalid(checkpoint: path, problem: "\(name) is \(info.dtype), expected \(tensor.dtype)")
                }
                optimizerValues.append((Array(try file.rawBytes(name)), tensor))
            }
        }

        let backend = model.backend
        func store(_ values: [Float], into tensor: Tensor) throws {
            backend.copy(try backend.upload(values, tensor.shape, tensor.dtype), into: tensor)
        }
        let tensors = model.adapters.flatMap { [$0.a, $0.b] }
        for (values, tensor) in zip(adapterValues, tensors) { try store(values, into: tensor) }
        for (bytes, tensor) in optimizerValues {
            backend.copy(try backend.upload(bytes: bytes, tensor.shape, tensor.dtype), into: tensor)
        }
        optimizer.restore(steps: state.globalStep)
        stepsTaken = state.stepsTaken
        epoch = state.data.epochIndex
        order = state.data.order
        cursor = state.data.cursor
        if let s = state.lossScaler {
            lossScaler = LossScaler(scale: s.scale, cleanSteps: s.cleanSteps, growthFactor: s.growthFactor,
                                    backoffFactor: s.backoffFactor, growthInterval: s.growthInterval)
        }
        logHistory = state.logHistory
        backend.synchronize()
    }
}
