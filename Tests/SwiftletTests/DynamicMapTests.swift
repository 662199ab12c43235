import Foundation
import XCTest
@testable import Swiftlet

/// The dynamic code book against bitsandbytes' own `create_dynamic_map` (Fixtures/bnb/
/// dynamic_map.json: the float32 bit patterns, written by scripts/make_bnb_fixtures.py).
final class DynamicMapTests: XCTestCase {
    func testBothMapsAreBitIdenticalToBitsandbytes() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
            .appendingPathComponent("bnb/dynamic_map.json")
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        for (key, ours) in [("signed", DynamicMap.signed), ("unsigned", DynamicMap.unsigned)] {
            let bits = try XCTUnwrap(json[key] as? [Int]).map { UInt32(bitPattern: Int32($0)) }
            XCTAssertEqual(bits.count, 256)
            let mismatches = zip(ours, bits).enumerated().filter { $0.element.0.bitPattern != $0.element.1 }
            XCTAssertTrue(mismatches.isEmpty, "\(key): \(mismatches.count) entries differ, first at \(mismatches.first?.offset ?? -1)")
        }
        XCTAssertEqual(DynamicMap.signed.last, 1)
        XCTAssertEqual(DynamicMap.unsigned.first, 0)
    }
}
