import XCTest
@testable import Swiftlet

final class DatasetTests: XCTestCase {
    func write(_ text: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("swiftlet-\(UUID().uuidString).jsonl")
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func testReadsRowsAndSkipsBlankLines() throws {
        let url = try write("""
            {"input_ids": [1, 2, 3]}

            {"input_ids": [4, 5], "labels": [-100, 5], "attention_mask": [1, 1]}
            """)
        let rows = try TokenizedDataset.load(url)
        XCTAssertEqual(rows, [Example(inputIds: [1, 2, 3]), Example(inputIds: [4, 5], labels: [-100, 5], attentionMask: [1, 1])])
    }

    func testBadRowsNameFileLineAndField() throws {
        let cases: [(String, String)] = [
            ("{\"input_ids\": [1, 2]}\n{\"text\": \"hi\"}", ":2: field 'input_ids'"),
            ("{\"input_ids\": [1, 2], \"labels\": [1]}", ":1: field 'labels'"),
            ("{\"input_ids\": [1, \"a\"]}", ":1: field 'input_ids'"),
            ("not json", ":1: is not a JSON object"),
            ("{\"input_ids\": [1, 2, 3], \"attention_mask\": [0, 1, 1]}", "field 'attention_mask' must be 1s followed by 0s"),
            ("{\"input_ids\": [1, 2], \"labels\": [1, -5]}", "field 'labels' holds -5"),
            ("{\"input_ids\": []}", "field 'input_ids' is empty"),
        ]
        for (text, expected) in cases {
            let url = try write(text)
            XCTAssertThrowsError(try TokenizedDataset.load(url)) { error in
                XCTAssertTrue("\(error)".contains(url.lastPathComponent + expected) || "\(error)".contains(expected),
                              "\(error) should contain \(expected)")
                XCTAssertTrue("\(error)".contains(url.lastPathComponent))
            }
        }
    }

    func testIdsOutsideTheVocabularyNameTheRow() throws {
        let url = try write("{\"input_ids\": [1, 2]}\n{\"input_ids\": [1, 64]}")
        XCTAssertEqual(try TokenizedDataset.load(url, vocabSize: 65).count, 2)
        XCTAssertThrowsError(try TokenizedDataset.load(url, vocabSize: 64)) { error in
            XCTAssertTrue("\(error)".contains(url.lastPathComponent + ":2: field 'input_ids' holds 64"), "\(error)")
        }
    }

    func testPaddedBatchShiftsLabelsAndMasksPadding() {
        let batch = Batch(examples: [
            Example(inputIds: [5, 6, 7], labels: [-100, 6, 7]),
            Example(inputIds: [8, 9, 10, 11], labels: [8, 9, 10, 11], attentionMask: [1, 1, 1, 0]),
        ])
        XCTAssertEqual(batch.columns, 4)
        XCTAssertEqual(batch.tokens, [5, 6, 7, 0, 8, 9, 10, 11])
        XCTAssertEqual(batch.targets, [6, 7, -100, -100, 9, 10, -100, -100])
        XCTAssertEqual(batch.sequenceIds, [0, 0, 0, -1, 0, 0, 0, -1])
        XCTAssertEqual(batch.positions, [0, 1, 2, 3, 0, 1, 2, 3])
        XCTAssertEqual(batch.targetCount, 4)
    }

    func testPackedBatchRestartsPositionsAndNeverCrossesExamples() {
        let batch = Batch(packing: [Example(inputIds: [1, 2, 3]), Example(inputIds: [4, 5])], columns: 6)
        XCTAssertEqual(batch.positions, [0, 1, 2, 0, 1, 5])
        XCTAssertEqual(batch.sequenceIds, [0, 0, 0, 1, 1, -1])
        XCTAssertEqual(batch.targets, [2, 3, -100, 5, -100, -100])
    }
}
