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

    /// A prefetch that nothing reloads (an error between the two) is joined before its host block goes
    /// back: on a GPU its copy may still be writing the staged tensor, whose memory the backend could
    /// otherwise hand out again.
    func testAPrefetchNeverReloadedIsJoinedBeforeTheBlockGoesBack() throws {
        let backend = CPUBackend()
        var events: [String] = []
        let host = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16)
        do {
            let offloaded = OffloadedTensor(dtype: .f32, shape: [4], host: host, giveBack: { $0.deallocate(); events.append("given back") })
            offloaded.staged = StagedCopy(tensor: try backend.empty([4], .f32)) { events.append("joined") }
            XCTAssertEqual(events, [])
        }
        XCTAssertEqual(events, ["joined", "given back"])
    }
}
