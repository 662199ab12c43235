import Foundation
import XCTest
@testable import Swiftlet

/// A preference fixture made with TRL on the llama_gqa model and its adapter
/// (scripts/make_dpo_fixtures.py → Fixtures/dpo, scripts/make_orpo_fixtures.py → Fixtures/orpo): the
/// pairs (with `rejected_prompt_ids` where the rejected side has its own prompt), and the expected
/// values and tensors.
struct PreferenceFixture {
    var model: LlamaModel
    var pairs: [PreferencePair]
    var expected: [String: Any]
    var tensors: SafetensorsFile

    init(_ folder: String) throws {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let base = root.appendingPathComponent("llama_gqa"), fixture = root.appendingPathComponent(folder)
        model = try LlamaModel.load(directory: base, on: CPUBackend())
        _ = try PEFTAdapter.load(directory: base.appendingPathComponent("adapter"), into: model)
        let rows = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Data(contentsOf: fixture.appendingPathComponent("pairs.json"))) as? [[String: [Int]]])
        pairs = rows.map { row in
            PreferencePair(promptIds: row["prompt_ids"]!.map(Int32.init), chosenIds: row["chosen_ids"]!.map(Int32.init),
                           rejectedIds: row["rejected_ids"]!.map(Int32.init),
                           rejectedPromptIds: row["rejected_prompt_ids"]?.map(Int32.init))
        }
        expected = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Data(contentsOf: fixture.appendingPathComponent("expected.json"))) as? [String: Any])
        tensors = try SafetensorsFile(url: fixture.appendingPathComponent("expected.safetensors"))
    }
}
