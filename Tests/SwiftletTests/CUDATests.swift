import Foundation
import XCTest
@testable import Swiftlet

final class CUDATests: XCTestCase {
    func fakeGlob(_ pattern: String) -> [String] {
        switch pattern {
        case "/usr/lib/python3*/site-packages/nvidia/*/lib":
            return ["/usr/lib/python3.12/site-packages/nvidia/cublas/lib", "/usr/lib/python3.12/site-packages/nvidia/cuda_nvrtc/lib"]
        case "/venv/lib/python3*/site-packages/nvidia/*/lib":
            return ["/venv/lib/python3.11/site-packages/nvidia/cuda_nvrtc/lib"]
        default: return []
        }
    }

    func testSearchOrderAndStubExclusion() {
        let env = ["LD_LIBRARY_PATH": "/opt/a:/usr/local/cuda/lib64/stubs::/opt/b/",
                   "CUDA_HOME": "/cuda-home/", "CUDA_PATH": "/cuda-path", "VIRTUAL_ENV": "/venv"]
        let c = CUDALibrarySearch.candidates(sonames: ["libnvrtc.so.13", "libnvrtc.so.12"], environment: env, glob: fakeGlob)
        XCTAssertEqual(Array(c.prefix(8)), [
            "libnvrtc.so.13", "libnvrtc.so.12",
            "/opt/a/libnvrtc.so.13", "/opt/a/libnvrtc.so.12",
            "/opt/b/libnvrtc.so.13", "/opt/b/libnvrtc.so.12",
            "/cuda-home/lib64/libnvrtc.so.13", "/cuda-home/lib64/libnvrtc.so.12",
        ])
        XCTAssertFalse(c.contains { $0.contains("/stubs/") }, "\(c)")
        let folders = CUDALibrarySearch.folders(environment: env, glob: fakeGlob)
        XCTAssertEqual(folders, [
            "/opt/a", "/opt/b/", "/cuda-home/lib64", "/cuda-path/lib64",
            "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib",
            "/venv/lib/python3.11/site-packages/nvidia/cuda_nvrtc/lib",
            "/usr/lib/python3.12/site-packages/nvidia/cublas/lib",
            "/usr/lib/python3.12/site-packages/nvidia/cuda_nvrtc/lib",
        ])
        XCTAssertTrue(CUDALibrarySearch.isStub("/usr/local/cuda/lib64/stubs/libcuda.so.1"))
        XCTAssertFalse(CUDALibrarySearch.isStub("/usr/lib/x86_64-linux-gnu/libcuda.so.1"))
    }

    func testEmptyEnvironmentStillSearchesDefaults() {
        let c = CUDALibrarySearch.candidates(sonames: ["libcuda.so.1"], environment: [:], glob: { _ in [] })
        XCTAssertEqual(c, ["libcuda.so.1", "/usr/local/cuda/lib64/libcuda.so.1",
                           "/usr/local/cuda/targets/x86_64-linux/lib/libcuda.so.1"])
    }

    func testCacheKeyChangesWithEveryInput() {
        let base = KernelCache.cacheKey(source: "a", options: ["-x"], architecture: "sm_90", nvrtcVersion: "13.0")
        XCTAssertEqual(base.count, 16)
        XCTAssertEqual(base, KernelCache.cacheKey(source: "a", options: ["-x"], architecture: "sm_90", nvrtcVersion: "13.0"))
        XCTAssertNotEqual(base, KernelCache.cacheKey(source: "b", options: ["-x"], architecture: "sm_90", nvrtcVersion: "13.0"))
        XCTAssertNotEqual(base, KernelCache.cacheKey(source: "a", options: ["-y"], architecture: "sm_90", nvrtcVersion: "13.0"))
        XCTAssertNotEqual(base, KernelCache.cacheKey(source: "a", options: ["-x"], architecture: "sm_80", nvrtcVersion: "13.0"))
        XCTAssertNotEqual(base, KernelCache.cacheKey(source: "a", options: ["-x"], architecture: "sm_90", nvrtcVersion: "12.8"))
        XCTAssertNotEqual(KernelCache.cacheKey(source: "ab", options: ["c"], architecture: "sm_90", nvrtcVersion: "1"),
                          KernelCache.cacheKey(source: "a", options: ["bc"], architecture: "sm_90", nvrtcVersion: "1"))
        XCTAssertEqual(KernelCache.options(architecture: "sm_90"), ["--gpu-architecture=sm_90", "-default-device", "--std=c++17"])
    }

    func testCacheDirectory() {
        XCTAssertEqual(KernelCache.cacheDirectory(environment: ["XDG_CACHE_HOME": "/x", "HOME": "/h"]), "/x/swiftlet/kernels")
        XCTAssertEqual(KernelCache.cacheDirectory(environment: ["HOME": "/h"]), "/h/.cache/swiftlet/kernels")
    }

    func testAtomicCacheWrite() throws {
        let dir = NSTemporaryDirectory() + "swiftlet-kcache-\(getpid())/a/b"
        let path = dir + "/k.cubin"
        XCTAssertTrue(KernelCache.writeAtomically([1, 2, 3], to: path, directory: dir))
        XCTAssertEqual(KernelCache.readFile(path), [1, 2, 3])
        XCTAssertTrue(KernelCache.writeAtomically([9], to: path, directory: dir))
        XCTAssertEqual(KernelCache.readFile(path), [9])
    }

    func testLoadingFailsWithOneLineNamingLibcuda() throws {
        if case .success = CUDALibraries.shared { throw XCTSkip("libcuda is installed here; the missing-library path can't be tested") }
        // An environment pointing only at an empty folder and a stub folder.
        let empty = NSTemporaryDirectory() + "swiftlet-nocuda-\(getpid())/stubs"
        XCTAssertThrowsError(try CUDALibraries(environment: ["LD_LIBRARY_PATH": "/nonexistent:\(empty)"], glob: { _ in [] })) { error in
            let line = "\(error)"
            XCTAssertTrue(line.hasPrefix("CUDA: libcuda.so.1 not found (looked in"), line)
            XCTAssertTrue(line.contains("/nonexistent"), line)
            XCTAssertFalse(line.contains("\n"), line)
        }
        switch Device.auto.makeBackendNote() {
        case let note: XCTAssertTrue(note.hasPrefix("using the CPU: CUDA: libcuda.so.1 not found"), note)
        }
    }

    func testDoctorWithoutGPUExitsOneWithOneLine() throws {
        if case .success = CUDALibraries.shared { throw XCTSkip("CUDA is installed here") }
        let binary = try swiftletBinary
        let process = Process()
        process.executableURL = binary
        process.arguments = ["doctor"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let output = String(decoding: data, as: UTF8.self)
        XCTAssertEqual(process.terminationStatus, 1, output)
        XCTAssertTrue(output.hasPrefix("CUDA: libcuda.so.1 not found"), output)
        XCTAssertEqual(output.split(separator: "\n").count, 1, output)
    }

    func testBinSizes() {
        XCTAssertEqual(CUDAMemory.binSize(1), 512)
        XCTAssertEqual(CUDAMemory.binSize(513), 1024)
        XCTAssertEqual(CUDAMemory.binSize(1 << 20), 1 << 20)
        XCTAssertEqual(CUDAMemory.binSize((1 << 20) + 1), 2 << 20)
        XCTAssertEqual(CUDAMemory.binSize(5 << 20), 6 << 20)
    }

    /// The counter keeps the allocator's bins and the requests (rounded to 512 bytes, as PyTorch's
    /// max_memory_allocated counts) apart, and both peaks survive frees.
    func testMemoryCounterKeepsBinsAndRequestsApart() {
        let counter = MemoryCounter()
        counter.allocated(CUDAMemory.binSize(5 << 20 + 1), requested: 5 << 20 + 1)   // bin 6 MiB, request 5 MiB + 512
        counter.allocated(CUDAMemory.binSize(600), requested: 600)                   // bin 1 KiB, request 1 KiB
        XCTAssertEqual(counter.peak, 6 << 20 + 1024)
        XCTAssertEqual(counter.requestedPeak, 5 << 20 + 512 + 1024)
        counter.freed(CUDAMemory.binSize(600), requested: 600)
        counter.allocated(100)                                                       // the same when not told apart
        XCTAssertEqual(counter.current, 6 << 20 + 100)
        XCTAssertEqual(counter.requestedCurrent, 5 << 20 + 512 + 512)
        XCTAssertEqual(counter.requestedPeak, 5 << 20 + 512 + 1024)
        counter.resetPeak()
        XCTAssertEqual(counter.requestedPeak, counter.requestedCurrent)
        XCTAssertEqual(counter.peak, counter.current)
    }

    func testErrorMeasureRejectsNaN() {
        XCTAssertFalse(ErrorMeasure.measure(gpu: [1, .nan], cpu: [1, 2]).passes(maxBound: 1, meanBound: 1))
        XCTAssertTrue(ErrorMeasure.measure(gpu: [1, 2.001], cpu: [1, 2]).passes(maxBound: 1e-3, meanBound: 1e-3))
        XCTAssertFalse(ErrorMeasure.measure(gpu: [1, 2.1], cpu: [1, 2]).passes(maxBound: 1e-2, meanBound: 1))
    }

    func testGPUSelfTest() throws {
        guard case .success = CUDALibraries.shared else {
            throw XCTSkip("no CUDA driver on this machine: run `swiftlet doctor` on a GPU machine")
        }
        XCTAssertTrue(try CUDADoctor.run { print($0) })
    }
}

extension Device {
    /// The note `makeBackend` prints for `auto`.
    func makeBackendNote() -> String {
        var note = ""
        _ = try? makeBackend { note = $0 }
        return note
    }
}
