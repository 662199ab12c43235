import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A whole file mapped read-only, unmapped when the last owner goes away. A class so that copies
/// of a `SafetensorsFile` share one mapping.
final class MappedFile: @unchecked Sendable {  // immutable after init; the pages are read-only
    let path: String
    /// nil for an empty file: mmap rejects a length of 0.
    private let base: UnsafeRawPointer?
    let size: Int

    init(path: String) throws(SafetensorsError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT { throw .fileNotFound(path: path) }
            throw .unreadable(path: path, reason: String(cString: strerror(code)))
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            throw .unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw .unreadable(path: path, reason: "not a regular file")
        }
        size = Int(status.st_size)
        guard size > 0 else {
            base = nil
            return
        }
        // MAP_PRIVATE + PROT_READ: pages come from the page cache on demand, nothing is copied.
        guard let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), address != MAP_FAILED else {
            throw .unreadable(path: path, reason: "mmap: " + String(cString: strerror(errno)))
        }
        base = UnsafeRawPointer(address)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }
}

/// A safetensors file, memory-mapped. The header is parsed and validated when the file is
/// opened; tensor data is only read (paged in) when asked for.
public struct SafetensorsFile: Sendable {
    public let url: URL
    /// The header's `__metadata__`, empty when absent.
    public let metadata: [String: String]
    /// Tensor names, sorted (JSON objects have no order to preserve).
    public let names: [String]
    private let tensors: [String: SafetensorsTensorInfo]
    private let mapping: MappedFile
    /// File offset of the data section: 8 + header length.
    private let dataStart: Int

    public init(url: URL) throws(SafetensorsError) {
        let path = url.path
        let mapping = try MappedFile(path: path)
        let bytes = mapping.bytes
        guard bytes.count >= 8 else { throw .truncated(path: path, fileSize: bytes.count) }
        let headerLength = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw .headerPastEnd(path: path, headerLength: headerLength, fileSize: bytes.count)
        }
        let dataStart = 8 + Int(headerLength)
        let header = Data(bytes[8..<dataStart])
        let (metadata, infos) = try Self.parseHeader(header, dataSize: bytes.count - dataStart, path: path)

        self.url = url
        self.mapping = mapping
        self.dataStart = dataStart
        self.metadata = metadata
        self.tensors = Dictionary(uniqueKeysWithValues: infos.map { ($0.name, $0) })
        self.names = tensors.keys.sorted()
    }

    public func contains(_ name: String) -> Bool { tensors[name] != nil }

    public func info(_ name: String) throws(SafetensorsError) -> SafetensorsTensorInfo {
        guard let info = tensors[name] else { throw .tensorNotFound(path: url.path, tensor: name) }
        return info
    }

    /// The tensor's bytes inside the mapping, little-endian as stored. Valid while this file
    /// value (or a copy of it) is alive.
    public func rawBytes(_ name: String) throws(SafetensorsError) -> UnsafeRawBufferPointer {
        let range = try info(name).dataRange
        return UnsafeRawBufferPointer(rebasing: mapping.bytes[(dataStart + range.lowerBound)..<(dataStart + range.upperBound)])
    }

    /// The elements converted to Float: exact for F32, BF16, F16 and the 8-bit floats, rounded for
    /// F64 and wide integers; BOOL gives 0 or 1.
    public func floats(_ name: String) throws(SafetensorsError) -> [Float] {
        let info = try info(name)
        return SafetensorsElements.floats(try rawBytes(name), info.dtype)
    }

    /// The elements of an integer or BOOL tensor widened to Int64.
    public func int64s(_ name: String) throws(SafetensorsError) -> [Int64] {
        let info = try info(name)
        guard let values = SafetensorsElements.int64s(try rawBytes(name), info.dtype) else {
            let reason = info.dtype.isFloatingPoint
                ? "\(info.dtype.safetensorsName) is not an integer dtype"
                : "a U64 value does not fit in Int64"
            throw .notConvertible(path: url.path, tensor: name, reason: reason)
        }
        return values
    }

    /// Parses the JSON header and checks every entry against the data section: known dtype,
    /// offsets inside it, size matching shape, and tensors tiling it exactly (no overlap, no hole),
    /// as Hugging Face's reader requires.
    static func parseHeader(_ header: Data, dataSize: Int, path: String)
        throws(SafetensorsError) -> (metadata: [String: String], tensors: [SafetensorsTensorInfo])
    {
        guard let json = JSONValue.parse(header) else {
            throw .invalidHeader(path: path, reason: "not valid JSON")
        }
        guard case let .object(entries) = json else {
            throw .invalidHeader(path: path, reason: "not a JSON object")
        }
        var metadata: [String: String] = [:]
        var infos: [SafetensorsTensorInfo] = []
        for (name, value) in entries {
            if name == "__metadata__" {
                metadata = try parseMetadata(value, path: path)
            } else {
                infos.append(try parseEntry(name, value, dataSize: dataSize, path: path))
            }
        }

        // Sorted by offsets, each tensor must start exactly where the previous one ended.
        // Zero-byte tensors sort before a tensor starting at the same offset, so they fit too.
        infos.sort { ($0.dataRange.lowerBound, $0.dataRange.upperBound, $0.name)
            < ($1.dataRange.lowerBound, $1.dataRange.upperBound, $1.name) }
        var covered = 0
        var previous: String?
        for info in infos {
            let begin = info.dataRange.lowerBound
            if begin < covered, let previous {
                throw .overlap(path: path, tensor: info.name, other: previous)
            }
            if begin > covered {
                throw .hole(path: path, begin: covered, end: begin, before: info.name)
            }
            covered = info.dataRange.upperBound
            previous = info.name
        }
        if covered != dataSize {
            throw .hole(path: path, begin: covered, end: dataSize, before: nil)
        }
        return (metadata, infos)
    }

    private static func parseMetadata(_ value: JSONValue, path: String) throws(SafetensorsError) -> [String: String] {
        guard case let .object(fields) = value else {
            throw .invalidHeader(path: path, reason: "__metadata__ is \(value.literal), not an object")
        }
        var metadata: [String: String] = [:]
        for (key, field) in fields {
            guard case let .string(text) = field else {
                throw .invalidHeader(path: path, reason: "__metadata__ value of \"\(key)\" is \(field.literal), not a string")
            }
            metadata[key] = text
        }
        return metadata
    }

    private static func parseEntry(_ name: String, _ value: JSONValue, dataSize: Int, path: String)
        throws(SafetensorsError) -> SafetensorsTensorInfo
    {
        func invalid(_ reason: String) -> SafetensorsError {
            .invalidEntry(path: path, tensor: name, reason: reason)
        }
        guard case let .object(fields) = value else { throw invalid("entry is \(value.literal), not an object") }

        guard let dtypeValue = fields["dtype"] else { throw invalid("missing \"dtype\"") }
        guard case let .string(dtypeName) = dtypeValue else {
            throw invalid("dtype is \(dtypeValue.literal), not a string")
        }
        guard let dtype = DType(safetensorsName: dtypeName) else {
            throw .unknownDType(path: path, tensor: name, dtype: dtypeName)
        }

        guard let shapeValue = fields["shape"] else { throw invalid("missing \"shape\"") }
        guard let dims = naturals(shapeValue) else {
            throw invalid("shape must be an array of non-negative integers")
        }

        guard let offsetsValue = fields["data_offsets"] else { throw invalid("missing \"data_offsets\"") }
        guard let offsets = naturals(offsetsValue), offsets.count == 2 else {
            throw invalid("data_offsets must be two non-negative integers")
        }
        let (begin, end) = (offsets[0], offsets[1])
        guard begin <= end, end <= dataSize else {
            throw .badOffsets(path: path, tensor: name, begin: begin, end: end, dataSize: dataSize)
        }

        // Overflow-checked: a hostile shape must not wrap around to a plausible size.
        var expected = dtype.size
        for dim in dims {
            let (product, overflow) = expected.multipliedReportingOverflow(by: dim)
            guard !overflow else { throw invalid("shape \(dims) is too large") }
            expected = product
        }
        guard end - begin == expected else {
            throw .sizeMismatch(path: path, tensor: name, byteCount: end - begin, expected: expected)
        }
        return SafetensorsTensorInfo(name: name, dtype: dtype, shape: Shape(dims), dataRange: begin..<end)
    }

    private static func naturals(_ value: JSONValue) -> [Int]? {
        guard case let .array(items) = value else { return nil }
        var numbers: [Int] = []
        for item in items {
            guard case let .integer(number) = item, number >= 0 else { return nil }
            numbers.append(number)
        }
        return numbers
    }
}
