import Foundation

/// Reads data files into rows: JSONL (`.jsonl`, `.ndjson`), JSON (`.json`: an array of objects, or an
/// object holding exactly one array — its key is named in row locations), CSV (`.csv`, RFC 4180 with a
/// header row), or a folder of such files read in name order (other files are ignored).
public enum DatasetReader {
    public static let extensions: Set<String> = ["jsonl", "ndjson", "json", "csv"]

    public static func read(_ url: URL) throws -> [DatasetRow] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw DataError(file: url.path, line: nil, field: nil, problem: "does not exist")
        }
        if isDir.boolValue {
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: url.path) } catch {
                throw DataError(file: url.path, line: nil, field: nil, problem: "cannot be listed (\(error.localizedDescription))")
            }
            let files = names.filter { !$0.hasPrefix(".") && extensions.contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
            guard !files.isEmpty else {
                throw DataError(file: url.path, line: nil, field: nil, problem: "holds no .jsonl, .json or .csv files")
            }
            return try files.flatMap { try readFile(url.appendingPathComponent($0)) }
        }
        return try readFile(url)
    }

    public static func readFile(_ url: URL) throws -> [DatasetRow] {
        // Read through a file handle, so a pipe works too (`--data <(zcat pairs.jsonl.gz)`, a FIFO):
        // Foundation's String(contentsOf:) refuses those on Linux. A pipe can be read only once.
        let bytes: Data
        do {
            let handle = try FileHandle(forReadingFrom: url)
            defer { try? handle.close() }
            bytes = try handle.readToEnd() ?? Data()
        } catch {
            throw DataError(file: url.path, line: nil, field: nil, problem: "cannot be read (\(error.localizedDescription))")
        }
        guard let text = String(data: bytes, encoding: .utf8) else {
            throw DataError(file: url.path, line: nil, field: nil, problem: "cannot be read as UTF-8 (it is not valid UTF-8)")
        }
        switch url.pathExtension.lowercased() {
        case "json": return try parseJSON(text, file: url.path)
        case "csv": return try parseCSV(text, file: url.path)
        case "jsonl", "ndjson": return try parseJSONL(text, file: url.path)
        default:
            throw DataError(file: url.path, line: nil, field: nil,
                            problem: "has an unknown extension (expected .jsonl, .ndjson, .json or .csv)")
        }
    }

    public static func parseJSONL(_ text: String, file: String) throws -> [DatasetRow] {
        var rows: [DatasetRow] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            guard let v = try? JSONDecoder().decode(DataValue.self, from: Data(trimmed.utf8)), case .object(let o) = v else {
                throw DataError(file: file, line: i + 1, field: nil, problem: "is not a JSON object")
            }
            rows.append(DatasetRow(fields: o, file: file, line: i + 1))
        }
        return rows
    }

    public static func parseJSON(_ text: String, file: String) throws -> [DatasetRow] {
        let value: DataValue
        do { value = try JSONDecoder().decode(DataValue.self, from: Data(text.utf8)) } catch {
            throw DataError(file: file, line: nil, field: nil, problem: "is not valid JSON")
        }
        let elements: [DataValue], prefix: String
        switch value {
        case .array(let a): elements = a; prefix = file
        case .object(let o):
            let arrays = o.filter { if case .array = $0.value { return true } else { return false } }
            guard arrays.count == 1, case .array(let a) = arrays.first!.value else {
                throw DataError(file: file, line: nil, field: nil, problem:
                    "is a JSON object holding \(arrays.count) lists (\(arrays.keys.sorted().joined(separator: ", "))); it must hold exactly one list of rows, or be a list")
            }
            elements = a; prefix = "\(file)[\"\(arrays.first!.key)\"]"
        default:
            throw DataError(file: file, line: nil, field: nil, problem: "must be a list of objects or an object holding one")
        }
        return try elements.enumerated().map { i, e in
            guard case .object(let o) = e else {
                throw DataError(file: "\(prefix)[\(i)]", line: nil, field: nil, problem: "is \(e.typeName), not an object")
            }
            return DatasetRow(fields: o, file: "\(prefix)[\(i)]", line: nil)
        }
    }

    /// RFC 4180: fields separated by commas, records by CRLF or LF; a quoted field may hold commas,
    /// line breaks and doubled quotes. The first record names the columns. Every value is a string.
    public static func parseCSV(_ text: String, file: String) throws -> [DatasetRow] {
        var records: [(line: Int, fields: [String])] = []
        var fields: [String] = [], field = "", quoted = false, wasQuoted = false
        var line = 1, recordLine = 1
        var chars = Array(text.unicodeScalars)
        if chars.first == "\u{FEFF}" { chars.removeFirst() }
        var i = 0
        func endRecord() {
            fields.append(field)
            if !(fields.count == 1 && fields[0].isEmpty && !wasQuoted) { records.append((recordLine, fields)) }
            fields = []; field = ""; wasQuoted = false
        }
        while i < chars.count {
            let c = chars[i]
            if quoted {
                if c == "\"" {
                    if i + 1 < chars.count && chars[i + 1] == "\"" { field.unicodeScalars.append("\""); i += 2; continue }
                    quoted = false
                } else {
                    if c == "\n" { line += 1 }
                    field.unicodeScalars.append(c)
                }
                i += 1; continue
            }
            switch c {
            case "\"":
                guard field.isEmpty && !wasQuoted else {
                    throw DataError(file: file, line: line, field: nil, problem: "has a quote inside an unquoted CSV field")
                }
                quoted = true; wasQuoted = true
            case ",":
                fields.append(field); field = ""; wasQuoted = false
            case "\r" where i + 1 < chars.count && chars[i + 1] == "\n":
                i += 1; fallthrough
            case "\n":
                endRecord(); line += 1; recordLine = line
            default:
                if wasQuoted {
                    throw DataError(file: file, line: line, field: nil, problem: "has text after a closing quote in a CSV field")
                }
                field.unicodeScalars.append(c)
            }
            i += 1
        }
        if quoted { throw DataError(file: file, line: recordLine, field: nil, problem: "has an unterminated quoted CSV field") }
        if !field.isEmpty || !fields.isEmpty || wasQuoted { endRecord() }
        guard let header = records.first else { return [] }
        var seen = Set<String>()
        for name in header.fields where !seen.insert(name).inserted {
            throw DataError(file: file, line: header.line, field: name, problem: "is a repeated CSV column name")
        }
        return try records.dropFirst().map { r in
            guard r.fields.count == header.fields.count else {
                throw DataError(file: file, line: r.line, field: nil,
                                problem: "has \(r.fields.count) CSV fields, the header has \(header.fields.count)")
            }
            var o: [String: DataValue] = [:]
            for (k, v) in zip(header.fields, r.fields) { o[k] = .string(v) }
            return DatasetRow(fields: o, file: file, line: r.line)
        }
    }
}
