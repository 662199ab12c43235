import Foundation
import XCTest
@testable import Swiftlet

/// Readers (JSONL, JSON, CSV, folders), format checks and their errors.
final class TextDatasetReaderTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("swiftlet-textdata-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func write(_ name: String, _ text: String) throws -> URL {
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }
    func tokenizer() throws -> Tokenizer { try TextDatasetTRLTests.tokenizer("byte_bpe") }

    func dataError(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> DataError? {
        do { try body() } catch let e as DataError { return e } catch {
            XCTFail("not a DataError: \(error)", file: file, line: line); return nil
        }
        XCTFail("no error thrown", file: file, line: line)
        return nil
    }

    func testCSVEdgeCases() throws {
        let text = "a,b,c\r\n1,\"x, y\",\"say \"\"hi\"\"\"\r\n2,\"two\nlines\",\r\n\r\n3,,\"\"\n4,last,\"no newline at end\""
        let rows = try DatasetReader.parseCSV(text, file: "t.csv")
        XCTAssertEqual(rows.count, 4)
        XCTAssertEqual(rows[0]["b"], .string("x, y"))
        XCTAssertEqual(rows[0]["c"], .string("say \"hi\""))
        XCTAssertEqual(rows[1]["b"], .string("two\nlines"))
        XCTAssertEqual(rows[1]["c"], .string(""))
        XCTAssertEqual(rows.map(\.line), [2, 3, 6, 7])  // a record's first line; quoted newline counted
        XCTAssertEqual(rows[3]["c"], .string("no newline at end"))
        let bad = dataError { _ = try DatasetReader.parseCSV("a,b\n1,2\n3\n", file: "t.csv") }
        XCTAssertEqual(bad?.line, 3)
        XCTAssertNotNil(dataError { _ = try DatasetReader.parseCSV("a\n\"open\n", file: "t.csv") })
        XCTAssertNotNil(dataError { _ = try DatasetReader.parseCSV("a\nx\"y\n", file: "t.csv") })
    }

    func testCSVFixtureSkipsEmptyText() throws {
        let url = try TextDatasetTRLTests.datasets().appendingPathComponent("text.csv")
        let rows = try DatasetReader.read(url)
        XCTAssertEqual(rows.count, 4)
        XCTAssertEqual(rows[2]["text"], .string("has a \"quote\" and\na newline"))
        let e = dataError { _ = try TextDataset.load(url: url, tokenizer: try self.tokenizer()) }
        XCTAssertEqual(e?.line, 6); XCTAssertEqual(e?.field, "text")
        let r = try TextDataset.load(url: url, tokenizer: tokenizer(), options: DatasetOptions(skipBadRows: true))
        XCTAssertEqual(r.skipped, 1); XCTAssertEqual(r.examples.count, 3)
        XCTAssertTrue(r.skipMessages[0].contains("text.csv:6: field 'text' is empty"), r.skipMessages[0])
    }

    func testJSONObjectHoldingOneArray() throws {
        let url = try TextDatasetTRLTests.datasets().appendingPathComponent("alpaca_wrapped.json")
        let rows = try DatasetReader.read(url)
        XCTAssertEqual(rows.count, 2)
        XCTAssertEqual(rows[1].file, url.path + "[\"data\"][1]")
        let two = try write("two.json", #"{"a": [{"text": "x"}], "b": [{"text": "y"}]}"#)
        XCTAssertTrue(dataError { _ = try DatasetReader.read(two) }?.problem.contains("holding 2 lists (a, b)") ?? false)
        let bad = try write("bad.json", #"[{"instruction": "i", "output": "o"}, {"instruction": "i"}]"#)
        let e = dataError { _ = try TextDataset.load(url: bad, tokenizer: try self.tokenizer()) }
        XCTAssertEqual(e?.description, bad.path + "[1]: field 'output' is missing")
    }

    func testFolderReadInNameOrder() throws {
        let folder = dir.appendingPathComponent("folder")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try "{\"text\": \"b1\"}\n{\"text\": \"b2\"}\n".write(to: folder.appendingPathComponent("b.jsonl"), atomically: true, encoding: .utf8)
        try "[{\"text\": \"a1\"}]".write(to: folder.appendingPathComponent("a.json"), atomically: true, encoding: .utf8)
        try "text\nc1\n".write(to: folder.appendingPathComponent("c.csv"), atomically: true, encoding: .utf8)
        try "ignored".write(to: folder.appendingPathComponent("README.md"), atomically: true, encoding: .utf8)
        let rows = try DatasetReader.read(folder)
        XCTAssertEqual(rows.map { $0["text"] }, ["a1", "b1", "b2", "c1"].map { DataValue.string($0) })
        XCTAssertEqual(rows[2].line, 2)
        XCTAssertTrue(rows[2].file.hasSuffix("b.jsonl"))
    }

    func testErrorsNameFileLineAndField() throws {
        let tok = try tokenizer()
        let cases: [(String, String, Int, String, String)] = [
            ("missing.jsonl", "{\"text\": \"ok\"}\n\n{\"txt\": \"no\"}\n", 3, "text", "is missing"),
            ("unknown.jsonl", "{\"txt\": \"no\"}\n", 1, "", "match no data set format"),
            ("type.jsonl", "{\"text\": \"ok\"}\n{\"text\": 5}\n", 2, "text", "must be a string, not a number"),
            ("alpaca.jsonl", "{\"instruction\": \"i\", \"output\": \"o\"}\n{\"instruction\": \"i\", \"output\": [1]}\n", 2, "output", "must be a string"),
            ("empty.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n{\"messages\": []}\n", 2, "messages", "empty conversation"),
            ("role.jsonl", "{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}\n", 1, "messages[0].role", "unknown role 'robot'"),
            ("content.jsonl", "{\"conversations\": [{\"from\": \"human\"}]}\n", 1, "conversations[0].value", "is missing"),
            ("gpt.jsonl", "{\"conversations\": [{\"from\": \"alien\", \"value\": \"x\"}]}\n", 1, "conversations[0].from", "unknown role"),
            ("ids.jsonl", "{\"input_ids\": [1, 2]}\n{\"input_ids\": [1, \"a\"]}\n", 2, "input_ids", "list of integers"),
            ("notjson.jsonl", "{\"text\": \"ok\"}\nnot json\n", 2, "", "not a JSON object"),
        ]
        for (name, text, line, field, problem) in cases {
            let url = try write(name, text)
            let e = dataError { _ = try TextDataset.load(url: url, tokenizer: tok, template: try ChatTemplate.named("chatml")) }
            XCTAssertEqual(e?.file, url.path, name)
            XCTAssertEqual(e?.line, line, name)
            XCTAssertEqual(e?.field ?? "", field, name)
            XCTAssertTrue(e?.problem.contains(problem) ?? false, "\(name): \(e?.description ?? "")")
        }
    }

    func testSkipBadRowsCounts() throws {
        var text = ""
        for i in 0..<10 { text += i % 3 == 0 ? "{\"text\": \(i)}\n" : "{\"text\": \"row \(i)\"}\n" }
        let url = try write("mixed.jsonl", text)
        let r = try TextDataset.load(url: url, tokenizer: tokenizer(), options: DatasetOptions(skipBadRows: true))
        XCTAssertEqual(r.skipped, 4)
        XCTAssertEqual(r.examples.count, 6)
        XCTAssertEqual(r.skipMessages.count, 4)
        XCTAssertTrue(r.skipMessages[1].hasSuffix("mixed.jsonl:4: field 'text' must be a string, not a number"), r.skipMessages[1])
        let all = try write("allbad.jsonl", "{\"text\": 1}\n")
        XCTAssertNotNil(dataError { _ = try TextDataset.load(url: all, tokenizer: try self.tokenizer(), options: DatasetOptions(skipBadRows: true)) })
    }

    func testTrainOnResponsesNeedsAnAssistantTurn() throws {
        let url = try write("noassistant.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n")
        let tpl = try ChatTemplate(source: String(contentsOf: TextDatasetTRLTests.datasets().appendingPathComponent("chatml_generation.jinja"), encoding: .utf8))
        let e = dataError { _ = try TextDataset.load(url: url, tokenizer: try self.tokenizer(), template: tpl,
                                                     options: DatasetOptions(trainOnResponsesOnly: true)) }
        XCTAssertEqual(e?.line, 1)
        XCTAssertTrue(e?.problem.contains("no assistant tokens") ?? false)
    }

    func testTokenizedRowsAsTokenizedDatasetReadsThem() throws {
        let text = "{\"input_ids\": [1, 0, 5], \"labels\": [-100, 0, 1]}\n{\"input_ids\": [0, 1], \"attention_mask\": [1, 0]}\n"
        let url = try write("tok.jsonl", text)
        let r = try TextDataset.load(url: url, tokenizer: tokenizer())
        XCTAssertEqual(r.format, .tokenized)
        XCTAssertEqual(r.examples, try TokenizedDataset.load(url))
        let json = try write("tok.json", "[{\"input_ids\": [1, 2], \"labels\": [1]}]")
        let e = dataError { _ = try TextDataset.load(url: json, tokenizer: try self.tokenizer()) }
        XCTAssertEqual(e?.file, json.path + "[0]"); XCTAssertNil(e?.line); XCTAssertEqual(e?.field, "labels")
    }

    func testTextEOSAndAlpacaPrompt() throws {
        let tok = try tokenizer()
        let t = TextTokenizer(tokenizer: tok)
        let a = try t.example(.text("hi"), trainOnResponsesOnly: false)
        let b = try t.example(.text("hi<|eot_id|>"), trainOnResponsesOnly: false)
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.inputIds.last, tok.eosTokenId)
        XCTAssertEqual(AlpacaPrompt.prompt(instruction: "I", input: nil),
                       "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nI\n\n### Response:\n")
        XCTAssertTrue(AlpacaPrompt.prompt(instruction: "I", input: "X").hasSuffix("### Instruction:\nI\n\n### Input:\nX\n\n### Response:\n"))
    }
}
