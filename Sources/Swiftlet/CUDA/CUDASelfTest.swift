import Foundation
import CCUDA

/// `swiftlet doctor`: what the CUDA stack looks like here, and a numerical self-test of the kernels
/// against their CPU twins.
public enum CUDADoctor {
    /// The checks `swiftlet doctor --only` can pick (the device's compute type only): a short call
    /// on a scarce GPU checks what changed.
    public static let partialChecks = ["nf4", "lora", "attention", "offload", "presplit", "experts", "model"]

    /// Runs only the named checks of `partialChecks` ("model": the training step on the fixtures,
    /// which need `fixtures`); true when each passed.
    public static func run(deviceIndex: Int = 0, only checks: [String], fixtures: URL? = nil,
                           print say: @escaping (String) -> Void) throws -> Bool {
        let gpu = try CUDABackend(ordinal: deviceIndex)
        var ops = CUDAOpSelfTest(gpu: gpu, say: say)
        var passed = true
        for check in checks {
            switch check {
            case "nf4":
                try ops.nf4()
                try ops.nf4Quantize()
            case "lora": try ops.lora()
            case "attention": try ops.ropeAndAttention()
            case "experts":
                try ops.expertProducts()
                passed = try stepAgreement(check, gpu: gpu, say: say) && passed
            case "offload", "presplit": passed = try stepAgreement(check, gpu: gpu, say: say) && passed
            case "model":
                guard let fixtures else { throw CUDAError.invalid("doctor --only model needs --fixtures DIR") }
                say("training step, GPU (\(gpu.computeType)) against the CPU engine on the fixtures:")
                passed = try CUDAModelSelfTest.run(fixtures: fixtures, gpu: gpu, say: say) && passed
            default: throw CUDAError.invalid("doctor --only \(check): the checks are \(partialChecks.joined(separator: ", "))")
            }
        }
        passed = ops.passed && passed
        say(passed ? "all checks passed" : "SOME CHECKS FAILED")
        return passed
    }

    /// The checks that compare two ways of running a training step on the device, bit for bit.
    static func stepAgreement(_ check: String, gpu: CUDABackend, say: (String) -> Void) throws -> Bool {
        switch check {
        case "offload":
            say("gradient checkpointing's offload against checkpointing on the device:")
            return try CUDAModelSelfTest.offloadAgreement(gpu: gpu, say: say)
        case "presplit":
            say("LoRA weights split once per layer (SWIFTLET_LORA_PRESPLIT) against splitting in every op:")
            return try CUDAModelSelfTest.preparedLoRAAgreement(gpu: gpu, say: say)
        case "experts":
            say("a mixture's experts run together (one op a product over their row blocks) against one by one:")
            return try CUDAModelSelfTest.expertsTogetherAgreement(gpu: gpu, say: say)
        default: preconditionFailure("no step check named \(check)")
        }
    }

    /// Runs everything, printing one line per item. Returns true when every check passed.
    /// Throws (one line) when the libraries or the GPU are unavailable.
    public static func run(deviceIndex: Int = 0, fixtures: URL? = nil, print say: @escaping (String) -> Void) throws -> Bool {
        let libs: CUDALibraries
        switch CUDALibraries.shared {
        case let .success(l): libs = l
        case let .failure(e): throw e
        }
        say("libcuda:       \(libs.driver.path)")
        say("libnvrtc:      \(libs.nvrtc.path)")
        say("libcublasLt:   \(libs.cublasLt?.path ?? "not found (\(libs.cublasLtProblem ?? "?"))")")
        if let v = libs.driverVersion { say("driver:        CUDA \(v.major).\(v.minor)") }
        if let v = libs.nvrtcVersionNumber { say("NVRTC:         \(v.major).\(v.minor)") }
        let backend = try CUDABackend(libraries: libs, ordinal: deviceIndex)
        let device = backend.device
        say("GPU \(deviceIndex):         \(device.name)")
        say("compute:       \(device.computeCapability.major).\(device.computeCapability.minor) (\(device.architecture)), \(device.multiprocessors) SMs")
        let info = try device.memoryInfo()
        say("memory:        \(ByteCount(device.totalMemory)) total, \(ByteCount(info.free)) free")
        say("kernel cache:  \(backend.kernels.directory ?? "none (no HOME)")")

        say("cuBLASLt:      version \(backend.blas.version)")
        say("cuDNN:         \(backend.cudnnDescription ?? "not used (\(backend.cudnnProblem ?? "?"))")")
        say("attention:     \(backend.attentionKernels.rawValue) kernels (SWIFTLET_ATTENTION)")
        var passed = true
        // bf16 where the GPU has it; fp16 (the mode of compute capability 7.x) everywhere.
        let storages: [DType] = backend.computeType == .bf16 ? [.bf16, .f16] : [.f16]
        for storage in storages {
            let gpu = storage == backend.computeType ? backend : try CUDABackend(libraries: libs, ordinal: deviceIndex, storage: storage)
            say("== \(storage) storage")
            var selfTest = CUDAOpSelfTest(gpu: gpu, say: say)
            passed = try selfTest.runAll() && passed
            for check in ["offload", "presplit", "experts"] { passed = try stepAgreement(check, gpu: gpu, say: say) && passed }
            if let fixtures {
                say("training step, GPU (\(storage)) against the CPU engine (fp32, weights rounded to \(storage)) on the fixtures:")
                passed = try CUDAModelSelfTest.run(fixtures: fixtures, gpu: gpu, say: say) && passed
                say("DPO and ORPO steps, GPU (\(storage)) against the CPU engine on the llama_gqa fixture's preference pairs:")
                passed = try CUDAPreferenceSelfTest.run(fixtures: fixtures, gpu: gpu, say: say) && passed
                say("generation (KV cache), GPU (\(storage)) against the CPU engine on the fixtures:")
                passed = try CUDAGenerationSelfTest.run(fixtures: fixtures, gpu: gpu, say: say) && passed
            }
            say("peak device memory of the \(storage) self-test: \(ByteCount(gpu.memory.peak))")
        }
        say(passed ? "all checks passed" : "SOME CHECKS FAILED")
        return passed
    }
}

/// Comparison of a GPU result with its CPU twin.
public struct ErrorMeasure {
    /// max |gpu − cpu| / max |cpu|
    public var maxRelative: Double
    /// Σ|gpu − cpu| / Σ|cpu|
    public var meanRelative: Double
    public var nanCount: Int

    public static func measure(gpu: [Float], cpu: [Float]) -> ErrorMeasure {
        precondition(gpu.count == cpu.count)
        var maxDiff = 0.0, maxRef = 0.0, sumDiff = 0.0, sumRef = 0.0
        var nans = 0
        for i in 0..<gpu.count {
            let g = Double(gpu[i]), c = Double(cpu[i])
            if !g.isFinite || !c.isFinite { nans += 1; continue }
            let d = abs(g - c)
            maxDiff = max(maxDiff, d); maxRef = max(maxRef, abs(c))
            sumDiff += d; sumRef += abs(c)
        }
        return ErrorMeasure(maxRelative: maxRef > 0 ? maxDiff / maxRef : maxDiff,
                            meanRelative: sumRef > 0 ? sumDiff / sumRef : sumDiff, nanCount: nans)
    }

    public func passes(maxBound: Double, meanBound: Double) -> Bool {
        nanCount == 0 && maxRelative <= maxBound && meanRelative <= meanBound
    }
}

