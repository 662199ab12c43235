import Foundation

// Pieces of the safetensors format shared by the reader, the writer and sharded checkpoints.
// Layout: 8-byte little-endian header length N, N bytes of JSON header, then the data section;
// each tensor's `data_offsets` are relative to the start of the data section.

/// Why a safetensors file or checkpoint could not be read or written. Every description names
/// the file (or directory) and, where there is one, the tensor, so that a failure in a
/// many-shard checkpoint points at the culprit.
public enum SafetensorsError: Error, CustomStringConvertible, Equatable, Sendable {
    case fileNotFound(path: String)
    case unreadable(path: String, reason: String)
    /// Shorter than the 8-byte header length.
    case truncated(path: String, fileSize: Int)
    case headerPastEnd(path: String, headerLength: UInt64, fileSize: Int)
    /// The header is not JSON, not an object, or `__metadata__` is not a string-to-string map.
    case invalidHeader(path: String, reason: String)
    /// A tensor entry lacks a field or has one of the wrong type (also used for bad writer input).
    case invalidEntry(path: String, tensor: String, reason: String)
    case unknownDType(path: String, tensor: String, dtype: String)
    /// `data_offsets` reversed (begin > end) or reaching past the data section.
    case badOffsets(path: String, tensor: String, begin: Int, end: Int, dataSize: Int)
    case sizeMismatch(path: String, tensor: String, byteCount: Int, expected: Int)
    case overlap(path: String, tensor: String, other: String)
    /// Data bytes [begin, end) that no tensor covers; `before` is the next tensor, nil at the end.
    case hole(path: String, begin: Int, end: Int, before: String?)
    case tensorNotFound(path: String, tensor: String)
    case notConvertible(path: String, tensor: String, reason: String)
    case writeFailed(path: String, reason: String)
    case noCheckpoint(directory: String)
    case invalidIndex(path: String, reason: String)
    case missingShard(index: String, shard: String, tensor: String)

    public var description: String {
        switch self {
        case let .fileNotFound(path):
            return "\(path): no such file"
        case let .unreadable(path, reason):
            return "\(path): cannot read: \(reason)"
        case let .truncated(path, fileSize):
            return "\(path): truncated safetensors file (\(fileSize) bytes, need at least 8)"
        case let .headerPastEnd(path, headerLength, fileSize):
            return "\(path): header length \(headerLength) runs past the end of the \(fileSize)-byte file"
        case let .invalidHeader(path, reason):
            return "\(path): invalid safetensors header: \(reason)"
        case let .invalidEntry(path, tensor, reason):
            return "\(path): tensor \"\(tensor)\": \(reason)"
        case let .unknownDType(path, tensor, dtype):
            return "\(path): tensor \"\(tensor)\": unknown dtype \"\(dtype)\""
        case let .badOffsets(path, tensor, begin, end, dataSize):
            let why = begin > end ? "begin > end" : "outside the \(dataSize)-byte data section"
            return "\(path): tensor \"\(tensor)\": data_offsets [\(begin), \(end)] \(why)"
        case let .sizeMismatch(path, tensor, byteCount, expected):
            return "\(path): tensor \"\(tensor)\": \(byteCount) data bytes, but dtype and shape need \(expected)"
        case let .overlap(path, tensor, other):
            return "\(path): tensor \"\(tensor)\" overlaps tensor \"\(other)\""
        case let .hole(path, begin, end, before):
            let place = before.map { "before tensor \"\($0)\"" } ?? "at the end of the data section"
            return "\(path): data bytes [\(begin), \(end)) \(place) belong to no tensor"
        case let .tensorNotFound(path, tensor):
            return "\(path): no tensor \"\(tensor)\""
        case let .notConvertible(path, tensor, reason):
            return "\(path): tensor \"\(tensor)\": \(reason)"
        case let .writeFailed(path, reason):
            return "\(path): cannot write: \(reason)"
        case let .noCheckpoint(directory):
            return "\(directory): no model.safetensors or model.safetensors.index.json"
        case let .invalidIndex(path, reason):
            return "\(path): invalid checkpoint index: \(reason)"
        case let .missingShard(index, shard, tensor):
            return "\(index): shard \"\(shard)\" of tensor \"\(tensor)\" does not exist"
        }
    }
}

/// Where one tensor lives in a safetensors file.
public struct SafetensorsTensorInfo: Equatable, Sendable {
    public let name: String
    public let dtype: DType
    public let shape: Shape
    /// Byte range relative to the start of the data section (the header's `data_offsets`).
    public let dataRange: Range<Int>

    public init(name: String, dtype: DType, shape: Shape, dataRange: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataRange = dataRange
    }

    public var byteCount: Int { dataRange.count }
}

extension DType {
    /// The dtype's name in safetensors headers ("F32", "BF16", ...).
    public var safetensorsName: String {
        switch self {
        case .bool: return "BOOL"
        case .u8: return "U8"
        case .i8: return "I8"
        case .f8_e5m2: return "F8_E5M2"
        case .f8_e4m3: return "F8_E4M3"
        case .i16: return "I16"
        case .u16: return "U16"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .i32: return "I32"
        case .u32: return "U32"
        case .f32: return "F32"
        case .f64: return "F64"
        case .i64: return "I64"
        case .u64: return "U64"
        }
    }

    public init?(safetensorsName: String) {
        guard let match = DType.allCases.first(where: { $0.safetensorsName == safetensorsName })
        else { return nil }
        self = match
    }
}

/// A parsed JSON value. The header mixes `__metadata__` (string map) with tensor entries under
/// arbitrary keys, and integers must be told apart from booleans and fractions, which
/// `JSONDecoder` does exactly when asked for each type in turn.
enum JSONValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case integer(Int)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    /// Parses `data`, or returns nil when it is not JSON.
    static func parse(_ data: Data) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: data)
    }

    /// The value as a JSON literal, for error messages.
    var literal: String {
        switch self {
        case .null: return "null"
        case let .bool(value): return String(value)
        case let .integer(value): return String(value)
        case let .number(value): return String(value)
        case let .string(value): return "\"\(value)\""
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// Element decoding from the little-endian bytes of a tensor. Loads are unaligned because
/// nothing in the format guarantees alignment of a tensor within the file.
enum SafetensorsElements {
    static func floats(_ raw: UnsafeRawBufferPointer, _ dtype: DType) -> [Float] {
        let count = raw.count / dtype.size
        func load<T: BitwiseCopyable>(_: T.Type, _ convert: (T) -> Float) -> [Float] {
            (0..<count).map { convert(raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self)) }
        }
        switch dtype {
        case .f32:
            return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: raw)
                initialized = count
            }
        case .bf16: return load(UInt16.self, BFloat16.float)
        case .f16: return load(UInt16.self, Half.float)
        case .f64: return load(Double.self) { Float($0) }
        case .f8_e4m3: return load(UInt8.self, float8E4M3)
        // e5m2 is the top byte of an IEEE half.
        case .f8_e5m2: return load(UInt8.self) { Half.float(UInt16($0) << 8) }
        case .bool, .u8: return load(UInt8.self) { Float($0) }
        case .i8: return load(Int8.self) { Float($0) }
        case .i16: return load(Int16.self) { Float($0) }
        case .u16: return load(UInt16.self) { Float($0) }
        case .i32: return load(Int32.self) { Float($0) }
        case .u32: return load(UInt32.self) { Float($0) }
        case .i64: return load(Int64.self) { Float($0) }
        case .u64: return load(UInt64.self) { Float($0) }
        }
    }

    /// Integer (and bool) elements widened to Int64; nil for floating-point dtypes or a U64
    /// value above Int64.max (a silent wrap would corrupt token ids and the like).
    static func int64s(_ raw: UnsafeRawBufferPointer, _ dtype: DType) -> [Int64]? {
        let count = raw.count / dtype.size
        func load<T: BinaryInteger & BitwiseCopyable>(_: T.Type) -> [Int64]? {
            var values = [Int64]()
            values.reserveCapacity(count)
            for i in 0..<count {
                guard let value = Int64(exactly: raw.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self))
                else { return nil }
                values.append(value)
            }
            return values
        }
        switch dtype {
        case .bool, .u8: return load(UInt8.self)
        case .i8: return load(Int8.self)
        case .i16: return load(Int16.self)
        case .u16: return load(UInt16.self)
        case .i32: return load(Int32.self)
        case .u32: return load(UInt32.self)
        case .i64: return load(Int64.self)
        case .u64: return load(UInt64.self)
        case .f32, .bf16, .f16, .f64, .f8_e4m3, .f8_e5m2: return nil
        }
    }

    /// float8 e4m3fn: bias 7, 3 mantissa bits, no infinities; S.1111.111 is NaN.
    static func float8E4M3(_ bits: UInt8) -> Float {
        let sign: Float = bits & 0x80 != 0 ? -1 : 1
        let exponent = Int((bits >> 3) & 0x0F)
        let mantissa = Float(bits & 0x07)
        if exponent == 0x0F && bits & 0x07 == 0x07 { return .nan }
        if exponent == 0 { return sign * mantissa * 0x1p-9 }  // subnormal: m/8 · 2^-6
        return sign * (1 + mantissa / 8) * Float(sign: .plus, exponent: exponent - 7, significand: 1)
    }
}
