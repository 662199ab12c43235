import Foundation
import XCTest
@testable import Swiftlet

/// Encoding throughput, run only on demand (no timing assertions):
///   TOKENIZER_BENCH_TEXT=/path/to/text.txt swift test -c release -Xswiftc -enable-testing --filter TokenizerBenchmark
/// Encodes the file line by line (no special tokens) with every fixture tokenizer and prints tokens/s.
final class TokenizerBenchmarkTests: XCTestCase {
    func testEncodeThroughput() throws {
        guard let path = ProcessInfo.processInfo.environment["TOKENIZER_BENCH_TEXT"] else {
            throw XCTSkip("set TOKENIZER_BENCH_TEXT to a text file to measure encoding speed")
        }
        let text = try String(contentsOfFile: path, encoding: .utf8)
        // split on U+000A scalars (a Character split would keep "\r\n" together)
        let lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map { String(String.UnicodeScalarView($0)) }
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        for name in ["byte_bpe", "spm_bpe"] {
            let tok = try Tokenizer(directory: root.appendingPathComponent("tokenizers/\(name)"))
            let start = Date()
            var count = 0
            var idSum = 0
            for line in lines {
                let ids = tok.encode(line, addSpecialTokens: false)
                count += ids.count
                for id in ids { idSum &+= Int(id) }
            }
            let seconds = Date().timeIntervalSince(start)
            print("TokenizerBenchmark \(name): \(text.utf8.count) bytes, \(lines.count) lines, \(count) tokens, id sum \(idSum), "
                + String(format: "%.2f s, %.2f Mtok/s", seconds, Double(count) / seconds / 1e6))
        }
    }
}
