import Foundation
import XCTest
@testable import Swiftlet

final class SafetensorsTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("SafetensorsTests-" + UUID().uuidString)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    // MARK: - Helpers

    /// Writes a file by hand: 8-byte little-endian header length, header, data.
    private func handMade(_ name: String, header: String, data: [UInt8] = []) throws -> URL {
        let headerBytes = Array(header.utf8)
        var bytes = withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { Array($0) }
        bytes += headerBytes + data
        let url = directory.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url
    }

    /// Asserts that opening `url` fails with an error whose description mentions every string in
    /// `mentions` (the file name, the tensor name, ...), and returns that error.
    @discardableResult
    private func assertOpenFails(_ url: URL, mentions: [String], file: StaticString = #filePath,
                                 line: UInt = #line) -> SafetensorsError? {
        do {
            _ = try SafetensorsFile(url: url)
            XCTFail("opening \(url.lastPathComponent) succeeded", file: file, line: line)
            return nil
        } catch {
            assertMentions(error, mentions, file: file, line: line)
            return error
        }
    }

    private func assertMentions(_ error: SafetensorsError, _ mentions: [String],
                                file: StaticString = #filePath, line: UInt = #line) {
        for text in mentions {
            XCTAssertTrue(error.description.contains(text), "\"\(error)\" does not mention \(text)",
                          file: file, line: line)
        }
    }

    private func write(_ entries: [SafetensorsWriter.Entry], metadata: [String: String]? = nil,
                       name: String = "t.safetensors") throws -> URL {
        let url = directory.appendingPathComponent(name)
        try SafetensorsWriter.write(entries, metadata: metadata, to: url)
        return url
    }

    // MARK: - Round trips

    private let values: [Float] = [0, 1, -2.5, 3.14159, 1e-3, -65504, 1.0 / 3.0, 100.125]

    func testF32RoundTrip() throws {
        let url = try write([.init(name: "w", floats: values, shape: [2, 4])])
        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(file.names, ["w"])
        XCTAssertEqual(try file.info("w"),
                       SafetensorsTensorInfo(name: "w", dtype: .f32, shape: [2, 4], dataRange: 0..<32))
        XCTAssertEqual(try file.floats("w"), values)
    }

    func testBF16RoundTripKeepsBits() throws {
        let url = try write([.init(name: "w", floats: values, shape: [8], dtype: .bf16)])
        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(try file.info("w").dtype, .bf16)
        let raw = try file.rawBytes("w")
        let bits = (0..<values.count).map { raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self) }
        XCTAssertEqual(bits, values.map(BFloat16.bits))
        XCTAssertEqual(try file.floats("w"), values.map(BFloat16.round))
    }

    func testF16RoundTrip() throws {
        let url = try write([.init(name: "w", floats: values, shape: [4, 2], dtype: .f16)])
        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(try file.info("w").dtype, .f16)
        XCTAssertEqual(try file.floats("w"), values.map { Float(Float16($0)) })
    }

    func testMetadataRoundTrip() throws {
        let metadata = ["format": "pt", "note": "quote \" backslash \\ newline \n tab \t ünïcode \u{1}"]
        let url = try write([.init(name: "x", floats: [1], shape: [1])], metadata: metadata)
        XCTAssertEqual(try SafetensorsFile(url: url).metadata, metadata)
        // No metadata written reads back as empty.
        let plain = try write([.init(name: "x", floats: [1], shape: [1])], name: "plain.safetensors")
        XCTAssertEqual(try SafetensorsFile(url: plain).metadata, [:])
    }

    func testScalarAndEmptyTensors() throws {
        let url = try write([
            .init(name: "scalar", floats: [7.5], shape: []),
            .init(name: "empty", floats: [], shape: [0]),
            .init(name: "empty2d", floats: [], shape: [3, 0], dtype: .bf16),
            .init(name: "z", floats: [1, 2], shape: [2]),
        ])
        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(file.names, ["empty", "empty2d", "scalar", "z"])
        XCTAssertEqual(try file.info("scalar").shape, [])
        XCTAssertEqual(try file.floats("scalar"), [7.5])
        XCTAssertEqual(try file.info("empty").byteCount, 0)
        XCTAssertEqual(try file.floats("empty"), [])
        XCTAssertEqual(try file.info("empty2d").shape, [3, 0])
        XCTAssertEqual(try file.rawBytes("empty2d").count, 0)
        XCTAssertEqual(try file.floats("z"), [1, 2])
    }

    func testZeroTensorFile() throws {
        let url = try write([], metadata: ["k": "v"])
        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(file.names, [])
        XCTAssertEqual(file.metadata, ["k": "v"])
    }

    func testWriterSortsByNameWithContiguousOffsets() throws {
        let url = try write([
            .init(name: "c", floats: [1, 2, 3], shape: [3]),
            .init(name: "a", floats: [4], shape: [1], dtype: .bf16),
            .init(name: "b", floats: [5, 6], shape: [2], dtype: .f64),
        ])
        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(try file.info("a").dataRange, 0..<2)
        XCTAssertEqual(try file.info("b").dataRange, 2..<18)
        XCTAssertEqual(try file.info("c").dataRange, 18..<30)
        XCTAssertEqual(try file.floats("b"), [5, 6])
    }

    func testIntegerTensors() throws {
        let bytes: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 2, 0, 0, 0]  // i32 [-1, 2]
        let url = try write([
            .init(name: "i", dtype: .i32, shape: [2], bytes: bytes),
            .init(name: "flags", dtype: .bool, shape: [3], bytes: [1, 0, 1]),
            .init(name: "f", floats: [1], shape: [1]),
        ])
        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(try file.int64s("i"), [-1, 2])
        XCTAssertEqual(try file.floats("i"), [-1, 2])
        XCTAssertEqual(try file.int64s("flags"), [1, 0, 1])
        XCTAssertThrowsError(try file.int64s("f")) { error in
            self.assertMentions(error as! SafetensorsError, ["t.safetensors", "\"f\"", "F32"])
        }
    }

    /// Every spec dtype string maps to a DType and back.
    func testDTypeNames() {
        let names = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32",
                     "U32", "F32", "F64", "I64", "U64"]
        XCTAssertEqual(Set(DType.allCases.map(\.safetensorsName)), Set(names))
        for name in names { XCTAssertEqual(DType(safetensorsName: name)?.safetensorsName, name) }
        XCTAssertNil(DType(safetensorsName: "F32 "))
    }

    func testFloat8Decoding() throws {
        // e4m3fn: 0x38 = 1.0, 0x01 = 2^-9 (smallest subnormal), 0x7E = 448 (max), 0xFF = NaN;
        // e5m2: 0x3C = 1.0, 0x7B = 57344 (max), 0x7C = inf.
        let url = try write([
            .init(name: "a", dtype: .f8_e4m3, shape: [5], bytes: [0x38, 0x01, 0x7E, 0xC0, 0xFF]),
            .init(name: "b", dtype: .f8_e5m2, shape: [3], bytes: [0x3C, 0x7B, 0x7C]),
        ])
        let file = try SafetensorsFile(url: url)
        let a = try file.floats("a")
        XCTAssertEqual(Array(a[0..<4]), [1, 0x1p-9, 448, -2])
        XCTAssertTrue(a[4].isNaN)
        XCTAssertEqual(try file.floats("b"), [1, 57344, .infinity])
    }

    // MARK: - Exact layout

    /// Pins the byte layout (it matches Python `safetensors`' output for the same tensor):
    /// length, compact JSON with __metadata__ first, space padding to 8, little-endian data.
    func testExactByteLayout() throws {
        let url = try write([.init(name: "a", floats: [1, -2], shape: [2])], metadata: ["format": "pt"])
        let json = #"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        XCTAssertEqual(json.utf8.count, 85)
        let expected: [UInt8] = [88, 0, 0, 0, 0, 0, 0, 0] + Array(json.utf8) + [0x20, 0x20, 0x20]
            + [0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0]
        XCTAssertEqual(Array(try Data(contentsOf: url)), expected)
    }

    // MARK: - Atomic writes

    func testWriteReplacesAtomicallyAndLeavesNoTemporaryFile() throws {
        let url = try write([.init(name: "old", floats: [1], shape: [1])])
        _ = try write([.init(name: "new", floats: [2], shape: [1])])
        XCTAssertEqual(try SafetensorsFile(url: url).names, ["new"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["t.safetensors"])
    }

    func testRejectedWriteLeavesTargetUntouched() throws {
        let url = try write([.init(name: "old", floats: [1], shape: [1])])
        let before = try Data(contentsOf: url)
        XCTAssertThrowsError(try write([.init(name: "bad", dtype: .f32, shape: [2], bytes: [0, 0, 0, 0])])) {
            self.assertMentions($0 as! SafetensorsError, ["t.safetensors", "\"bad\""])
        }
        XCTAssertThrowsError(try write([.init(name: "d", floats: [1], shape: [1]),
                                        .init(name: "d", floats: [2], shape: [1])])) {
            self.assertMentions($0 as! SafetensorsError, ["t.safetensors", "\"d\"", "duplicate"])
        }
        XCTAssertEqual(try Data(contentsOf: url), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["t.safetensors"])
    }

    func testWriteIntoMissingDirectoryFails() {
        let url = directory.appendingPathComponent("nope/t.safetensors")
        XCTAssertThrowsError(try SafetensorsWriter.write([], to: url)) {
            self.assertMentions($0 as! SafetensorsError, ["nope/t.safetensors"])
        }
    }

    // MARK: - Corrupt and missing files

    private let entryA = #""a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#

    func testFileNotFound() {
        let error = assertOpenFails(directory.appendingPathComponent("missing.safetensors"),
                                    mentions: ["missing.safetensors"])
        XCTAssertEqual(error, .fileNotFound(path: directory.appendingPathComponent("missing.safetensors").path))
    }

    func testUnreadableDirectory() throws {
        let url = directory.appendingPathComponent("dir.safetensors")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false)
        assertOpenFails(url, mentions: ["dir.safetensors", "not a regular file"])
    }

    func testTruncatedFile() throws {
        let url = directory.appendingPathComponent("short.safetensors")
        try Data([1, 0, 0]).write(to: url)
        assertOpenFails(url, mentions: ["short.safetensors", "truncated"])
        let empty = directory.appendingPathComponent("empty.safetensors")
        try Data().write(to: empty)
        assertOpenFails(empty, mentions: ["empty.safetensors", "truncated"])
    }

    func testHeaderLengthPastEnd() throws {
        let url = directory.appendingPathComponent("long.safetensors")
        try Data([100, 0, 0, 0, 0, 0, 0, 0] + Array("{}".utf8)).write(to: url)
        assertOpenFails(url, mentions: ["long.safetensors", "header length 100"])
        // A length near 2^64 must not overflow into a small number.
        let huge = directory.appendingPathComponent("huge.safetensors")
        try Data([0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF] + Array("{}".utf8)).write(to: huge)
        assertOpenFails(huge, mentions: ["huge.safetensors", "header length"])
    }

    func testHeaderNotJSON() throws {
        let url = try handMade("notjson.safetensors", header: "{\"a\": ")
        assertOpenFails(url, mentions: ["notjson.safetensors", "not valid JSON"])
    }

    func testHeaderNotObject() throws {
        let url = try handMade("array.safetensors", header: "[1, 2]")
        assertOpenFails(url, mentions: ["array.safetensors", "not a JSON object"])
    }

    func testMetadataNotStrings() throws {
        let url = try handMade("meta.safetensors", header: #"{"__metadata__":{"step":5}}"#)
        assertOpenFails(url, mentions: ["meta.safetensors", "__metadata__", "step"])
    }

    func testEntryMissingField() throws {
        let url = try handMade("missing-field.safetensors",
                               header: #"{"w":{"dtype":"F32","shape":[2]}}"#, data: Array(repeating: 0, count: 8))
        assertOpenFails(url, mentions: ["missing-field.safetensors", "\"w\"", "data_offsets"])
    }

    func testEntryWrongTypes() throws {
        let cases = [
            (#"{"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}}"#, "shape"),
            (#"{"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#, "shape"),
            (#"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, "shape"),
            (#"{"w":{"dtype":"F32","shape":[true,2],"data_offsets":[0,8]}}"#, "shape"),
            (#"{"w":{"dtype":32,"shape":[2],"data_offsets":[0,8]}}"#, "dtype"),
            (#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#, "data_offsets"),
            (#"{"w":[1]}"#, "not an object"),
        ]
        for (i, (header, field)) in cases.enumerated() {
            let url = try handMade("types\(i).safetensors", header: header, data: Array(repeating: 0, count: 8))
            assertOpenFails(url, mentions: ["types\(i).safetensors", "\"w\"", field])
        }
    }

    func testUnknownDType() throws {
        let url = try handMade("dtype.safetensors", header: #"{"w":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}}"#,
                               data: Array(repeating: 0, count: 8))
        let error = assertOpenFails(url, mentions: ["dtype.safetensors", "\"w\"", "F7"])
        XCTAssertEqual(error, .unknownDType(path: url.path, tensor: "w", dtype: "F7"))
    }

    func testOffsetsPastDataSection() throws {
        let url = try handMade("past.safetensors", header: "{\(entryA)}", data: Array(repeating: 0, count: 4))
        assertOpenFails(url, mentions: ["past.safetensors", "\"a\"", "outside"])
    }

    func testOffsetsReversed() throws {
        let url = try handMade("reversed.safetensors", header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
                               data: Array(repeating: 0, count: 8))
        assertOpenFails(url, mentions: ["reversed.safetensors", "\"a\"", "begin > end"])
    }

    func testSizeMismatch() throws {
        let url = try handMade("size.safetensors", header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                               data: Array(repeating: 0, count: 8))
        let error = assertOpenFails(url, mentions: ["size.safetensors", "\"a\""])
        XCTAssertEqual(error, .sizeMismatch(path: url.path, tensor: "a", byteCount: 8, expected: 12))
    }

    func testShapeOverflow() throws {
        let url = try handMade("overflow.safetensors",
                               header: #"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}}"#)
        assertOpenFails(url, mentions: ["overflow.safetensors", "\"a\"", "too large"])
    }

    func testOverlappingTensors() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        let url = try handMade("overlap.safetensors", header: header, data: Array(repeating: 0, count: 12))
        assertOpenFails(url, mentions: ["overlap.safetensors", "\"a\"", "\"b\"", "overlaps"])
    }

    func testHoleBetweenTensors() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
        let url = try handMade("hole.safetensors", header: header, data: Array(repeating: 0, count: 12))
        let error = assertOpenFails(url, mentions: ["hole.safetensors", "\"b\"", "[4, 8)"])
        XCTAssertEqual(error, .hole(path: url.path, begin: 4, end: 8, before: "b"))
    }

    func testTrailingBytesAreAHole() throws {
        let url = try handMade("trailing.safetensors", header: "{\(entryA)}", data: Array(repeating: 0, count: 10))
        assertOpenFails(url, mentions: ["trailing.safetensors", "[8, 10)", "end"])
        let noTensors = try handMade("trailing0.safetensors", header: "{}", data: [1])
        assertOpenFails(noTensors, mentions: ["trailing0.safetensors", "[0, 1)"])
    }

    func testTensorNotFound() throws {
        let url = try write([.init(name: "present", floats: [1], shape: [1])], name: "found.safetensors")
        let file = try SafetensorsFile(url: url)
        XCTAssertFalse(file.contains("absent"))
        for call in [{ _ = try file.floats("absent") }, { _ = try file.rawBytes("absent") },
                     { _ = try file.info("absent") }] {
            XCTAssertThrowsError(try call()) {
                self.assertMentions($0 as! SafetensorsError, ["found.safetensors", "\"absent\""])
            }
        }
    }

    func testHandMadeFileWithPaddedHeaderReads() throws {
        // Python pads the header with spaces; a reader must accept that.
        let url = try handMade("padded.safetensors", header: "{\(entryA)}   ",
                               data: [0, 0, 0x80, 0x3F, 0, 0, 0, 0x40])
        XCTAssertEqual(try SafetensorsFile(url: url).floats("a"), [1, 2])
    }

    // MARK: - Checkpoints

    private func writeShardedCheckpoint(index: String) throws {
        try SafetensorsWriter.write([.init(name: "embed", floats: [1, 2], shape: [2]),
                                     .init(name: "layer.0", floats: [3], shape: [1], dtype: .bf16)],
                                    to: directory.appendingPathComponent("model-00001-of-00002.safetensors"))
        try SafetensorsWriter.write([.init(name: "layer.1", floats: [4, 5, 6], shape: [3])],
                                    to: directory.appendingPathComponent("model-00002-of-00002.safetensors"))
        try Data(index.utf8).write(to: directory.appendingPathComponent(Checkpoint.indexFileName))
    }

    private let index = """
        {"metadata": {"total_size": 18, "format": "pt"},
         "weight_map": {"embed": "model-00001-of-00002.safetensors",
                        "layer.0": "model-00001-of-00002.safetensors",
                        "layer.1": "model-00002-of-00002.safetensors"}}
        """

    func testShardedCheckpoint() throws {
        try writeShardedCheckpoint(index: index)
        let checkpoint = try Checkpoint(directory: directory)
        XCTAssertEqual(checkpoint.names, ["embed", "layer.0", "layer.1"])
        XCTAssertEqual(checkpoint.metadata, ["total_size": "18", "format": "pt"])
        XCTAssertEqual(checkpoint.files.count, 2)
        XCTAssertTrue(checkpoint.contains("layer.1"))
        XCTAssertEqual(try checkpoint.floats("embed"), [1, 2])
        XCTAssertEqual(try checkpoint.floats("layer.0"), [3])
        XCTAssertEqual(try checkpoint.info("layer.0").dtype, .bf16)
        XCTAssertEqual(try checkpoint.floats("layer.1"), [4, 5, 6])
        XCTAssertEqual(try checkpoint.rawBytes("layer.1").count, 12)
        XCTAssertEqual(try checkpoint.file(containing: "layer.1").url.lastPathComponent,
                       "model-00002-of-00002.safetensors")
    }

    func testCheckpointMissingTensorNamesDirectory() throws {
        try writeShardedCheckpoint(index: index)
        let checkpoint = try Checkpoint(directory: directory)
        XCTAssertThrowsError(try checkpoint.floats("lm_head")) {
            self.assertMentions($0 as! SafetensorsError, [self.directory.path, "\"lm_head\""])
        }
    }

    func testCheckpointMissingShard() throws {
        try writeShardedCheckpoint(index: index.replacingOccurrences(
            of: "\"layer.1\": \"model-00002", with: "\"layer.1\": \"model-00003"))
        XCTAssertThrowsError(try Checkpoint(directory: directory)) {
            self.assertMentions($0 as! SafetensorsError,
                                [Checkpoint.indexFileName, "model-00003-of-00002.safetensors", "\"layer.1\""])
        }
    }

    func testCheckpointTensorAbsentFromItsShard() throws {
        try writeShardedCheckpoint(index: index.replacingOccurrences(
            of: "\"layer.1\": \"model-00002", with: "\"layer.1\": \"model-00001"))
        XCTAssertThrowsError(try Checkpoint(directory: directory)) {
            self.assertMentions($0 as! SafetensorsError,
                                [Checkpoint.indexFileName, "model-00001-of-00002.safetensors", "\"layer.1\""])
        }
    }

    func testCheckpointBadIndex() throws {
        for (text, reason) in [("{\"weight_map\": ", "not valid JSON"), ("[]", "not a JSON object"),
                               ("{\"metadata\": {}}", "weight_map"),
                               ("{\"weight_map\": {\"w\": 3}}", "\"w\"")] {
            try Data(text.utf8).write(to: directory.appendingPathComponent(Checkpoint.indexFileName))
            XCTAssertThrowsError(try Checkpoint(directory: directory)) {
                self.assertMentions($0 as! SafetensorsError, [Checkpoint.indexFileName, reason])
            }
        }
    }

    func testCheckpointCorruptShardNamesShard() throws {
        try writeShardedCheckpoint(index: index)
        try Data([1, 2, 3]).write(to: directory.appendingPathComponent("model-00002-of-00002.safetensors"))
        XCTAssertThrowsError(try Checkpoint(directory: directory)) {
            self.assertMentions($0 as! SafetensorsError, ["model-00002-of-00002.safetensors", "truncated"])
        }
    }

    func testSingleFileCheckpoint() throws {
        try SafetensorsWriter.write([.init(name: "w", floats: [1, 2], shape: [2])], metadata: ["format": "pt"],
                                    to: directory.appendingPathComponent(Checkpoint.singleFileName))
        let checkpoint = try Checkpoint(directory: directory)
        XCTAssertEqual(checkpoint.names, ["w"])
        XCTAssertEqual(checkpoint.metadata, ["format": "pt"])
        XCTAssertEqual(try checkpoint.floats("w"), [1, 2])
    }

    func testNoCheckpoint() {
        XCTAssertThrowsError(try Checkpoint(directory: directory)) {
            XCTAssertEqual($0 as? SafetensorsError, .noCheckpoint(directory: self.directory.path))
            self.assertMentions($0 as! SafetensorsError, [self.directory.path])
        }
    }
}
