import XCTest
@testable import Swiftlet

/// GFLOP/s of `CPUGemm.sgemm` on the shapes of a tiny model. Not a test: it asserts nothing and
/// is skipped unless asked for, because timings in unit tests are noise. Run by hand with
///   SWIFTLET_BENCH=1 swift test -c release --filter CPUGemmBenchmarks
final class CPUGemmBenchmarks: XCTestCase {
    func testReportGFLOPS() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["SWIFTLET_BENCH"] != nil,
                          "set SWIFTLET_BENCH=1 to run")
        // (m, n, k, transposes to try); skinny LoRA shapes only in the layout they are used in.
        let all = [(false, false), (false, true), (true, false), (true, true)]
        let shapes: [(Int, Int, Int, [(Bool, Bool)])] = [
            (1024, 256, 256, all), (1024, 688, 256, all), (256, 1024, 688, all),
            (1024, 8, 256, [(false, false), (false, true)]),
            (8, 256, 1024, [(true, false)]),
            (1024, 256, 8, [(false, false), (false, true)]),
        ]
        var rng = SplitMix64(seed: 7)
        for (m, n, k, combos) in shapes {
            let a = rng.floats(m * k), b = rng.floats(k * n)
            var c = [Float](repeating: 0, count: m * n)
            for (tA, tB) in combos {
                let lda = tA ? m : k, ldb = tB ? k : n
                // GFLOP/s of the best of repeated runs (least disturbed by other processes).
                func measure(parallel: Bool) -> Double {
                    func once() {
                        c.withUnsafeMutableBufferPointer { c in
                            CPUGemm.sgemm(transA: tA, transB: tB, m: m, n: n, k: k, alpha: 1,
                                          a: a, lda: lda, b: b, ldb: ldb, beta: 0,
                                          c: c.baseAddress!, ldc: n, allowParallel: parallel)
                        }
                    }
                    once()  // warm up
                    var best = Double.infinity, total = 0.0
                    while total < 0.3 {
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        once()
                        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
                        best = min(best, dt); total += dt
                    }
                    return 2 * Double(m * n * k) / best * 1e-9
                }
                let serial = measure(parallel: false), parallel = measure(parallel: true)
                print(String(format: "sgemm m=%5d n=%5d k=%5d tA=%d tB=%d  1 thread %6.1f  all %6.1f GFLOP/s",
                             m, n, k, tA ? 1 : 0, tB ? 1 : 0, serial, parallel))
            }
        }
    }
}
