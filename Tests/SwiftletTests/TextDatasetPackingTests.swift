import Foundation
import XCTest
@testable import Swiftlet

/// Packing invariants and the seeded eval split.
final class TextDatasetPackingTests: XCTestCase {
    func randomExamples(_ n: Int, seed: UInt64, maxLength: Int) -> [Example] {
        var rng = SplitMix64(seed: seed)
        var next: Int32 = 1
        return (0..<n).map { _ in
            let len = Int(rng.next() % UInt64(maxLength)) + 1
            let ids = (0..<len).map { _ -> Int32 in defer { next += 1 }; return next }
            let labels = ids.map { Int(rng.next() % 3) == 0 ? Batch.ignoreIndex : $0 }
            return Example(inputIds: ids, labels: labels)
        }
    }

    func testPackedRowsKeepEveryTokenOnceAndBoundaries() {
        let seq = 32
        let examples = randomExamples(200, seed: 7, maxLength: 40)
        let batch = Batch.packed(examples, columns: seq)
        XCTAssertEqual(batch.columns, seq)
        XCTAssertEqual(batch.tokens.count, batch.rows * seq)
        // every token of every (truncated) example exactly once
        let expected = examples.flatMap { $0.inputIds.prefix(seq) }
        let real = zip(batch.tokens, batch.sequenceIds).filter { $0.1 >= 0 }.map(\.0)
        XCTAssertEqual(real.sorted(), expected.sorted())
        XCTAssertEqual(Set(real).count, real.count)
        let byFirst = Dictionary(uniqueKeysWithValues: examples.map { ($0.inputIds[0], $0) })
        for r in 0..<batch.rows {
            let base = r * seq
            var c = 0
            while c < seq && batch.sequenceIds[base + c] >= 0 {
                let e = byFirst[batch.tokens[base + c]]!
                let n = min(e.inputIds.count, seq)
                for t in 0..<n {
                    XCTAssertEqual(batch.tokens[base + c + t], e.inputIds[t])
                    XCTAssertEqual(batch.positions[base + c + t], Int32(t))
                    XCTAssertEqual(batch.sequenceIds[base + c + t], batch.sequenceIds[base + c])
                    // targets are the next label inside the example, never across the boundary
                    XCTAssertEqual(batch.targets[base + c + t], t + 1 < n ? e.labels![t + 1] : Batch.ignoreIndex)
                }
                c += n
            }
            for t in c..<seq {
                XCTAssertEqual(batch.sequenceIds[base + t], -1)
                XCTAssertEqual(batch.targets[base + t], Batch.ignoreIndex)
            }
        }
        // BFD is near-optimal: at most 11/9 of the lower bound (+1)
        let lower = (expected.count + seq - 1) / seq
        XCTAssertGreaterThanOrEqual(batch.rows, lower)
        XCTAssertLessThanOrEqual(batch.rows, lower * 11 / 9 + 1)
    }

    func testBFDWorkedExample() {
        // TRL's docstring example: lengths [5, 2, 3, 1] at seq_length 4 → [[0 (cut to 4)], [2, 3], [1]]
        XCTAssertEqual(Packing.bestFitDecreasing(lengths: [5, 2, 3, 1], seqLength: 4), [[0], [2, 3], [1]])
        XCTAssertEqual(Packing.bestFitDecreasing(lengths: [3, 3, 2, 2, 0], seqLength: 5), [[0, 2], [1, 3]])
    }

    func testPaddingIsDropped() {
        let e = Example(inputIds: [5, 6, 0, 0], labels: [5, 6, -100, -100], attentionMask: [1, 1, 0, 0])
        let rows = Packing.pack([e, Example(inputIds: [7])], seqLength: 4)
        XCTAssertEqual(rows.map { $0.flatMap(\.inputIds) }, [[5, 6, 7]])
    }

    func testEvalSplitIsDeterministic() {
        let items = Array(0..<100)
        let a = DatasetSplit.split(items, evalFraction: 0.1, seed: 3)
        let b = DatasetSplit.split(items, evalFraction: 0.1, seed: 3)
        let c = DatasetSplit.split(items, evalFraction: 0.1, seed: 4)
        XCTAssertEqual(a.eval, b.eval); XCTAssertEqual(a.train, b.train)
        XCTAssertNotEqual(a.eval, c.eval)
        XCTAssertEqual(a.eval.count, 10)
        XCTAssertEqual((a.train + a.eval).sorted(), items)
        XCTAssertEqual(a.train, a.train.sorted())
        XCTAssertEqual(DatasetSplit.split([1], evalFraction: 0.5, seed: 1).eval, [])
        XCTAssertEqual(DatasetSplit.split([1, 2], evalFraction: 0.01, seed: 1).eval.count, 1)
    }

    func testLoadSplitsWithEvalFile() throws {
        let tok = try TextDatasetTRLTests.tokenizer("byte_bpe")
        let ds = try TextDatasetTRLTests.datasets()
        let (train, eval) = try TextDataset.loadSplits(url: ds.appendingPathComponent("text.jsonl"),
                                                       evalURL: ds.appendingPathComponent("text.csv"), tokenizer: tok,
                                                       options: DatasetOptions(skipBadRows: true))
        XCTAssertEqual(train.examples.count, 5); XCTAssertEqual(eval.count, 3)
        let (t2, e2) = try TextDataset.loadSplits(url: ds.appendingPathComponent("text.jsonl"), evalFraction: 0.4, seed: 1, tokenizer: tok)
        XCTAssertEqual(t2.examples.count, 3); XCTAssertEqual(e2.count, 2)
    }
}
