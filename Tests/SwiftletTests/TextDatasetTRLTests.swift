import Foundation
import XCTest
@testable import Swiftlet

/// Every input id and label of every row equals what TRL 1.16's SFTTrainer dataset preparation produced
/// (scripts/make_dataset_fixtures.py), and BFD packing equals `trl.data_utils.pack_dataset(strategy="bfd")`.
final class TextDatasetTRLTests: XCTestCase {
    struct Expected: Decodable {
        struct Row: Decodable { var input_ids: [Int32]; var labels: [Int32] }
        struct Case: Decodable {
            var name: String; var tokenizer: String; var data: String; var template: String?
            var train_on_responses_only: Bool; var max_length: Int?; var expected: [Row]
        }
        struct Pack: Decodable {
            struct PackedRow: Decodable { var input_ids: [Int32]; var seq_lengths: [Int] }
            var seq_length: Int; var rows: [PackedRow]
        }
        var trl: String; var cases: [Case]; var packing: [Pack]
    }

    static func fixtures() throws -> URL {
        try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
    }
    static func datasets() throws -> URL { try fixtures().appendingPathComponent("datasets") }
    static func tokenizer(_ name: String) throws -> Tokenizer {
        try Tokenizer(directory: fixtures().appendingPathComponent("tokenizers").appendingPathComponent(name))
    }
    func expected() throws -> Expected {
        try JSONDecoder().decode(Expected.self, from: Data(contentsOf: Self.datasets().appendingPathComponent("expected.json")))
    }

    func testEveryCaseMatchesTRL() throws {
        let fixture = try expected()
        XCTAssertEqual(fixture.trl, "1.16.0")
        XCTAssertGreaterThanOrEqual(fixture.cases.count, 17)
        for c in fixture.cases {
            let tok = try Self.tokenizer(c.tokenizer)
            let template = try c.template.map { try ChatTemplate(source: String(contentsOf: Self.datasets().appendingPathComponent($0), encoding: .utf8)) }
            let options = DatasetOptions(trainOnResponsesOnly: c.train_on_responses_only, maxSeqLength: c.max_length,
                                         skipBadRows: c.data.hasSuffix(".csv"))
            let result = try TextDataset.load(url: Self.datasets().appendingPathComponent(c.data), tokenizer: tok,
                                              template: template, options: options)
            XCTAssertEqual(result.examples.count, c.expected.count, c.name)
            for (i, (got, want)) in zip(result.examples, c.expected).enumerated() {
                XCTAssertEqual(got.inputIds, want.input_ids, "\(c.name) row \(i) input_ids")
                XCTAssertEqual(got.labels ?? got.inputIds, want.labels, "\(c.name) row \(i) labels")
            }
        }
    }

    func testFormatsDetected() throws {
        let tok = try Self.tokenizer("byte_bpe")
        let chatml = try ChatTemplate(source: String(contentsOf: Self.datasets().appendingPathComponent("chatml_generation.jinja"), encoding: .utf8))
        for (file, format) in [("text.jsonl", DatasetFormat.text), ("alpaca.jsonl", .alpaca), ("messages.jsonl", .conversations),
                               ("sharegpt.json", .conversations), ("alpaca_wrapped.json", .alpaca)] {
            let r = try TextDataset.load(url: Self.datasets().appendingPathComponent(file), tokenizer: tok, template: chatml)
            XCTAssertEqual(r.format, format, file)
        }
    }

    /// Without {% generation %} markers, assistant spans come from rendering prefixes; on a template whose
    /// marked version TRL checked, the masks agree.
    func testPrefixRenderingMatchesGenerationMarkers() throws {
        let tok = try Self.tokenizer("byte_bpe")
        let marked = try String(contentsOf: Self.datasets().appendingPathComponent("chatml_generation.jinja"), encoding: .utf8)
        let plain = marked.replacingOccurrences(of: "{% generation %}", with: "").replacingOccurrences(of: "{% endgeneration %}\n", with: "")
        let withMarkers = TextTokenizer(tokenizer: tok, template: try ChatTemplate(source: marked))
        let withoutMarkers = TextTokenizer(tokenizer: tok, template: try ChatTemplate(source: plain))
        XCTAssertFalse(withoutMarkers.template!.hasGenerationMarkers)
        XCTAssertEqual(try withMarkers.template!.render(messages: [.user("a"), .assistant("b")]),
                       try withoutMarkers.template!.render(messages: [.user("a"), .assistant("b")]))  // trim_blocks eats the \n
        let messages = [ChatMessage.user("Hi"), .assistant("Hello there."), .user("More"), .assistant("Sure.")]
        let a = try withMarkers.example(.conversation(messages), trainOnResponsesOnly: true)
        let b = try withoutMarkers.example(.conversation(messages), trainOnResponsesOnly: true)
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.labels!.filter { $0 != Batch.ignoreIndex }.count, tok.encode("Hello there.<|im_end|>Sure.<|im_end|>", addSpecialTokens: false).count)
    }

    func testBFDPackingMatchesTRL() throws {
        let fixture = try expected()
        let examples = fixture.cases[0].expected.map { Example(inputIds: $0.input_ids, labels: $0.labels) }
        for pack in fixture.packing {
            let rows = Packing.pack(examples, seqLength: pack.seq_length)
            XCTAssertEqual(rows.map { $0.flatMap(\.inputIds) }, pack.rows.map(\.input_ids), "seq_length \(pack.seq_length)")
            XCTAssertEqual(rows.map { $0.map(\.inputIds.count) }, pack.rows.map(\.seq_lengths), "seq_length \(pack.seq_length)")
        }
    }
}
