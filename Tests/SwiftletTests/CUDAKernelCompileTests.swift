import XCTest
@testable import Swiftlet

/// Every CUDA kernel compiles with NVRTC, for both storage types and for the oldest and newest
/// architectures we support. NVRTC needs no GPU: CI installs it from PyPI (nvidia-cuda-nvrtc-cu12)
/// and points LD_LIBRARY_PATH at it. Where no NVRTC can be found the test skips and says so.
final class CUDAKernelCompileTests: XCTestCase {
    func testEveryKernelCompiles() throws {
        let nvrtc: NVRTC
        do { nvrtc = try NVRTC.load() } catch {
            throw XCTSkip("no NVRTC here, kernels not compiled: \(error)")
        }
        var compiled = 0
        for storage in [DType.bf16, .f16] {
            for architecture in ["sm_70", "sm_90"] {
                for family in CUDAKernelSource.families {
                    let source = CUDAKernelSource.prelude(storage: storage) + family.source
                    do {
                        let cubin = try nvrtc.compile(source: source, name: family.name,
                                                      options: KernelCache.options(architecture: architecture))
                        XCTAssertGreaterThan(cubin.count, 1000, "\(family.name) \(storage) \(architecture)")
                        compiled += 1
                    } catch {
                        XCTFail("\(family.name) (\(storage), \(architecture)): \(error)")
                    }
                }
            }
        }
        XCTAssertEqual(compiled, 4 * CUDAKernelSource.families.count)
    }

    func testACompileErrorCarriesTheLog() throws {
        let nvrtc: NVRTC
        do { nvrtc = try NVRTC.load() } catch { throw XCTSkip("no NVRTC here: \(error)") }
        XCTAssertThrowsError(try nvrtc.compile(source: "extern \"C\" __global__ void k() { undefined_thing(); }",
                                               name: "broken", options: KernelCache.options(architecture: "sm_90"))) { error in
            XCTAssertTrue("\(error)".contains("undefined_thing"), "\(error)")
        }
    }
}
