import XCTest
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
@testable import Swiftlet

private func stepLog(_ step: Int, loss: Double, total: Int = 100, tokens: Int = 512, seconds: Double = 0.5) -> Trainer.StepLog {
    Trainer.StepLog(step: step, maxSteps: total, loss: loss, learningRate: 2e-4, gradNorm: 0.75,
                    tokens: tokens, targetTokens: tokens / 2, seconds: seconds, epoch: Double(step) / 10)
}

private func tempDir() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Collects element names and attributes; fails on malformed XML.
private final class SVGCollector: NSObject, XMLParserDelegate {
    var elements: [(name: String, attributes: [String: String])] = []
    var texts: [String] = []
    private var current = ""
    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String]) {
        elements.append((name, attributes)); current = ""
    }
    func parser(_ parser: XMLParser, foundCharacters string: String) { current += string }
    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        if name == "text" { texts.append(current) }
        current = ""
    }
}

final class MetricsTests: XCTestCase {
    // MARK: MetricsLog

    func testMetricsLogRoundTripKeysAndResume() throws {
        let dir = try tempDir()
        let url = dir.appendingPathComponent("output/metrics.jsonl")
        do {
            let log = try MetricsLog(url: url)
            try log.log(stepLog(1, loss: 2.5), memoryBytes: 3 * 1_073_741_824)
            try log.log(stepLog(2, loss: 1.5), meanTokenAccuracy: 0.25)
            try log.logEval(step: 2, epoch: 0.2, Evaluation(loss: 1.0, tokens: 99))
        }
        var entries = try MetricsLog.read(url: url)
        XCTAssertEqual(entries.count, 3)
        let first = entries[0]
        XCTAssertEqual(Set(first.keys), ["step", "epoch", "loss", "grad_norm", "learning_rate", "num_tokens",
                                         "tokens_per_second", "memory_gib"])
        XCTAssertEqual(first["step"] as? Int, 1)
        XCTAssertEqual(first["loss"] as? Double, 2.5)
        XCTAssertEqual(first["grad_norm"] as? Double, 0.75)
        XCTAssertEqual((first["learning_rate"] as? Double)!, 2e-4, accuracy: 1e-10)
        XCTAssertEqual(first["num_tokens"] as? Int, 512)
        XCTAssertEqual(first["tokens_per_second"] as? Double, 1024)
        XCTAssertEqual(first["memory_gib"] as? Double, 3)
        XCTAssertEqual(first["epoch"] as? Double, 0.1)
        XCTAssertNil(first["mean_token_accuracy"])
        XCTAssertEqual(entries[1]["num_tokens"] as? Int, 1024)
        XCTAssertEqual(entries[1]["mean_token_accuracy"] as? Double, 0.25)
        XCTAssertNil(entries[1]["memory_gib"])
        XCTAssertEqual(Set(entries[2].keys), ["step", "epoch", "eval_loss", "eval_perplexity", "eval_num_tokens"])
        XCTAssertEqual(entries[2]["eval_loss"] as? Double, 1.0)
        XCTAssertEqual((entries[2]["eval_perplexity"] as? Double)!, M_E, accuracy: 1e-12)
        XCTAssertEqual(entries[2]["eval_num_tokens"] as? Int, 99)

        // Simulate a crash mid-line, then resume: the partial line is skipped and totals continue.
        let h = try FileHandle(forWritingTo: url)
        try h.seekToEnd(); try h.write(contentsOf: Data("{\"step\": 3, \"lo".utf8)); try h.close()
        do {
            let log = try MetricsLog(url: url)
            XCTAssertEqual(log.numTokens, 1024)
            try log.log(stepLog(3, loss: 0.5, tokens: 100))
            try log.log(stepLog(4, loss: .nan))
            try log.logSummary(runtime: 2, steps: 2, tokens: 612)
        }
        entries = try MetricsLog.read(url: url)
        XCTAssertEqual(entries.count, 6)
        XCTAssertEqual(entries[3]["step"] as? Int, 3)
        XCTAssertEqual(entries[3]["num_tokens"] as? Int, 1124)
        XCTAssertTrue(entries[4]["loss"] is NSNull, "NaN must be written as null (valid JSON)")
        let summary = entries[5]
        XCTAssertEqual(Set(summary.keys), ["step", "train_runtime", "train_loss", "train_steps_per_second",
                                           "train_tokens_per_second"])
        XCTAssertEqual(summary["step"] as? Int, 4)
        XCTAssertEqual((summary["train_loss"] as? Double)!, (2.5 + 1.5 + 0.5) / 3, accuracy: 1e-12)
        XCTAssertEqual(summary["train_steps_per_second"] as? Double, 1)
        XCTAssertEqual(summary["train_tokens_per_second"] as? Double, 306)
        // One object per line, each line valid JSON on its own.
        let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 7)  // 6 entries + the partial one
        XCTAssertTrue(lines[0].hasPrefix("{\"step\": 1, \"epoch\": 0.1, \"loss\": 2.5,"), String(lines[0]))
    }

    // MARK: LossCurve

    private func parseSVG(_ svg: String, file: StaticString = #filePath, line: UInt = #line) -> SVGCollector {
        let parser = XMLParser(data: Data(svg.utf8))
        let collector = SVGCollector()
        parser.delegate = collector
        XCTAssertTrue(parser.parse(), "SVG is not well-formed XML: \(String(describing: parser.parserError))",
                      file: file, line: line)
        return collector
    }

    private func polylinePoints(_ c: SVGCollector, cls: String) -> [(Double, Double)] {
        guard let poly = c.elements.first(where: { $0.name == "polyline" && $0.attributes["class"] == cls }),
              let pts = poly.attributes["points"] else { return [] }
        return pts.split(separator: " ").map {
            let xy = $0.split(separator: ",").map { Double($0)! }
            return (xy[0], xy[1])
        }
    }

    func testLossCurveWellFormedAndPointCounts() throws {
        var train = (1...50).map { (step: $0, loss: 3.0 * exp(-Double($0) / 15) + 0.4) }
        train[10].loss = .nan; train[20].loss = .infinity
        let eval = [(step: 10, loss: 1.9), (step: 30, loss: 0.9), (step: 50, loss: -.infinity), (step: 50, loss: 0.6)]
        let svg = LossCurve.svg(train: train, eval: eval, title: "Run <a> & \"b\"")
        let c = parseSVG(svg)
        XCTAssertEqual(c.elements.first?.name, "svg")
        XCTAssertEqual(c.elements.first?.attributes["xmlns"], "http://www.w3.org/2000/svg")
        XCTAssertFalse(svg.contains("<script"))
        XCTAssertFalse(svg.contains("http") && svg.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "").contains("http"))
        let trainPts = polylinePoints(c, cls: "train")
        XCTAssertEqual(trainPts.count, 48)
        XCTAssertEqual(polylinePoints(c, cls: "eval").count, 3)
        XCTAssertEqual(c.elements.filter { $0.attributes["class"] == "eval-point" }.count, 3)
        XCTAssertTrue(c.texts.contains("Run <a> & \"b\""))
        XCTAssertTrue(c.texts.contains("train loss") && c.texts.contains("eval loss"))
        // Points inside the plot, x increasing, decreasing loss drawn going down (y grows).
        for (x, y) in trainPts {
            XCTAssertTrue(x >= LossCurve.left && x <= LossCurve.width - LossCurve.right, "x \(x)")
            XCTAssertTrue(y >= LossCurve.top && y <= LossCurve.height - LossCurve.bottom, "y \(y)")
        }
        XCTAssertTrue(zip(trainPts, trainPts.dropFirst()).allSatisfy { $0.0 < $1.0 && $0.1 <= $1.1 })

        // Tick labels: round numbers that cover the data.
        let yLabels = tickLabels(c, group: svg, axis: "y")
        let yValues = yLabels.compactMap(Double.init)
        XCTAssertEqual(yValues.count, yLabels.count, "\(yLabels)")
        XCTAssertGreaterThanOrEqual(yValues.count, 3)
        XCTAssertLessThanOrEqual(yValues.min()!, 0.4 + 3 * exp(-50.0 / 15))
        XCTAssertGreaterThanOrEqual(yValues.max()!, 3 * exp(-1.0 / 15) + 0.4)
        let steps = zip(yValues, yValues.dropFirst()).map { $1 - $0 }
        for s in steps { XCTAssertEqual(s, steps[0], accuracy: 1e-9) }
        XCTAssertTrue([0.1, 0.2, 0.25, 0.5, 1.0].contains { abs($0 - steps[0]) < 1e-9 }, "\(steps[0])")
        XCTAssertTrue(yLabels.allSatisfy { $0.count <= 5 }, "\(yLabels)")
        let xValues = tickLabels(c, group: svg, axis: "x").compactMap(Int.init)
        XCTAssertTrue(xValues.contains(50) || xValues.max()! >= 50, "\(xValues)")
        XCTAssertTrue(xValues.allSatisfy { $0 % 5 == 0 }, "\(xValues)")
    }

    /// Labels of `class="tick"` texts inside the given axis group.
    private func tickLabels(_ c: SVGCollector, group svg: String, axis: String) -> [String] {
        guard let start = svg.range(of: "<g class=\"\(axis)-axis\""),
              let end = svg.range(of: "</g>", range: start.upperBound..<svg.endIndex) else { return [] }
        let chunk = String(svg[start.lowerBound..<end.upperBound])
        return parseSVG("<svg>" + chunk + "</svg>").texts
    }

    func testNiceTicks() {
        XCTAssertEqual(LossCurve.niceTicks(0.43, 2.83, count: 6, integers: false), [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
        XCTAssertEqual(LossCurve.niceTicks(1, 50, count: 8, integers: true), [0, 10, 20, 30, 40, 50])
        XCTAssertEqual(LossCurve.niceTicks(0, 3, count: 8, integers: true), [0, 1, 2, 3])
        let t = LossCurve.niceTicks(0.1, 0.7, count: 6, integers: false)
        XCTAssertEqual(t.map { String(format: "%g", $0) }, ["0", "0.2", "0.4", "0.6", "0.8"])
    }

    func testLossCurveEdgeCases() throws {
        // One point, flat curve, nothing finite, log scale: all well-formed with the right counts.
        let one = parseSVG(LossCurve.svg(train: [(step: 7, loss: 1.25)], eval: [], title: "one"))
        XCTAssertEqual(polylinePoints(one, cls: "train").count, 1)
        XCTAssertEqual(one.elements.filter { $0.attributes["class"] == "train-point" }.count, 1)

        let flatSVG = LossCurve.svg(train: (1...10).map { (step: $0, loss: 2.0) }, eval: [], title: "flat")
        let flat = parseSVG(flatSVG)
        let ys = Set(polylinePoints(flat, cls: "train").map(\.1))
        XCTAssertEqual(ys.count, 1)
        XCTAssertTrue(ys.allSatisfy { $0.isFinite && $0 > LossCurve.top && $0 < LossCurve.height - LossCurve.bottom })
        XCTAssertFalse(flatSVG.contains("nan") || flatSVG.contains("inf"))

        let none = LossCurve.svg(train: [(step: 1, loss: .nan)], eval: [], title: "none")
        XCTAssertTrue(parseSVG(none).texts.contains("no finite losses"))
        XCTAssertFalse(none.contains("nan"))

        let logSVG = LossCurve.svg(train: [(1, 10.0), (2, 1.0), (3, 0.1), (4, 0.0)], eval: [], title: "log", logScale: true)
        let log = parseSVG(logSVG)
        XCTAssertEqual(polylinePoints(log, cls: "train").count, 3)  // 0 is skipped on a log scale
        XCTAssertEqual(tickLabels(log, group: logSVG, axis: "y"), ["0.1", "0.2", "0.5", "1", "2", "5", "10"])
        let logYs = polylinePoints(log, cls: "train").map(\.1)
        XCTAssertEqual(logYs[1] - logYs[0], logYs[2] - logYs[1], accuracy: 0.2)  // equal decades
        let narrowSVG = LossCurve.svg(train: [(1, 3.0), (2, 2.0)], eval: [], title: "narrow", logScale: true)
        let narrowLabels = tickLabels(parseSVG(narrowSVG), group: narrowSVG, axis: "y").compactMap(Double.init)
        XCTAssertGreaterThanOrEqual(narrowLabels.count, 4, "\(narrowLabels)")
        XCTAssertTrue(narrowLabels.min()! <= 2 && narrowLabels.max()! >= 3, "\(narrowLabels)")

        // Atomic write leaves only the file.
        let dir = try tempDir()
        let url = dir.appendingPathComponent("loss.svg")
        try LossCurve.write(to: url, train: [(1, 2.0), (2, 1.0)], eval: [(2, 1.5)], title: "t")
        try LossCurve.write(to: url, train: [(1, 2.0), (2, 1.0), (3, 0.5)], eval: [(2, 1.5)], title: "t")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["loss.svg"])
        XCTAssertEqual(polylinePoints(parseSVG(try String(contentsOf: url, encoding: .utf8)), cls: "train").count, 3)

        // Series from a metrics file.
        let series = LossCurve.series(from: [["step": 1, "loss": 2.0], ["step": 1, "eval_loss": 1.5], ["train_runtime": 3.0]])
        XCTAssertEqual(series.train.map(\.step), [1]); XCTAssertEqual(series.eval.map(\.loss), [1.5])
    }

    // MARK: ProgressDisplay

    func testProgressPlainMode() {
        var out = ""
        let p = ProgressDisplay(total: 10, isTerminal: false, every: 3) { out += $0 }
        for s in 1...10 { p.update(stepLog(s, loss: 2, total: 10)) }
        p.message("eval: loss 1.0")
        p.finish()
        let lines = out.split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertEqual(lines, ["step 3/10  loss 2.0000  lr 2.00e-04  grad_norm 0.750  tok/s 1024",
                               "step 6/10  loss 2.0000  lr 2.00e-04  grad_norm 0.750  tok/s 1024",
                               "step 9/10  loss 2.0000  lr 2.00e-04  grad_norm 0.750  tok/s 1024",
                               "step 10/10  loss 2.0000  lr 2.00e-04  grad_norm 0.750  tok/s 1024",
                               "eval: loss 1.0", ""])
        XCTAssertFalse(out.contains("\r"))

        out = ""
        let q = ProgressDisplay(total: 5, isTerminal: false) { out += $0 }
        for s in 1...4 { q.update(stepLog(s, loss: 1, total: 5), memoryBytes: 1 << 31) }
        q.finish()
        XCTAssertEqual(out.split(separator: "\n").count, 4)  // one per step, the last not repeated
        XCTAssertTrue(out.hasSuffix("mem 2.0 GiB\n"), out)
    }

    func testProgressTerminalMode() {
        var chunks: [String] = []
        let p = ProgressDisplay(total: 100, isTerminal: true, columns: 200) { chunks.append($0) }
        p.update(stepLog(1, loss: 2.5, seconds: 1.0), memoryBytes: 5 * 1_073_741_824)
        p.update(stepLog(2, loss: 2.4, seconds: 3.0), memoryBytes: 5 * 1_073_741_824)
        XCTAssertEqual(chunks.count, 2)
        XCTAssertTrue(chunks[1].hasPrefix("\r\u{1B}[2K"))
        XCTAssertFalse(chunks[1].contains("\n"))
        let line = String(chunks[1].dropFirst(5))
        XCTAssertTrue(line.hasPrefix("  2/100 [>                   ]   2%  loss 2.4000"), line)
        XCTAssertTrue(line.contains("mem 5.0 GiB"), line)
        XCTAssertTrue(line.contains("171 tok/s"), line)
        XCTAssertTrue(line.hasSuffix("ETA 3:16"), line)  // mean of 1 s and 3 s times 98 steps left
        p.message("saved checkpoint")
        XCTAssertEqual(chunks[2], "\r\u{1B}[2K" + "saved checkpoint\n" + line)
        p.update(stepLog(100, loss: 1.0, seconds: 2.0))
        XCTAssertTrue(chunks[3].contains("100/100 [====================] 100%"), chunks[3])
        XCTAssertTrue(chunks[3].hasSuffix("ETA 0:00"), chunks[3])
        p.finish()
        XCTAssertEqual(chunks.last, "\n")

        // Narrow terminals: fields are dropped (grad norm first) so the line never wraps and the
        // ETA stays; a hard cut when even that does not fit.
        var narrow = ""
        let m = ProgressDisplay(total: 100, isTerminal: true, columns: 80) { narrow = $0 }
        m.update(stepLog(50, loss: 1), memoryBytes: 1 << 30)
        XCTAssertEqual(String(narrow.dropFirst(5)),
                       " 50/100 [==========>         ]  50%  loss 1.0000  1024 tok/s  ETA 0:25")  // lr, gnorm, mem dropped
        let n = ProgressDisplay(total: 100, isTerminal: true, columns: 40) { narrow = $0 }
        n.update(stepLog(50, loss: 1))
        XCTAssertEqual(String(narrow.dropFirst(5)), " 50/100 [=====>    ]  50%  loss 1.0000 ")  // 39 columns
        XCTAssertEqual(ProgressDisplay.duration(3723), "1:02:03")
    }

}
