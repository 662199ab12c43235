import XCTest
@testable import Swiftlet

/// Generation from a 4-bit base (`--load-in-4bit`): greedy tokens and logits equal those of the
/// dense model whose weights are the NF4 weights dequantized, and differ from the 16-bit original's
/// logits (so the check sees the quantization, and would see a generation path that skipped it).
final class NF4GenerationTests: XCTestCase {
    func testGreedyFromNF4BaseEqualsTheDequantizedDenseModel() throws {
        let directory = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
            .appendingPathComponent("llama_gqa")
        let cpu = CPUBackend()
        func load(loadIn4bit: Bool) throws -> LlamaModel {
            let model = try LlamaModel.load(directory: directory, on: cpu, loadIn4bit: loadIn4bit)
            _ = try PEFTAdapter.load(directory: directory.appendingPathComponent("adapter"), into: model)
            return model
        }
        let quantized = try load(loadIn4bit: true), original = try load(loadIn4bit: false)
        let dequantized = try load(loadIn4bit: false)
        for i in dequantized.layers.indices {
            for target in LoRAConfig.Target.allCases {
                guard let linear = quantized.layers[i][target] else { continue }  // a name this family lacks
                guard case let .nf4(q) = linear.weight else {
                    return XCTFail("layer \(i) \(target) is not NF4 after --load-in-4bit")
                }
                let w = try cpu.zeros(q.shape, .f32)
                cpu.dequantizeNF4(q, into: w)
                dequantized.layers[i][target]!.weight = .dense(w)
            }
        }
        let prompts: [[Int32]] = [[5, 17, 99, 3, 42, 8, 9], [7, 8, 9]]
        let fromNF4 = try Generator(model: quantized, eosTokenIds: []).generate(prompts: prompts, maxNewTokens: 10)
        let fromDense = try Generator(model: dequantized, eosTokenIds: []).generate(prompts: prompts, maxNewTokens: 10)
        XCTAssertEqual(fromNF4.tokens, fromDense.tokens)

        // Each cached step's logits, not only the argmax: the same weights give the same numbers.
        let caches = try [quantized, dequantized, original].map { try KVCache(model: $0, rows: 1, capacity: 16) }
        var tokens: [Int32] = prompts[0]
        var positions = (0..<tokens.count).map(Int32.init)
        for _ in 0..<4 {
            let valid = [Bool](repeating: true, count: tokens.count)
            let a = try quantized.decodeStep(tokens: tokens, positions: positions, valid: valid, cache: caches[0])
            let b = try dequantized.decodeStep(tokens: tokens, positions: positions, valid: valid, cache: caches[1])
            let c = try original.decodeStep(tokens: tokens, positions: positions, valid: valid, cache: caches[2])
            XCTAssertLessThanOrEqual(zip(a, b).map { abs($0 - $1) }.max()!, 1e-6)
            XCTAssertGreaterThan(zip(a, c).map { abs($0 - $1) }.max()!, 1e-4, "4-bit logits equal the 16-bit model's")
            tokens = [Int32(LogitsProcessors.argmax(a))]
            positions = [positions.last! + 1]
        }
    }
}
