import Foundation
import XCTest

/// The CUDA kernels' source run on the CPU by scripts/emulate_cuda_*.sh (a fiber per CUDA thread, the warps
/// in a skewed order; the tensor-core instructions, ldmatrix and cp.async in C++ as the PTX ISA specifies
/// them), each emulator against its reference in double or bit for bit. What `swiftlet doctor` checks on a
/// GPU, checked here on every commit: a kernel change that breaks the arithmetic, a shared-memory layout or
/// a barrier fails CI. Needs
/// python3 and a C++20 compiler (g++ or clang++); without them the tests skip and say so.
final class CUDAEmulationTests: XCTestCase {
    func testTrainingAttentionSimpleKernels() throws {
        try emulate("emulate_cuda_attention.sh", ["simple"], passLine: "ALL PASS")
    }

    /// The tensor-core tiles of every head dim (64, 96, 128, 256 and 256's pair split): plain, softcapped,
    /// GQA and MHA, windows, packing, partial tiles.
    func testTrainingAttentionTiles() throws {
        try emulate("emulate_cuda_attention.sh", ["tiled"], passLine: "ALL PASS")
    }

    /// The same in f16 storage (`--precision fp16` on a GPU that has the tiles): the f16 mma.sync and conversions.
    func testTrainingAttentionTilesF16() throws {
        try emulate("emulate_cuda_attention.sh", ["tiled"], storage: "f16", passLine: "ALL PASS")
    }

    func testCachedAttention() throws {
        try emulate("emulate_cuda_cached_attention.sh", passLine: "ALL PASS")
    }

    func testGemmaOps() throws {
        try emulate("emulate_cuda_gemma_ops.sh", passLine: "ALL PASS")
    }

    func testNF4() throws {
        try emulate("emulate_cuda_nf4.sh", passLine: "all NF4 emulation checks passed")
    }

    func testSplitBF16() throws {
        try emulate("emulate_cuda_split.sh", passLine: "all split-bf16 emulation checks passed")
    }

    /// Add, bias, scale, multiply, conversions, random fill, dropout, embedding, RoPE, column copies.
    func testElementwise() throws {
        try emulate("emulate_cuda_elementwise.sh", passLine: "all elementwise emulation checks passed")
    }

    /// The LoRA down, up-add, gradient and finalize kernels at ranks 1 to 64.
    func testLoRA() throws {
        try emulate("emulate_cuda_lora.sh", passLine: "all LoRA emulation checks passed")
    }

    /// Routing, its backward, statistics, the stable sort, gather, combine and its backward.
    func testMixtureOfExperts() throws {
        try emulate("emulate_cuda_experts.sh", passLine: "all mixture-of-experts emulation checks passed")
    }

    /// The gradient norm, zero fill, AdamW, SGD and AdamW8bit over the multi-tensor table.
    func testOptimizers() throws {
        try emulate("emulate_cuda_optimizers.sh", passLine: "all optimizer emulation checks passed")
    }

    private static let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("scripts")

    /// The emulators' needs, probed once for all the tests: python3, and a compiler with C++20's <barrier>
    /// (emulate_cuda.sh's choice of it).
    private static let probe = Result { try shell("""
        command -v python3 >/dev/null || { echo "no python3"; exit 1; }
        c="${CXX:-$(command -v g++ || command -v clang++)}"; [ -n "$c" ] || { echo "no g++ or clang++"; exit 1; }
        d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
        printf '#include <barrier>\\nint main() { std::barrier<> b(1); b.arrive_and_wait(); }\\n' > "$d/p.cpp"
        "$c" -std=c++20 -pthread "$d/p.cpp" -o "$d/p" 2>&1 | tail -3
        "$d/p"
        """) }

    private func emulate(_ script: String, _ arguments: [String] = [], storage: String = "bf16", passLine: String) throws {
        let probe = try Self.probe.get()
        guard probe.status == 0 else { throw XCTSkip("the CUDA emulation can't run here: \(probe.output)") }
        let run = try Self.shell("STORAGE=\(storage) bash \"$0\" \"$@\"", [Self.scripts.appendingPathComponent(script).path] + arguments)
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.split(separator: "\n").contains { $0 == passLine }, run.output)
        XCTAssertFalse(run.output.contains("FAIL"), run.output)
    }

    private static func shell(_ command: String, _ arguments: [String] = []) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
