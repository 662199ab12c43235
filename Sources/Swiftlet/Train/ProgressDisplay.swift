import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Training progress on stdout.
///
/// On a terminal: one line redrawn in place (`\r` + clear-line) with step/total, a bar, loss, lr,
/// grad norm, tokens/s, device memory when given and an ETA from a moving average of step times;
/// the line is cut to the terminal width so it never wraps (a wrapped line cannot be redrawn).
/// Otherwise: a plain line every `every` steps (and at the last step), e.g.
/// `step 3/100  loss 2.1234  lr 1.00e-04  grad_norm 0.512  tok/s 1234`.
///
/// Print other output through `message(_:)`, which clears the bar first and redraws it after.
public final class ProgressDisplay {
    public let total: Int
    public let isTerminal: Bool
    public let every: Int
    private let write: (String) -> Void
    private let columns: Int
    /// Step times of the last `window` steps, for the ETA.
    private var stepTimes: [Double] = []
    private let window = 20
    private var barLine: String?
    private var lastPlainStep: Int?
    private var lastLog: (log: Trainer.StepLog, memoryBytes: Int?)?

    public init(total: Int, isTerminal: Bool = isatty(1) != 0, every: Int = 1, columns: Int? = nil,
                write: @escaping (String) -> Void = { FileHandle.standardOutput.write(Data($0.utf8)) }) {
        self.total = total
        self.isTerminal = isTerminal
        self.every = max(1, every)
        self.write = write
        self.columns = columns ?? ProgressDisplay.terminalColumns() ?? 100
    }

    /// Mean of the recent step times (seconds), nil before the first step.
    public var averageStepSeconds: Double? {
        stepTimes.isEmpty ? nil : stepTimes.reduce(0, +) / Double(stepTimes.count)
    }

    public func update(_ log: Trainer.StepLog, memoryBytes: Int? = nil) {
        stepTimes.append(log.seconds)
        if stepTimes.count > window { stepTimes.removeFirst(stepTimes.count - window) }
        lastLog = (log, memoryBytes)
        if isTerminal {
            barLine = terminalLine(log, memoryBytes: memoryBytes)
            write("\r\u{1B}[2K" + barLine!)
        } else if log.step % every == 0 || log.step >= total {
            write(plainLine(log, memoryBytes: memoryBytes) + "\n")
            lastPlainStep = log.step
        }
    }

    /// Prints a line of other output without garbling the bar.
    public func message(_ text: String) {
        if isTerminal, let barLine {
            write("\r\u{1B}[2K" + text + "\n" + barLine)
        } else {
            write(text + "\n")
        }
    }

    /// Ends the bar with a newline (terminal) or prints the last step if it was skipped (plain).
    public func finish() {
        if isTerminal {
            if barLine != nil { write("\n") }
            barLine = nil
        } else if let last = lastLog, lastPlainStep != last.log.step {
            write(plainLine(last.log, memoryBytes: last.memoryBytes) + "\n")
            lastPlainStep = last.log.step
        }
    }

    // MARK: - Formatting

    public func plainLine(_ log: Trainer.StepLog, memoryBytes: Int? = nil) -> String {
        var s = String(format: "step %d/%d  loss %.4f  lr %.2e  grad_norm %.3f  tok/s %.0f",
                       log.step, total, log.loss, log.learningRate, log.gradNorm,
                       Double(log.tokens) / max(log.seconds, 1e-9))
        if let memoryBytes { s += String(format: "  mem %.1f GiB", Double(memoryBytes) / 1_073_741_824) }
        return s
    }

    /// The bar line, fitted to the terminal width: the least useful fields (grad norm, lr, memory,
    /// tokens/s) are dropped first and the bar narrowed, so the ETA stays visible; a hard cut last.
    public func terminalLine(_ log: Trainer.StepLog, memoryBytes: Int? = nil) -> String {
        let fraction = total > 0 ? min(1, max(0, Double(log.step) / Double(total))) : 0
        let width = String(total).count
        let remaining = max(0, total - log.step)
        let eta = "ETA " + ProgressDisplay.duration((averageStepSeconds ?? 0) * Double(remaining))
        // Optional fields in display order, with a drop priority (dropped lowest first).
        var optional: [(text: String, priority: Int)] = [
            (String(format: "lr %.2e", log.learningRate), 1),
            (String(format: "gnorm %.3f", log.gradNorm), 0),
            (ProgressDisplay.compact(Double(log.tokens) / max(log.seconds, 1e-9)) + " tok/s", 3),
        ]
        if let memoryBytes { optional.append((String(format: "mem %.1f GiB", Double(memoryBytes) / 1_073_741_824), 2)) }
        func render(barWidth: Int) -> String {
            let filled = Int((fraction * Double(barWidth)).rounded(.down))
            let bar = String(repeating: "=", count: filled)
                + (filled < barWidth ? ">" + String(repeating: " ", count: barWidth - filled - 1) : "")
            let head = String(format: "%*d/%d [%@] %3.0f%%  loss %.4f", width, log.step, total, bar,
                              fraction * 100, log.loss)
            return ([head] + optional.map(\.text) + [eta]).joined(separator: "  ")
        }
        let limit = max(columns - 1, 0)
        var s = render(barWidth: 20)
        while s.count > limit, let drop = optional.indices.min(by: { optional[$0].priority < optional[$1].priority }) {
            optional.remove(at: drop)
            s = render(barWidth: 20)
        }
        if s.count > limit { s = render(barWidth: 10) }
        if s.count > limit { s = String(s.prefix(limit)) }
        return s
    }

    /// `0:42`, `12:03`, `1:02:03`.
    public static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let t = Int(seconds.rounded())
        let h = t / 3600, m = (t % 3600) / 60, s = t % 60
        return h > 0 ? String(format: "%d:%02d:%02d", h, m, s) : String(format: "%d:%02d", m, s)
    }

    /// `850`, `12.3k`, `1.2M`.
    static func compact(_ v: Double) -> String {
        guard v.isFinite else { return "?" }
        if v >= 1e6 { return String(format: "%.1fM", v / 1e6) }
        if v >= 1e4 { return String(format: "%.1fk", v / 1e3) }
        return String(format: "%.0f", v)
    }

    static func terminalColumns() -> Int? {
        var size = winsize()
        #if canImport(Glibc)
        let request = UInt(TIOCGWINSZ)
        #else
        let request = TIOCGWINSZ
        #endif
        if ioctl(1, request, &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        if let c = ProcessInfo.processInfo.environment["COLUMNS"].flatMap(Int.init), c > 0 { return c }
        return nil
    }
}
