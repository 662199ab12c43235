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

    /// The tensor-core attention kernels hold [16, d] f32 accumulators in registers: a spill to local
    /// memory would cost more than the tiles save. ptxas reports each kernel's registers and spills.
    func testNoFlashAttentionKernelSpills() throws {
        let nvrtc: NVRTC
        do { nvrtc = try NVRTC.load() } catch { throw XCTSkip("no NVRTC here, kernels not compiled: \(error)") }
        for storage in [DType.bf16, .f16] {
            let (_, log) = try nvrtc.compileWithLog(
                source: CUDAKernelSource.prelude(storage: storage) + CUDAFlashAttention.source, name: "flash_attention",
                options: KernelCache.options(architecture: "sm_90") + ["--ptxas-options=-v"])
            let report = KernelResourceReport(ptxasLog: log)
            for d in CUDAFlashAttention.tiles.keys.sorted() {
                let wide = CUDAFlashAttention.Tiles.wide(d)
                for kernel in ["forward_d\(d)", "backward_dq_d\(d)", "backward_dkdv_d\(d)"] + (wide ? ["backward_dkdv_d\(d)_pairs"] : []) {
                    for suffix in ["", "_softcap"] {
                        let name = "flash_attention_\(kernel)\(suffix)"
                        guard let usage = report.kernels[name] else { XCTFail("ptxas reported nothing for \(name)"); continue }
                        XCTAssertEqual(usage.spillBytes, 0, "\(name) (\(storage)) spills: \(usage)")
                        XCTAssertTrue((1...255).contains(usage.registers), "\(name): \(usage)")
                        if storage == .bf16 { print("\(name): \(usage)") }
                    }
                }
            }
            let wideDims = CUDAFlashAttention.tiles.keys.filter(CUDAFlashAttention.Tiles.wide).count
            XCTAssertEqual(report.kernels.count, CUDAFlashAttention.tiles.count * 6 + wideDims * 2 + 2,
                           "\(report.kernels.keys.sorted())")
        }
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

/// ptxas' `-v` report, per kernel: "Function properties for NAME" then "N bytes spill stores, M bytes
/// spill loads", then "Used R registers".
struct KernelResourceReport {
    struct Usage: CustomStringConvertible {
        var registers = 0
        var spillBytes = 0
        var description: String { "\(registers) registers, \(spillBytes) bytes spilled" }
    }
    var kernels: [String: Usage] = [:]

    init(ptxasLog: String) {
        var current: String?
        func number(before word: String, in line: Substring) -> Int? {
            let parts = line.split(separator: " ")
            guard let i = parts.firstIndex(where: { $0.hasPrefix(word) }), i > 0 else { return nil }
            return Int(parts[i - 1])
        }
        for line in ptxasLog.split(separator: "\n") {
            if let range = line.range(of: "Function properties for ") {
                current = String(line[range.upperBound...]).trimmingCharacters(in: .whitespaces)
                kernels[current!] = Usage()
            } else if let name = current {
                if line.contains("spill stores") {
                    let stores = line.components(separatedBy: ",").first { $0.contains("spill stores") }
                    let loads = line.components(separatedBy: ",").first { $0.contains("spill loads") }
                    let bytes = [stores, loads].compactMap { $0?.split(separator: " ").first.flatMap { Int($0) } }
                    kernels[name]!.spillBytes = bytes.reduce(0, +)
                }
                if let r = number(before: "registers", in: line) { kernels[name]!.registers = r }
            }
        }
    }
}
