import Foundation
import XCTest
@testable import Swiftlet

/// The NF4 codec against bitsandbytes' quantize_4bit / dequantize_4bit (Fixtures/bnb/nf4.*,
/// written by scripts/make_nf4_fixtures.py): byte-equal codes, bit-equal absmax (plain and
/// double-quantized) and bit-equal dequantized values.
final class NF4Tests: XCTestCase {
    struct Case {
        var name: String
        var shape: Shape
        var dtype: String
        var doubleQuant: Bool
        var blockSize: Int
    }

    func load() throws -> (SafetensorsFile, [Case], [String: Any]) {
        let base = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
            .appendingPathComponent("bnb/nf4")
        let file = try SafetensorsFile(url: base.appendingPathExtension("safetensors"))
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: base.appendingPathExtension("json"))) as? [String: Any])
        let cases = try XCTUnwrap(json["cases"] as? [[String: Any]]).map { c in
            Case(name: c["name"] as! String, shape: Shape(c["shape"] as! [Int]), dtype: c["dtype"] as! String,
                 doubleQuant: c["double_quant"] as! Bool, blockSize: c["blocksize"] as! Int)
        }
        XCTAssertGreaterThanOrEqual(cases.count, 4)
        return (file, cases, json)
    }

    func bytes(_ file: SafetensorsFile, _ name: String) throws -> [UInt8] {
        XCTAssertEqual(try file.info(name).dtype, .u8, name)
        return Array(try file.rawBytes(name))
    }

    func bits(_ values: [Float]) -> [UInt32] { values.map(\.bitPattern) }

    func testCodebookIsBitsandbytesTable() throws {
        let (_, _, json) = try load()
        let expected = try XCTUnwrap(json["nf4_code"] as? [Int]).map { UInt32(bitPattern: Int32($0)) }
        XCTAssertEqual(bits(NF4.codebook), expected)
    }

    func testQuantizeIsByteIdenticalToBitsandbytes() throws {
        let (file, cases, _) = try load()
        for c in cases {
            let input = try file.floats("\(c.name).input")
            let q = NF4.quantize(input, shape: c.shape, blockSize: c.blockSize, doubleQuant: c.doubleQuant)
            XCTAssertEqual(q.packed, try bytes(file, "\(c.name).packed"), "\(c.name): packed codes")
            switch q.absmax {
            case let .plain(absmax):
                XCTAssertFalse(c.doubleQuant, c.name)
                XCTAssertEqual(bits(absmax), bits(try file.floats("\(c.name).absmax")), "\(c.name): absmax")
            case let .nested(n):
                XCTAssertTrue(c.doubleQuant, c.name)
                XCTAssertEqual(n.offset.bitPattern, try file.floats("\(c.name).nested_offset")[0].bitPattern, "\(c.name): offset")
                XCTAssertEqual(n.codes, try bytes(file, "\(c.name).absmax"), "\(c.name): nested codes")
                XCTAssertEqual(bits(n.scales), bits(try file.floats("\(c.name).nested_absmax")), "\(c.name): nested absmax")
            }
        }
    }

    /// bitsandbytes' own quantized state, dequantized by us, rounded once to the input dtype.
    func testDequantizeIsBitIdenticalToBitsandbytes() throws {
        let (file, cases, _) = try load()
        for c in cases {
            let absmax: NF4Absmax = c.doubleQuant
                ? .nested(NestedAbsmax(codes: try bytes(file, "\(c.name).absmax"),
                                       scales: try file.floats("\(c.name).nested_absmax"),
                                       offset: try file.floats("\(c.name).nested_offset")[0],
                                       blockSize: NF4.nestedBlockSize))
                : .plain(try file.floats("\(c.name).absmax"))
            let q = NF4Tensor(packed: try bytes(file, "\(c.name).packed"), absmax: absmax, shape: c.shape, blockSize: c.blockSize)
            var values = q.dequantized()
            if c.dtype == "bfloat16" { values = values.map(BFloat16.round) }
            XCTAssertEqual(bits(values), bits(try file.floats("\(c.name).dequantized")), "\(c.name): dequantized")
        }
    }

    func testTorchSumOrderDiffersFromNaiveSumSomewhere() {
        // Guards the cascade: on these values a left-to-right Float sum gives another answer.
        var x: [Float] = []
        var state: UInt64 = 42
        for _ in 0..<5000 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            x.append(Float(state >> 40) / Float(1 << 24) * 3)
        }
        let naive = x.reduce(0, +)
        let exact = Float(x.reduce(0.0) { $0 + Double($1) })
        XCTAssertNotEqual(naive, TorchFloatSum.sum(x))
        XCTAssertLessThan(abs(TorchFloatSum.sum(x) - exact), abs(naive - exact) + 1e-3)
    }
}
