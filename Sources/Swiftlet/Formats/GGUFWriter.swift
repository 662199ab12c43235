import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The ggml tensor types Swiftlet writes, with ggml's numbering (`enum ggml_type`).
public enum GGMLType: UInt32, Sendable {
    case f32 = 0
    case f16 = 1
    case q8_0 = 8
    case q4_K = 12
    case q6_K = 14

    /// Elements per block and bytes per block (ggml's `blck_size` and `type_size`).
    public var blockSize: Int {
        switch self {
        case .f32, .f16: return 1
        case .q8_0: return 32
        case .q4_K, .q6_K: return 256
        }
    }
    public var blockBytes: Int {
        switch self {
        case .f32: return 4
        case .f16: return 2
        case .q8_0: return 34
        case .q4_K: return 144
        case .q6_K: return 210
        }
    }

    /// Bytes of a tensor of `count` elements (`count` a multiple of the block size).
    public func byteCount(_ count: Int) -> Int { count / blockSize * blockBytes }
}

/// One metadata value of a GGUF file: the value types of `enum gguf_type`.
public indirect enum GGUFValue: Equatable, Sendable {
    case uint32(UInt32)
    case int32(Int32)
    case float32(Float)
    case bool(Bool)
    case string(String)
    case uint64(UInt64)
    /// A homogeneous array; `elementType` names the type of an empty one.
    case array(elementType: UInt32, [GGUFValue])

    /// `gguf_type` code.
    public var typeCode: UInt32 {
        switch self {
        case .uint32: return 4
        case .int32: return 5
        case .float32: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        case .uint64: return 10
        }
    }

    public static func strings(_ values: [String]) -> GGUFValue { .array(elementType: 8, values.map { .string($0) }) }
    public static func floats(_ values: [Float]) -> GGUFValue { .array(elementType: 6, values.map { .float32($0) }) }
    public static func int32s(_ values: [Int32]) -> GGUFValue { .array(elementType: 5, values.map { .int32($0) }) }
}

public enum GGUFError: Error, CustomStringConvertible {
    case unwritable(path: String, reason: String)
    case invalidTensor(name: String, reason: String)
    case unsupported(field: String, value: String, reason: String)
    public var description: String {
        switch self {
        case let .unwritable(path, reason): return "\(path): cannot write GGUF file: \(reason)"
        case let .invalidTensor(name, reason): return "GGUF tensor \(name): \(reason)"
        case let .unsupported(field, value, reason): return "\(field) = \(value): \(reason)"
        }
    }
}

/// Writes a GGUF v3 file (the container llama.cpp and gguf-py read): magic, version, counts, the
/// typed key/value metadata, the tensor table, then the tensor data, each tensor's offset
/// aligned to `general.alignment` (32). Tensors are produced one at a time by a closure, so a
/// large model is never held twice in memory; the file is written to a temporary name beside
/// `url`, flushed and renamed, so an interrupted export never leaves a partial file.
public enum GGUFWriter {
    public static let alignment = 32
    public static let version: UInt32 = 3

    public struct TensorInfo: Sendable {
        public var name: String
        /// ggml order: the innermost (contiguous) dimension first, the reverse of PyTorch's shape.
        public var dims: [Int]
        public var type: GGMLType
        public init(name: String, dims: [Int], type: GGMLType) {
            self.name = name
            self.dims = dims
            self.type = type
        }
        public var byteCount: Int { type.byteCount(dims.reduce(1, *)) }
    }

    /// Writes `metadata` (in order; `general.alignment` is added when missing) and `tensors`,
    /// whose bytes `data(i)` returns for the i-th tensor.
    public static func write(metadata: [(String, GGUFValue)], tensors: [TensorInfo], to url: URL,
                             data: (Int) throws -> [UInt8]) throws {
        for t in tensors {
            let count = t.dims.reduce(1, *)
            guard !t.dims.isEmpty, t.dims.count <= 4, let first = t.dims.first, first % t.type.blockSize == 0, count > 0 else {
                throw GGUFError.invalidTensor(name: t.name, reason: "dims \(t.dims) do not fit type \(t.type)")
            }
        }
        var kv = metadata
        if !kv.contains(where: { $0.0 == "general.alignment" }) {
            kv.insert(("general.alignment", .uint32(UInt32(alignment))), at: min(1, kv.count))
        }
        var header = ByteBuffer()
        header.u32(0x4655_4747)  // "GGUF" read as a little-endian u32
        header.u32(version)
        header.u64(UInt64(tensors.count))
        header.u64(UInt64(kv.count))
        for (key, value) in kv {
            header.string(key)
            header.u32(value.typeCode)
            header.value(value)
        }
        var offset = 0
        for t in tensors {
            header.string(t.name)
            header.u32(UInt32(t.dims.count))
            for d in t.dims { header.u64(UInt64(d)) }
            header.u32(t.type.rawValue)
            header.u64(UInt64(offset))
            offset = padded(offset + t.byteCount)
        }
        header.bytes += [UInt8](repeating: 0, count: padded(header.bytes.count) - header.bytes.count)

        let temporary = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
            throw GGUFError.unwritable(path: url.path, reason: "cannot create \(temporary.lastPathComponent)")
        }
        do {
            let handle = try FileHandle(forWritingTo: temporary)
            defer { try? handle.close() }
            try handle.write(contentsOf: header.bytes)
            for (i, t) in tensors.enumerated() {
                var bytes = try data(i)
                guard bytes.count == t.byteCount else {
                    throw GGUFError.invalidTensor(name: t.name, reason: "\(bytes.count) bytes for \(t.byteCount)")
                }
                bytes += [UInt8](repeating: 0, count: padded(bytes.count) - bytes.count)
                try handle.write(contentsOf: bytes)
            }
            try handle.synchronize()
            guard rename(temporary.path, url.path) == 0 else {
                throw GGUFError.unwritable(path: url.path, reason: String(cString: strerror(errno)))
            }
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw error
        }
    }

    static func padded(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    /// Little-endian serialization of GGUF's primitive values.
    struct ByteBuffer {
        var bytes: [UInt8] = []
        mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        mutating func string(_ s: String) {
            let utf8 = Array(s.utf8)
            u64(UInt64(utf8.count))
            bytes += utf8
        }
        mutating func value(_ v: GGUFValue) {
            switch v {
            case let .uint32(x): u32(x)
            case let .int32(x): u32(UInt32(bitPattern: x))
            case let .float32(x): u32(x.bitPattern)
            case let .bool(x): bytes.append(x ? 1 : 0)
            case let .string(s): string(s)
            case let .uint64(x): u64(x)
            case let .array(elementType, values):
                u32(elementType)
                u64(UInt64(values.count))
                for e in values { value(e) }
            }
        }
    }
}
