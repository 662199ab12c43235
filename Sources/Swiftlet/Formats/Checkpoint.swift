import Foundation

/// A model checkpoint directory in Hugging Face layout: either one `model.safetensors`, or
/// shards listed by `model.safetensors.index.json`
/// (`{"metadata": {...}, "weight_map": {tensor: shard file}}`). All files are opened (mapped and
/// header-checked) up front, so a bad shard fails here rather than mid-load; tensor data is
/// still read lazily.
public struct Checkpoint: Sendable {
    public static let singleFileName = "model.safetensors"
    public static let indexFileName = "model.safetensors.index.json"

    public let directory: URL
    /// The opened files: the single file, or the shards in file-name order.
    public let files: [SafetensorsFile]
    /// The single file's `__metadata__`, or the index's `metadata` with values as text
    /// (`total_size` is a number there).
    public let metadata: [String: String]
    /// Tensor names, sorted.
    public let names: [String]
    /// Which of `files` holds each tensor.
    private let fileOfTensor: [String: Int]

    public init(directory: URL) throws(SafetensorsError) {
        self.directory = directory
        let single = directory.appendingPathComponent(Self.singleFileName)
        let index = directory.appendingPathComponent(Self.indexFileName)
        if FileManager.default.fileExists(atPath: single.path) {
            let file = try SafetensorsFile(url: single)
            files = [file]
            metadata = file.metadata
            names = file.names
            fileOfTensor = Dictionary(uniqueKeysWithValues: file.names.map { ($0, 0) })
        } else if FileManager.default.fileExists(atPath: index.path) {
            let (metadata, weightMap) = try Self.parseIndex(index)
            let shardNames = Set(weightMap.values).sorted()
            var files: [SafetensorsFile] = []
            for shard in shardNames {
                let url = directory.appendingPathComponent(shard)
                guard FileManager.default.fileExists(atPath: url.path) else {
                    let tensor = weightMap.filter { $0.value == shard }.keys.min()!
                    throw .missingShard(index: index.path, shard: shard, tensor: tensor)
                }
                files.append(try SafetensorsFile(url: url))
            }
            let position = Dictionary(uniqueKeysWithValues: shardNames.enumerated().map { ($1, $0) })
            var fileOfTensor: [String: Int] = [:]
            for (tensor, shard) in weightMap {
                let i = position[shard]!
                guard files[i].contains(tensor) else {
                    throw .invalidIndex(path: index.path, reason: "tensor \"\(tensor)\" is mapped to shard \"\(shard)\", which does not contain it")
                }
                fileOfTensor[tensor] = i
            }
            self.files = files
            self.metadata = metadata
            self.names = weightMap.keys.sorted()
            self.fileOfTensor = fileOfTensor
        } else {
            throw .noCheckpoint(directory: directory.path)
        }
    }

    public func contains(_ name: String) -> Bool { fileOfTensor[name] != nil }

    /// The file holding tensor `name`.
    public func file(containing name: String) throws(SafetensorsError) -> SafetensorsFile {
        guard let i = fileOfTensor[name] else { throw .tensorNotFound(path: directory.path, tensor: name) }
        return files[i]
    }

    public func info(_ name: String) throws(SafetensorsError) -> SafetensorsTensorInfo {
        try file(containing: name).info(name)
    }

    /// Valid while this checkpoint value (or a copy of it) is alive.
    public func rawBytes(_ name: String) throws(SafetensorsError) -> UnsafeRawBufferPointer {
        try file(containing: name).rawBytes(name)
    }

    public func floats(_ name: String) throws(SafetensorsError) -> [Float] {
        try file(containing: name).floats(name)
    }

    public func int64s(_ name: String) throws(SafetensorsError) -> [Int64] {
        try file(containing: name).int64s(name)
    }

    private static func parseIndex(_ url: URL) throws(SafetensorsError)
        -> (metadata: [String: String], weightMap: [String: String])
    {
        let path = url.path
        let data: Data
        do {
            data = try Data(contentsOf: url)  // small JSON; no need to map it
        } catch {
            throw .unreadable(path: path, reason: error.localizedDescription)
        }
        guard let json = JSONValue.parse(data) else { throw .invalidIndex(path: path, reason: "not valid JSON") }
        guard case let .object(root) = json else { throw .invalidIndex(path: path, reason: "not a JSON object") }

        guard let mapValue = root["weight_map"] else { throw .invalidIndex(path: path, reason: "missing \"weight_map\"") }
        guard case let .object(entries) = mapValue else {
            throw .invalidIndex(path: path, reason: "weight_map is \(mapValue.literal), not an object")
        }
        var weightMap: [String: String] = [:]
        for (tensor, shard) in entries {
            guard case let .string(file) = shard, !file.isEmpty else {
                throw .invalidIndex(path: path, reason: "shard of tensor \"\(tensor)\" is \(shard.literal), not a file name")
            }
            weightMap[tensor] = file
        }

        var metadata: [String: String] = [:]
        switch root["metadata"] {
        case nil, .null?:
            break
        case let .object(fields)?:
            for (key, value) in fields {
                switch value {
                case let .string(text): metadata[key] = text
                case .bool, .integer, .number: metadata[key] = value.literal
                case .null, .array, .object: continue  // nothing sensible as text; not needed to load
                }
            }
        case let other?:
            throw .invalidIndex(path: path, reason: "metadata is \(other.literal), not an object")
        }
        return (metadata, weightMap)
    }
}
