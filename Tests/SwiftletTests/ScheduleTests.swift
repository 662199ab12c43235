import XCTest
@testable import Swiftlet

/// Reference values come from the real transformers.get_scheduler (LambdaLR) and
/// TrainingArguments.get_warmup_steps — regenerate with
/// `python scripts/make_optimizer_fixtures.py` and paste the output.
enum HFScheduleFixtures {
    static let baseLR = 1e-3
    static let warmup = 3
    static let total = 10
    /// `scheduler.get_last_lr()[0]` read before each of 10 `scheduler.step()` calls: the lr the
    /// optimizer used at 0-based update 0...9 (warmup 3, total 10, base lr 1e-3).
    static let lrs: [String: [Double]] = [
        "constant": [0.001, 0.001, 0.001, 0.001, 0.001, 0.001, 0.001, 0.001, 0.001, 0.001],
        "constant_with_warmup": [0.0, 0.0003333333333333333, 0.0006666666666666666, 0.001, 0.001, 0.001, 0.001, 0.001, 0.001, 0.001],
        "linear": [0.0, 0.0003333333333333333, 0.0006666666666666666, 0.001, 0.0008571428571428571, 0.0007142857142857143, 0.0005714285714285714, 0.00042857142857142855, 0.0002857142857142857, 0.00014285714285714284],
        "cosine": [0.0, 0.0003333333333333333, 0.0006666666666666666, 0.001, 0.0009504844339512095, 0.0008117449009293668, 0.0006112604669781572, 0.00038873953302184284, 0.00018825509907063325, 4.9515566048790485e-05],
    ]
    static let warmupCases: [(ratio: Double, total: Int, steps: Int)] = [(0.1, 30, 3), (0.03, 1000, 30), (0.05, 7, 1), (0.0, 10, 0), (0.1, 10, 1), (0.07, 100, 8)]
}

final class ScheduleTests: XCTestCase {
    typealias H = HFScheduleFixtures

    func testSchedulesMatchTransformers() {
        XCTAssertEqual(Set(H.lrs.keys), Set(LRScheduler.allCases.map(\.rawValue)))
        for kind in LRScheduler.allCases {
            let expected = H.lrs[kind.rawValue]!
            let s = LRSchedule(kind: kind, baseLR: H.baseLR, warmupSteps: H.warmup, totalSteps: H.total)
            for (step, e) in expected.enumerated() {
                let got = s.lr(atStep: step)
                let want = Float(e)
                XCTAssert(abs(got - want) <= 1e-7 * abs(want),
                          "\(kind.rawValue) step \(step): got \(got), transformers \(want)")
                // The Double multiplier reproduces Python's arithmetic.
                XCTAssertEqual(H.baseLR * s.multiplier(atStep: step), e, accuracy: 1e-15,
                               "\(kind.rawValue) step \(step) multiplier")
            }
        }
    }

    func testFirstUpdateHasZeroLRWithWarmup() {
        for kind in LRScheduler.allCases where kind != .constant {
            XCTAssertEqual(LRSchedule(kind: kind, baseLR: 5e-5, warmupSteps: 2, totalSteps: 8).lr(atStep: 0), 0)
        }
        XCTAssertEqual(LRSchedule(kind: .linear, baseLR: 5e-5, warmupSteps: 0, totalSteps: 8).lr(atStep: 0), 5e-5)
    }

    func testPastTheEnd() {
        let linear = LRSchedule(kind: .linear, baseLR: 1, warmupSteps: 3, totalSteps: 10)
        XCTAssertEqual(linear.lr(atStep: 10), 0)
        XCTAssertEqual(linear.lr(atStep: 25), 0)
        let cosine = LRSchedule(kind: .cosine, baseLR: 1, warmupSteps: 3, totalSteps: 10)
        XCTAssertEqual(cosine.lr(atStep: 10), 0, accuracy: 1e-7)
    }

    func testWarmupStepsFromRatioMatchesTransformers() {
        for c in H.warmupCases {
            XCTAssertEqual(LRSchedule.warmupSteps(ratio: c.ratio, totalSteps: c.total), c.steps,
                           "ratio \(c.ratio) of \(c.total)")
        }
    }

    func testSchedulerNamesAndCodable() throws {
        XCTAssertEqual(LRScheduler.allCases.map(\.rawValue), ["constant", "constant_with_warmup", "linear", "cosine"])
        XCTAssertEqual(LRScheduler(rawValue: "constant_with_warmup"), .constantWithWarmup)
        let data = try JSONEncoder().encode([LRScheduler.cosine])
        XCTAssertEqual(String(decoding: data, as: UTF8.self), "[\"cosine\"]")
        XCTAssertEqual(try JSONDecoder().decode([LRScheduler].self, from: data), [.cosine])
    }
}
