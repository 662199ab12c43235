import Foundation

/// A self-contained SVG loss plot (no scripts, no external fonts or images): train loss per step
/// as a polyline, eval loss as a dashed line with points, axes with round tick labels, a title
/// and a legend. Non-finite losses (and non-positive ones on a log scale) are skipped.
public enum LossCurve {
    public static let width = 800.0
    public static let height = 480.0
    static let left = 70.0, right = 24.0, top = 44.0, bottom = 52.0
    static let trainColor = "#1f77b4", evalColor = "#d62728"

    public static func svg(train: [(step: Int, loss: Double)], eval: [(step: Int, loss: Double)] = [],
                           title: String = "Loss", logScale: Bool = false) -> String {
        func keep(_ p: (step: Int, loss: Double)) -> Bool { p.loss.isFinite && (!logScale || p.loss > 0) }
        let trainPoints = train.filter(keep), evalPoints = eval.filter(keep)
        let all = trainPoints + evalPoints
        let plotW = width - left - right, plotH = height - top - bottom

        // X range: steps, padded when there is a single step.
        var xMin = Double(all.map(\.step).min() ?? 0), xMax = Double(all.map(\.step).max() ?? 1)
        if xMax <= xMin { xMin -= 1; xMax += 1 }
        let xTicks = niceTicks(xMin, xMax, count: 8, integers: true)
        xMin = min(xMin, xTicks.first ?? xMin); xMax = max(xMax, xTicks.last ?? xMax)

        // Y range in plot space (log10 of the loss on a log scale).
        let values = all.map { logScale ? log10($0.loss) : $0.loss }
        var yMin = values.min() ?? 0, yMax = values.max() ?? 1
        if yMax - yMin < 1e-12 {
            let pad = max(abs(yMin) * 0.05, logScale ? 0.1 : 1e-3)
            yMin -= pad; yMax += pad
        }
        let yTicks: [Double]
        if logScale {
            yTicks = logTicks(yMin, yMax)
        } else {
            yTicks = niceTicks(yMin, yMax, count: 6, integers: false)
            yMin = min(yMin, yTicks.first ?? yMin); yMax = max(yMax, yTicks.last ?? yMax)
        }
        if logScale, let lo = yTicks.first, let hi = yTicks.last { yMin = min(yMin, lo); yMax = max(yMax, hi) }

        func px(_ step: Double) -> Double { left + (step - xMin) / (xMax - xMin) * plotW }
        func py(_ value: Double) -> Double { top + (1 - (value - yMin) / (yMax - yMin)) * plotH }
        func point(_ p: (step: Int, loss: Double)) -> (Double, Double) {
            (px(Double(p.step)), py(logScale ? log10(p.loss) : p.loss))
        }

        var s = """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(f(width))" height="\(f(height))" \
        viewBox="0 0 \(f(width)) \(f(height))" font-family="sans-serif" font-size="12">
        <rect x="0" y="0" width="\(f(width))" height="\(f(height))" fill="white"/>
        <text x="\(f(width / 2))" y="26" text-anchor="middle" font-size="16" font-weight="bold">\(escape(title))</text>

        """
        // Grid, ticks and labels.
        let yDecimals = logScale ? 0 : decimals(yTicks)
        s += "<g class=\"y-axis\" stroke=\"#ddd\">\n"
        for t in yTicks {
            let y = py(t)
            let label = logScale ? formatLog(pow(10, t)) : String(format: "%.\(yDecimals)f", t)
            s += "<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(left + plotW))\" y2=\"\(f(y))\"/>"
            s += "<text class=\"tick\" x=\"\(f(left - 8))\" y=\"\(f(y + 4))\" text-anchor=\"end\" stroke=\"none\" fill=\"#333\">\(label)</text>\n"
        }
        s += "</g>\n<g class=\"x-axis\" stroke=\"#ddd\">\n"
        for t in xTicks {
            let x = px(t)
            s += "<line x1=\"\(f(x))\" y1=\"\(f(top))\" x2=\"\(f(x))\" y2=\"\(f(top + plotH))\"/>"
            s += "<text class=\"tick\" x=\"\(f(x))\" y=\"\(f(top + plotH + 18))\" text-anchor=\"middle\" stroke=\"none\" fill=\"#333\">\(Int(t.rounded()))</text>\n"
        }
        s += "</g>\n"
        s += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#333\"/>\n"
        s += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 10))\" text-anchor=\"middle\">step</text>\n"
        s += "<text x=\"16\" y=\"\(f(top + plotH / 2))\" text-anchor=\"middle\" transform=\"rotate(-90 16 \(f(top + plotH / 2)))\">loss\(logScale ? " (log)" : "")</text>\n"

        // Curves.
        func polyline(_ pts: [(step: Int, loss: Double)], cls: String, color: String, dash: Bool) -> String {
            let coords = pts.map(point).map { "\(f($0.0)),\(f($0.1))" }.joined(separator: " ")
            return "<polyline class=\"\(cls)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" stroke-linejoin=\"round\"\(dash ? " stroke-dasharray=\"6 4\"" : "") points=\"\(coords)\"/>\n"
        }
        if !trainPoints.isEmpty {
            s += polyline(trainPoints, cls: "train", color: trainColor, dash: false)
            if trainPoints.count == 1 {
                let (x, y) = point(trainPoints[0])
                s += "<circle class=\"train-point\" cx=\"\(f(x))\" cy=\"\(f(y))\" r=\"3.5\" fill=\"\(trainColor)\"/>\n"
            }
        }
        if !evalPoints.isEmpty {
            s += polyline(evalPoints, cls: "eval", color: evalColor, dash: true)
            for p in evalPoints {
                let (x, y) = point(p)
                s += "<circle class=\"eval-point\" cx=\"\(f(x))\" cy=\"\(f(y))\" r=\"4\" fill=\"\(evalColor)\"/>\n"
            }
        }
        if all.isEmpty {
            s += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(top + plotH / 2))\" text-anchor=\"middle\" fill=\"#999\">no finite losses</text>\n"
        }

        // Legend (top right, inside the plot).
        var entries: [(String, String, Bool)] = []
        if !trainPoints.isEmpty { entries.append(("train loss", trainColor, false)) }
        if !evalPoints.isEmpty { entries.append(("eval loss", evalColor, true)) }
        if !entries.isEmpty {
            let lx = left + plotW - 130, ly = top + 10
            s += "<g class=\"legend\">\n<rect x=\"\(f(lx))\" y=\"\(f(ly))\" width=\"120\" height=\"\(f(Double(entries.count) * 20 + 8))\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#999\"/>\n"
            for (i, (name, color, dash)) in entries.enumerated() {
                let y = ly + 16 + Double(i) * 20
                s += "<line x1=\"\(f(lx + 8))\" y1=\"\(f(y - 4))\" x2=\"\(f(lx + 36))\" y2=\"\(f(y - 4))\" stroke=\"\(color)\" stroke-width=\"2\"\(dash ? " stroke-dasharray=\"6 4\"" : "")/>"
                s += "<text x=\"\(f(lx + 44))\" y=\"\(f(y))\">\(name)</text>\n"
            }
            s += "</g>\n"
        }
        s += "</svg>\n"
        return s
    }

    /// Writes the SVG atomically (temporary file, then rename).
    public static func write(to url: URL, train: [(step: Int, loss: Double)], eval: [(step: Int, loss: Double)] = [],
                             title: String = "Loss", logScale: Bool = false) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let data = Data(svg(train: train, eval: eval, title: title, logScale: logScale).utf8)
        let tmp = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).\(ProcessInfo.processInfo.processIdentifier).tmp")
        try data.write(to: tmp)
        if rename(tmp.path, url.path) != 0 {
            let code = errno
            try? FileManager.default.removeItem(at: tmp)
            throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
        }
    }

    /// Train and eval losses of a `metrics.jsonl` (see `MetricsLog`).
    public static func series(from entries: [[String: Any]]) -> (train: [(step: Int, loss: Double)], eval: [(step: Int, loss: Double)]) {
        var train: [Int: Double] = [:], eval: [Int: Double] = [:]
        for e in entries {
            guard let step = (e["step"] as? NSNumber)?.intValue else { continue }
            if let l = (e["loss"] as? NSNumber)?.doubleValue { train[step] = l }
            if let l = (e["eval_loss"] as? NSNumber)?.doubleValue { eval[step] = l }
        }
        return (train.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
                eval.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
    }

    // MARK: - Ticks

    /// Round ticks (1, 2, 2.5 or 5 times a power of ten) covering [lo, hi].
    public static func niceTicks(_ lo: Double, _ hi: Double, count: Int, integers: Bool) -> [Double] {
        guard lo.isFinite, hi.isFinite, hi > lo else { return [lo] }
        let raw = (hi - lo) / Double(max(count - 1, 1))
        let mag = pow(10, floor(log10(raw)))
        var step = [1.0, 2, 2.5, 5, 10].map { $0 * mag }.first { $0 >= raw * 0.999 } ?? 10 * mag
        if integers { step = max(1, step.rounded()) }
        let first = floor(lo / step + 1e-9) * step, last = ceil(hi / step - 1e-9) * step
        let n = Int(((last - first) / step).rounded())
        // Snap to the step's grid so labels print cleanly (no 0.30000000000000004).
        return (0...n).map { (Double($0) * step + first) }.map { ($0 / step).rounded() * step }
    }

    /// Ticks in log10 space: decades over more than three decades, else 1-2-5 ticks from the
    /// last one at or below `lo` to the first at or above `hi`; within a narrow range (fewer
    /// than four such ticks), round linear ticks placed on the log axis.
    static func logTicks(_ lo: Double, _ hi: Double) -> [Double] {
        let a = floor(lo), b = ceil(hi)
        if b - a > 3 { return stride(from: a, through: b, by: 1).map { $0 } }
        let candidates = stride(from: a, through: b, by: 1).flatMap { d in [1.0, 2, 5].map { d + log10($0) } }
        let start = candidates.last { $0 <= lo + 1e-9 } ?? a
        let end = candidates.first { $0 >= hi - 1e-9 } ?? b
        let ticks = candidates.filter { $0 >= start - 1e-9 && $0 <= end + 1e-9 }
        if ticks.count >= 4 { return ticks }
        return niceTicks(pow(10, lo), pow(10, hi), count: 5, integers: false).filter { $0 > 0 }.map(log10)
    }

    static func decimals(_ ticks: [Double]) -> Int {
        guard ticks.count > 1 else { return 3 }
        let step = abs(ticks[1] - ticks[0])
        return max(0, min(8, Int(ceil(-log10(step) - 1e-9)) + (step / pow(10, floor(log10(step))) == 2.5 ? 1 : 0)))
    }

    static func formatLog(_ v: Double) -> String {
        if v >= 0.01 && v < 1e5 { return String(format: "%g", v) }
        return String(format: "%.0e", v)
    }

    static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
