import XCTest
@testable import Swiftlet

/// NF4 quantization where the tensor lives (`Backend.quantizeNF4`, `NF4Weight(quantizing:doubleQuant:)`)
/// gives the host quantizer's `NF4Tensor` bit for bit, and the model paths that now use it (4-bit random
/// models, `quantizeLinearsToNF4`, 4-bit checkpoint loading) quantize what they did before. The CUDA
/// kernel is checked against the same host algorithm by scripts/emulate_cuda_nf4.sh and `swiftlet doctor`.
final class NF4DeviceQuantizationTests: XCTestCase {
    let cpu = CPUBackend()

    /// Weight-like values with, block by block, the cases the scaling treats apart: zeros (+0 and -0),
    /// ±largest finite and ±3e38, subnormals and blocks whose absmax is below the 1e-38 floor, ±1, and
    /// values that scale exactly onto a code book midpoint (a tie: the lower level).
    func probeValues(_ count: Int, blockSize: Int, seed: UInt64) -> [Float] {
        var g = SplitMix64(seed: seed)
        var x = (0..<count).map { i -> Float in
            let v = g.uniform(in: -1..<1) * (i / blockSize % 3 == 1 ? 1e-3 : 0.05)
            switch (i / blockSize % 11, g.next() % 61) {
            case (4, _): return 0
            case (5, _): return i % 2 == 0 ? 0 : -0.0
            case (6, _): return Float(bitPattern: UInt32(1 + g.next() % 0x6C_0000))   // subnormals below the floor
            case (_, 0): return .greatestFiniteMagnitude
            case (_, 1): return -.greatestFiniteMagnitude
            case (_, 2): return 3e38
            case (_, 3): return Float.leastNonzeroMagnitude
            case (_, 4): return -1
            case (_, 5): return 1
            default: return v
            }
        }
        // A block scaled by 1: its midpoint values stay midpoints (x · 1 and x / 1 are exact).
        if count >= 2 * blockSize {
            let start = 7 % (count / blockSize) * blockSize
            for j in 0..<blockSize { x[start + j] = j == 0 ? 1 : NF4.midpoints[j % NF4.midpoints.count] * (j % 2 == 0 ? 1 : -1) }
        }
        return x
    }

    /// The backend op's codes and absmax, as host arrays.
    func quantizedOnBackend(_ x: Tensor, blockSize: Int) throws -> (packed: [UInt8], absmax: [UInt32]) {
        let packed = try cpu.zeros([(x.count + 1) / 2], .u8)
        let absmax = try cpu.zeros([(x.count + blockSize - 1) / blockSize], .f32)
        cpu.quantizeNF4(x, blockSize: blockSize, into: packed, absmax: absmax)
        return (cpu.downloadBytes(packed), cpu.download(absmax).map(\.bitPattern))
    }

    func testTheBackendOpGivesTheHostCodesAndAbsmaxBitForBit() throws {
        // full blocks only, a partial last block with an odd count, fewer elements than a block, one element
        let cases: [(count: Int, blockSize: Int)] = [(64 * 50, 64), (64 * 50 + 37, 64), (63, 64), (5, 64), (1, 64),
                                                     (64 + 1, 64), (32 * 40 + 9, 32), (256 * 3 + 255, 256)]
        for (i, c) in cases.enumerated() {
            for dtype in [DType.f32, .bf16, .f16] {
                let x = try cpu.upload(probeValues(c.count, blockSize: c.blockSize, seed: UInt64(i)), [c.count], dtype)
                let host = NF4.quantize(cpu.download(x), shape: [c.count], blockSize: c.blockSize, doubleQuant: false)
                guard case let .plain(hostAbsmax) = host.absmax else { return XCTFail("plain absmax expected") }
                let device = try quantizedOnBackend(x, blockSize: c.blockSize)
                XCTAssertEqual(device.packed, host.packed, "\(c) \(dtype)")
                XCTAssertEqual(device.absmax, hostAbsmax.map(\.bitPattern), "\(c) \(dtype)")
            }
        }
    }

    func testTheWeightInitializerMakesTheHostTensor() throws {
        for (shape, seed) in [([96, 64] as Shape, 1 as UInt64), ([37, 29], 2), ([300, 130], 3)] {
            let values = probeValues(shape.count, blockSize: NF4.defaultBlockSize, seed: seed)
            let dense = try cpu.upload(values, shape, .f32)
            for doubleQuant in [false, true] {
                let onBackend = try NF4Weight(quantizing: dense, doubleQuant: doubleQuant)
                XCTAssertEqual(onBackend.shape, shape)
                XCTAssertEqual(onBackend.host(), NF4.quantize(values, shape: shape, doubleQuant: doubleQuant), "\(shape) \(doubleQuant)")
                XCTAssertEqual(onBackend.host(), try NF4Weight(quantizing: values, shape: shape, doubleQuant: doubleQuant, on: cpu).host())
            }
        }
        // A view into a larger tensor (rows 3..<40): the op reads from its offset.
        let whole = try cpu.upload(probeValues(41 * 33, blockSize: 64, seed: 4), [41, 33], .f32)
        let rows = whole.rows(3..<40)
        XCTAssertEqual(try NF4Weight(quantizing: rows, doubleQuant: true).host(),
                       NF4.quantize(cpu.download(rows), shape: [37, 33], doubleQuant: true))
    }

    /// Each 4-bit linear of `quantized` is the host's quantization of the dense model's weight (an expert's
    /// gate_up quantized as its two halves).
    func assertQuantizesTheDenseModel(_ quantized: LlamaModel, _ dense: LlamaModel, file: StaticString = #filePath,
                                      line: UInt = #line) throws {
        var checked = 0
        for (q, d) in zip(quantized.layers, dense.layers) {
            XCTAssertEqual(q.linears.count, d.linears.count, file: file, line: line)
            for (ql, dl) in zip(q.linears, d.linears) {
                guard case let .dense(w) = dl.weight else { return XCTFail("a dense model's weight", file: file, line: line) }
                let parts: [NF4Weight]
                switch ql.weight {
                case .dense: continue   // a router
                case let .nf4(weight): parts = [weight]
                case let .nf4Rows(weights): parts = weights
                }
                var row = 0
                for part in parts {
                    let rows = w.rows(row..<(row + part.shape[0]))
                    row += part.shape[0]
                    XCTAssertEqual(part.host(), NF4.quantize(cpu.download(rows), shape: rows.shape, doubleQuant: true),
                                   file: file, line: line)
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 0, file: file, line: line)
    }

    func testRandom4BitModelsQuantizeTheirDenseWeights() throws {
        let llama = LlamaConfig(vocabSize: 64, hiddenSize: 64, intermediateSize: 96, layers: 2, heads: 4, kvHeads: 2,
                                rmsNormEps: 1e-5, maxPositionEmbeddings: 64)
        var mixture = llama
        mixture.moe = MixtureOfExpertsConfig(experts: 4, topK: 2, intermediateSize: 40)
        for config in [llama, mixture] {
            let quantized = try LlamaModel.random(config: config, seed: 9, loadIn4bit: true, on: cpu)
            let dense = try LlamaModel.random(config: config, seed: 9, on: cpu)
            try assertQuantizesTheDenseModel(quantized, dense)
            // quantizeLinearsToNF4 on the dense model: the same NF4 weights as filling in 4-bit.
            let later = try LlamaModel.random(config: config, seed: 9, on: cpu)
            try later.quantizeLinearsToNF4()
            try assertQuantizesTheDenseModel(later, dense)
        }
    }

    func testLoadingIn4BitQuantizesTheCheckpointValues() throws {
        for fixture in ["llama_gqa", "mixtral_moe"] {
            let directory = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
                .appendingPathComponent(fixture)
            let quantized = try LlamaModel.load(directory: directory, on: cpu, loadIn4bit: true)
            try assertQuantizesTheDenseModel(quantized, try LlamaModel.load(directory: directory, on: cpu))
        }
    }
}
