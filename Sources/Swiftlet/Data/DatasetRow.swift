import Foundation

/// A JSON (or CSV) value of a data row. CSV fields are always `.string`.
public enum DataValue: Equatable, Sendable, Decodable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([DataValue])
    case object([String: DataValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([DataValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: DataValue].self)) }
    }

    /// The JSON type name used in error messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "a list"
        case .object: return "an object"
        }
    }
}

/// One record of a data file, remembering where it came from for error messages:
/// JSONL and CSV rows carry their (starting) line; JSON array elements their index in `file`
/// (which then reads e.g. `data.json["rows"][3]`).
public struct DatasetRow: Sendable {
    public var fields: [String: DataValue]
    public var file: String
    public var line: Int?

    public init(fields: [String: DataValue], file: String, line: Int?) {
        self.fields = fields; self.file = file; self.line = line
    }

    public subscript(key: String) -> DataValue? { fields[key] }

    public func error(_ field: String?, _ problem: String) -> DataError {
        DataError(file: file, line: line, field: field, problem: problem)
    }

    /// A required string field.
    public func string(_ key: String) throws -> String {
        guard let v = fields[key], v != .null else { throw error(key, "is missing") }
        guard case .string(let s) = v else { throw error(key, "must be a string, not \(v.typeName)") }
        return s
    }

    /// An optional string field (absent, null or "" read as nil).
    public func optionalString(_ key: String) throws -> String? {
        guard let v = fields[key], v != .null else { return nil }
        guard case .string(let s) = v else { throw error(key, "must be a string, not \(v.typeName)") }
        return s.isEmpty ? nil : s
    }
}
