import XCTest
@testable import Swiftlet

final class DTypeTests: XCTestCase {
    func testBFloat16RoundsToNearestEven() {
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even one (1.0).
        XCTAssertEqual(BFloat16.bits(1 + 0x1p-8), 0x3F80)
        // 1 + 3·2^-8 is halfway: ties to even rounds up to 1 + 2^-6·... (0x3F82).
        XCTAssertEqual(BFloat16.bits(1 + 3 * 0x1p-8), 0x3F82)
        XCTAssertEqual(BFloat16.bits(.nan), 0x7FC0)
        XCTAssertEqual(BFloat16.float(BFloat16.bits(-2.5)), -2.5)
        XCTAssertEqual(BFloat16.bits(.infinity), 0x7F80)
    }
}
