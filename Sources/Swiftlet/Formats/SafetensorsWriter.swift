import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes safetensors files laid out as Python's `safetensors` library lays them out: compact
/// JSON header (`__metadata__` first), padded with spaces to a multiple of 8 bytes, tensors in
/// name order with contiguous offsets.
public enum SafetensorsWriter {
    public struct Entry: Sendable {
        public var name: String
        public var dtype: DType
        public var shape: Shape
        /// Little-endian element bytes, `shape.count * dtype.size` of them.
        public var bytes: [UInt8]

        public init(name: String, dtype: DType, shape: Shape, bytes: [UInt8]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }

        /// Converts `floats` to `dtype` (.f32, .bf16, .f16 or .f64), rounding to nearest even.
        public init(name: String, floats: [Float], shape: Shape, dtype: DType = .f32) {
            precondition(floats.count == shape.count,
                         "\(floats.count) values for shape \(shape) of tensor \(name)")
            let bytes: [UInt8]
            switch dtype {
            case .f32: bytes = Self.encode(floats) { $0.bitPattern }
            case .bf16: bytes = Self.encode(floats, BFloat16.bits)
            case .f16: bytes = Self.encode(floats, Half.bits)
            case .f64: bytes = Self.encode(floats) { Double($0).bitPattern }
            default: preconditionFailure("cannot encode floats as \(dtype)")
            }
            self.init(name: name, dtype: dtype, shape: shape, bytes: bytes)
        }

        private static func encode<T: FixedWidthInteger>(_ values: [Float], _ bits: (Float) -> T) -> [UInt8] {
            let size = MemoryLayout<T>.size
            return [UInt8](unsafeUninitializedCapacity: values.count * size) { buffer, initialized in
                let raw = UnsafeMutableRawBufferPointer(buffer)
                for (i, value) in values.enumerated() {
                    raw.storeBytes(of: bits(value).littleEndian, toByteOffset: i * size, as: T.self)
                }
                initialized = values.count * size
            }
        }
    }

    /// Writes `tensors` to `url` atomically: the bytes go to a temporary file in the same
    /// directory, which is flushed to disk and then renamed over `url`, so an interrupted write
    /// never leaves a partial file under the final name.
    public static func write(_ tensors: [Entry], metadata: [String: String]? = nil, to url: URL)
        throws(SafetensorsError)
    {
        let path = url.path
        let sorted = tensors.sorted { $0.name < $1.name }
        for (i, entry) in sorted.enumerated() {
            func invalid(_ reason: String) -> SafetensorsError {
                .invalidEntry(path: path, tensor: entry.name, reason: reason)
            }
            if entry.name == "__metadata__" { throw invalid("the name is reserved for metadata") }
            if i > 0 && sorted[i - 1].name == entry.name { throw invalid("duplicate tensor name") }
            let expected = entry.shape.count * entry.dtype.size
            if entry.bytes.count != expected {
                throw invalid("\(entry.bytes.count) bytes, but \(entry.dtype) \(entry.shape) needs \(expected)")
            }
        }
        let header = headerBytes(sorted, metadata: metadata)

        let directory = url.deletingLastPathComponent().path
        let temporary = directory + "/." + url.lastPathComponent + "." + UUID().uuidString + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw .writeFailed(path: path, reason: "cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        var isOpen = true
        var renamed = false
        defer {
            if isOpen { close(fd) }
            if !renamed { unlink(temporary) }
        }
        func fail(_ what: String) -> SafetensorsError {
            .writeFailed(path: path, reason: "\(what): \(String(cString: strerror(errno)))")
        }

        let length = UInt64(header.count).littleEndian
        guard withUnsafeBytes(of: length, { writeFully(fd, $0) }),
              header.withUnsafeBytes({ writeFully(fd, $0) }),
              sorted.allSatisfy({ $0.bytes.withUnsafeBytes { writeFully(fd, $0) } })
        else { throw fail("write") }
        guard fsync(fd) == 0 else { throw fail("fsync") }
        isOpen = false
        guard close(fd) == 0 else { throw fail("close") }
        guard rename(temporary, path) == 0 else { throw fail("rename") }
        renamed = true

        // Make the rename itself durable; failure here loses nothing already written.
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            fsync(directoryFD)
            close(directoryFD)
        }
    }

    /// The JSON header padded with spaces to a multiple of 8 bytes, offsets assigned in the
    /// order of `sorted`.
    static func headerBytes(_ sorted: [Entry], metadata: [String: String]?) -> [UInt8] {
        var fields: [String] = []
        if let metadata {
            let pairs = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            fields.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
        }
        var offset = 0
        for entry in sorted {
            let shape = entry.shape.dims.map(String.init).joined(separator: ",")
            let end = offset + entry.bytes.count
            fields.append("\(jsonString(entry.name)):{\"dtype\":\"\(entry.dtype.safetensorsName)\","
                + "\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        var bytes = Array("{\(fields.joined(separator: ","))}".utf8)
        bytes += repeatElement(UInt8(ascii: " "), count: (8 - bytes.count % 8) % 8)
        return bytes
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped, the rest as UTF-8.
    static func jsonString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                    + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// Writes all of `bytes`, resuming after partial writes and interruptions. Outside the writer so
/// that `write` here is the system call, not `SafetensorsWriter.write`.
private func writeFully(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
    var done = 0
    while done < bytes.count {
        let count = write(fd, bytes.baseAddress! + done, Swift.min(bytes.count - done, 1 << 30))
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { return false }
        done += count
    }
    return true
}
