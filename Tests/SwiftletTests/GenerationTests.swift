import Foundation
import XCTest
@testable import Swiftlet

/// Greedy decoding with the KV cache against transformers' generate (fixtures of
/// scripts/make_generation_fixtures.py), cached logits against a full recompute, and each
/// sampling processor on a hand-computed case.
final class GenerationTests: XCTestCase {
    func fixtureDirectory(_ name: String) throws -> URL {
        try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).appendingPathComponent(name)
    }

    func loadModel(_ name: String) throws -> LlamaModel {
        let directory = try fixtureDirectory(name)
        let model = try LlamaModel.load(directory: directory, on: CPUBackend())
        _ = try PEFTAdapter.load(directory: directory.appendingPathComponent("adapter"), into: model)
        return model
    }

    func testGreedyMatchesTransformersGenerate() throws {
        let url = try fixtureDirectory("generation").appendingPathComponent("expected.json")
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let cases = try XCTUnwrap(json["cases"] as? [[String: Any]])
        // the phi3_longrope ones cross from short to long factors mid-generation; the Gemma ones run past
        // their sliding window (4) with softcapping (Gemma 2) and two RoPEs (Gemma 3)
        XCTAssertEqual(cases.count, 16)
        for c in cases {
            let name = c["model"] as! String
            let model = try loadModel(name)
            let eos = (c["eos_token_ids"] as! [Int]).map(Int32.init)
            XCTAssertEqual(Generator.eosTokenIds(modelDirectory: try fixtureDirectory(name)), eos)
            let prompts = (c["prompts"] as! [[Int]]).map { $0.map(Int32.init) }
            let expected = (c["generated"] as! [[Int]]).map { $0.map(Int32.init) }
            let result = try Generator(model: model, eosTokenIds: eos)
                .generate(prompts: prompts, maxNewTokens: json["max_new_tokens"] as! Int)
            XCTAssertEqual(result.tokens, expected, "\(name) \(prompts.map(\.count))")
        }
    }

    /// Merging the adapters on load (PEFT's merge_and_unload) gives the unmerged model's logits
    /// within f32 rounding and the same greedy tokens, on plain and fused (Phi-3) projections; the
    /// adapters are gone afterwards, and the logits differ from the base model's (the merge did something).
    func testMergedAdaptersGenerateAsUnmerged() throws {
        for name in ["llama_gqa", "phi3_fused"] {
            let unmerged = try loadModel(name), merged = try loadModel(name)
            let base = try LlamaModel.load(directory: try fixtureDirectory(name), on: CPUBackend())
            try merged.mergeAdapters()
            XCTAssertTrue(merged.adapters.isEmpty)
            let batch = Batch(examples: [Example(inputIds: [5, 17, 99, 3, 42, 7, 8])])
            let (a, b, c) = (try unmerged.logits(batch), try merged.logits(batch), try base.logits(batch))
            let scale = a.map(abs).max() ?? 1
            XCTAssertLessThan(zip(a, b).map { abs($0 - $1) }.max()! / scale, 1e-5, name)
            XCTAssertGreaterThan(zip(a, c).map { abs($0 - $1) }.max()! / scale, 1e-4, "\(name): the adapter should change the logits")
            let prompts: [[Int32]] = [[5, 17, 99, 3], [7, 8, 9]]
            XCTAssertEqual(try Generator(model: merged, eosTokenIds: []).generate(prompts: prompts, maxNewTokens: 6).tokens,
                           try Generator(model: unmerged, eosTokenIds: []).generate(prompts: prompts, maxNewTokens: 6).tokens, name)
        }
    }

    /// Prefill and every decode step's logits equal `logits(batch)` of the whole sequence so far
    /// (each row alone, no padding), within 1e-5: the cache, the padding mask and the positions (and,
    /// on the Gemma fixtures, per-layer windows, softcaps, two RoPEs and the final logit cap).
    func testCachedLogitsEqualFullRecompute() throws {
        for name in ["llama_gqa", "qwen2_bias", "mistral_window", "qwen3_qknorm", "phi3_fused", "gemma2_softcap", "gemma3_text"] {
            let model = try loadModel(name)
            let vocab = model.config.vocabSize
            var sequences: [[Int32]] = [[5, 17, 99, 3, 42], [7, 8, 9, 10, 11, 12, 13, 14, 15]]
            let width = 9, steps = 6
            let cache = try KVCache(model: model, rows: 2, capacity: width + steps)
            var tokens: [Int32] = [], positions: [Int32] = [], valid: [Bool] = []
            for s in sequences {
                let pad = width - s.count
                tokens += [Int32](repeating: 1, count: pad) + s
                positions += [Int32](repeating: 0, count: pad) + (0..<s.count).map(Int32.init)
                valid += [Bool](repeating: false, count: pad) + [Bool](repeating: true, count: s.count)
            }
            var logits = try model.decodeStep(tokens: tokens, positions: positions, valid: valid, cache: cache)
            for step in 0...steps {
                for (r, s) in sequences.enumerated() {
                    let full = try model.logits(Batch(examples: [Example(inputIds: s)]))
                    let expected = Array(full[((s.count - 1) * vocab)..<(s.count * vocab)])
                    let mine = Array(logits[(r * vocab)..<((r + 1) * vocab)])
                    let diff = zip(mine, expected).map { abs($0 - $1) }.max() ?? 0
                    XCTAssertLessThan(diff, 1e-5, "\(name) row \(r) step \(step)")
                }
                guard step < steps else { break }
                let next = (0..<2).map { Int32((Int(step) * 31 + $0 * 7 + 3) % vocab) }
                for r in 0..<2 { sequences[r].append(next[r]) }
                logits = try model.decodeStep(tokens: next, positions: sequences.map { Int32($0.count - 1) },
                                              valid: [true, true], cache: cache)
            }
        }
    }

    func testStopsOnEOSAndStopCondition() throws {
        let model = try loadModel("llama_gqa")
        let prompt: [[Int32]] = [[5, 17, 99, 3, 42, 8, 9]]
        let free = try Generator(model: model, eosTokenIds: []).generate(prompts: prompt, maxNewTokens: 8)
        XCTAssertEqual(free.tokens[0].count, 8)
        let eos = free.tokens[0][3]
        let stopped = try Generator(model: model, eosTokenIds: [eos]).generate(prompts: prompt, maxNewTokens: 8)
        let first = free.tokens[0].firstIndex(of: eos)!
        XCTAssertEqual(stopped.tokens[0], Array(free.tokens[0][...first]))
        let early = try Generator(model: model, eosTokenIds: []).generate(prompts: prompt, maxNewTokens: 8,
                                                                        shouldStop: { _, t in t.count == 2 })
        XCTAssertEqual(early.tokens[0], Array(free.tokens[0].prefix(2)))
        // Sampling repeats for a seed.
        let options = SamplingOptions(temperature: 0.8, topK: 20, topP: 0.9, minP: 0.01, repetitionPenalty: 1.1, seed: 7)
        let a = try Generator(model: model, eosTokenIds: []).generate(prompts: prompt, maxNewTokens: 8, options: options)
        let b = try Generator(model: model, eosTokenIds: []).generate(prompts: prompt, maxNewTokens: 8, options: options)
        XCTAssertEqual(a.tokens, b.tokens)
    }

    // MARK: Processors, against values worked out by hand

    func testRepetitionPenalty() {
        var x: [Float] = [2, -2, 1, 4]
        LogitsProcessors.repetitionPenalty(&x, seen: [0, 1, 0], penalty: 2)
        XCTAssertEqual(x, [1, -4, 1, 4])
    }

    func testTemperature() {
        var x: [Float] = [1, -2, 0.5]
        LogitsProcessors.temperature(&x, 0.5)
        XCTAssertEqual(x, [2, -4, 1])
    }

    func testTopKKeepsTies() {
        var x: [Float] = [1, 3, 2, 2, 0]
        LogitsProcessors.topK(&x, 2)
        XCTAssertEqual(x, [-.infinity, 3, 2, 2, -.infinity])
    }

    func testTopP() {
        // probabilities 0.1, 0.2, 0.3, 0.4 (logits = their logs); ascending cumulative 0.1, 0.3, 0.6, 1.
        let p: [Float] = [0.1, 0.2, 0.3, 0.4]
        var x = p.map { logf($0) }
        LogitsProcessors.topP(&x, 0.6)   // removes cumulative ≤ 0.4: the 0.1 and 0.2 tokens
        XCTAssertEqual(x.map(\.isFinite), [false, false, true, true])
        var y = p.map { logf($0) }
        LogitsProcessors.topP(&y, 0.05)  // keeps at least the most likely
        XCTAssertEqual(y.map(\.isFinite), [false, false, false, true])
    }

    func testMinP() {
        // top probability 0.4: min-p 0.6 removes probabilities below 0.24.
        var x = [Float](arrayLiteral: 0.1, 0.2, 0.3, 0.4).map { logf($0) }
        LogitsProcessors.minP(&x, 0.6)
        XCTAssertEqual(x.map(\.isFinite), [false, false, true, true])
    }

    func testGreedyAndSamplingChoice() {
        var random = SplitMix64(seed: 1)
        XCTAssertEqual(LogitsProcessors.choose([0, 5, 5, 1], seen: [], options: SamplingOptions(), random: &random), 1)
        // the penalty runs before the argmax: 5/4 < 2
        XCTAssertEqual(LogitsProcessors.choose([0, 5, 2, 1], seen: [1], options: SamplingOptions(repetitionPenalty: 4),
                                               random: &random), 2)
        // top-k 1 leaves one token to draw
        let options = SamplingOptions(temperature: 1, topK: 1, seed: 3)
        for _ in 0..<10 { XCTAssertEqual(LogitsProcessors.choose([0, 1, 3, 2], seen: [], options: options, random: &random), 2) }
        // draws follow the probabilities
        var counts = [0, 0]
        for _ in 0..<10_000 { counts[LogitsProcessors.sample([0.25, 0.75], random: &random)] += 1 }
        XCTAssertEqual(Double(counts[1]) / 10_000, 0.75, accuracy: 0.02)
    }
}
