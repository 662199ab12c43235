import XCTest
@testable import Swiftlet

/// Offload, prefetch and reload on the CPU backend: the elements come back bit for bit, a prefetched
/// copy is the one `reload` returns (once), and a reload without a prefetch copies then.
final class OffloadedTensorTests: XCTestCase {
    func testPrefetchStagesTheCopyThatReloadReturns() throws {
        let backend = CPUBackend()
        let values = (0..<96).map { Float($0) * 0.25 - 7 }
        let source = try backend.upload(values, [8, 12], .f32)
        let offloaded = try backend.offload(source)
        try backend.settleOffloads()
        XCTAssertNil(offloaded.staged)

        try backend.prefetch(offloaded)
        let staged = try XCTUnwrap(offloaded.staged).tensor
        let reloaded = try backend.reload(offloaded)
        XCTAssertTrue(reloaded.buffer === staged.buffer, "reload should return the prefetched copy")
        XCTAssertNil(offloaded.staged, "the prefetched copy is taken once")
        XCTAssertEqual(backend.download(reloaded), values)

        let again = try backend.reload(offloaded)   // no prefetch: a new copy
        XCTAssertFalse(again.buffer === reloaded.buffer)
        XCTAssertEqual(backend.download(again), values)
        XCTAssertEqual(again.shape, [8, 12])
    }
}
