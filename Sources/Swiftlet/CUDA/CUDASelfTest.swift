import CCUDA

/// `swiftlet doctor`: what the CUDA stack looks like here, and a numerical self-test of the kernels
/// against their CPU twins.
public enum CUDADoctor {
    /// Runs everything, printing one line per item. Returns true when every check passed.
    /// Throws (one line) when the libraries or the GPU are unavailable.
    public static func run(deviceIndex: Int = 0, print say: @escaping (String) -> Void) throws -> Bool {
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
        let device = try CUDADevice(libs: libs, ordinal: deviceIndex)
        say("GPU \(deviceIndex):         \(device.name)")
        say("compute:       \(device.computeCapability.major).\(device.computeCapability.minor) (\(device.architecture)), \(device.multiprocessors) SMs")
        let info = try device.memoryInfo()
        say("memory:        \(ByteCount(device.totalMemory)) total, \(ByteCount(info.free)) free")
        let cache = KernelCache(device: device)
        say("kernel cache:  \(cache.directory ?? "none (no HOME)")")

        var allPassed = true
        let selfTest = SelfTest(device: device, cache: cache, say: say)
        allPassed = try selfTest.rmsNorm(rows: 4096, width: 4096) && allPassed
        allPassed = try selfTest.swiGLU(rows: 4096, width: 11008) && allPassed
        say("peak device memory of the self-test: \(ByteCount(device.memory.peak))")
        try device.memory.releaseCached()
        say(allPassed ? "all checks passed" : "SOME CHECKS FAILED")
        return allPassed
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

struct SelfTest {
    let device: CUDADevice
    let cache: KernelCache
    let say: (String) -> Void

    // bf16 outputs: error of one bf16 rounding; f32 outputs: summation-order differences only.
    static let bf16Max = 1e-2, bf16Mean = 2e-3
    static let f32Max = 1e-5, f32Mean = 1e-5

    /// Deterministic uniform values in [lo, hi), rounded to bf16 (the GPU sees exactly these).
    static func random(_ count: Int, _ lo: Float, _ hi: Float, seed: UInt64) -> [Float] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        var out = [Float](repeating: 0, count: count)
        for i in 0..<count {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            let u = Float(state >> 40) / Float(1 << 24)
            out[i] = BFloat16.round(lo + (hi - lo) * u)
        }
        return out
    }

    func check(_ name: String, gpu: [Float], cpu: [Float], f32: Bool) -> Bool {
        let e = ErrorMeasure.measure(gpu: gpu, cpu: cpu)
        let (mb, nb) = f32 ? (Self.f32Max, Self.f32Mean) : (Self.bf16Max, Self.bf16Mean)
        let ok = e.passes(maxBound: mb, meanBound: nb)
        let nanText = e.nanCount > 0 ? "  \(e.nanCount) NaN/unwritten" : ""
        say("  \(ok ? "PASS" : "FAIL")  \(name.padding(toLength: 34, withPad: " ", startingAt: 0)) max rel \(fmt(e.maxRelative)) (≤ \(fmt(mb)))  mean rel \(fmt(e.meanRelative)) (≤ \(fmt(nb)))\(nanText)")
        return ok
    }

    func timing(_ name: String, bytes: Int, repeats: Int = 5, _ body: () throws -> Void) throws {
        try body()  // warm-up (compile/load already done by the checked run)
        let ms = try device.time { for _ in 0..<repeats { try body() } } / Float(repeats)
        let gbs = Double(bytes) / (Double(ms) * 1e-3) / 1e9
        say("  time  \(name.padding(toLength: 34, withPad: " ", startingAt: 0)) \(fmt(Double(ms), digits: 3)) ms  \(fmt(gbs, digits: 1)) GB/s")
    }

    func rmsNorm(rows: Int, width: Int) throws -> Bool {
        say("RMSNorm \(rows)×\(width) (bf16 x/w/y, f32 rstd and dX):")
        let n = rows * width, eps: Float = 1e-5
        let x = Self.random(n, -2, 2, seed: 1), w = Self.random(width, 0.5, 1.5, seed: 2)
        let dy = Self.random(n, -1, 1, seed: 3), dx0 = Self.random(n, -0.5, 0.5, seed: 4)
        var y = [Float](repeating: 0, count: n), rstd = [Float](repeating: 0, count: rows)
        x.withUnsafeBufferPointer { xb in w.withUnsafeBufferPointer { wb in
            y.withUnsafeMutableBufferPointer { yb in rstd.withUnsafeMutableBufferPointer { rb in
                RMSNormKernel.forward(x: xb, weight: wb, eps: eps, out: yb, rstd: rb)
            } } } }
        // The CPU backward uses the GPU's inputs: the bf16-rounded x/w/dy and the CPU rstd.
        var dxFresh = [Float](repeating: 0, count: n), dxAcc = dx0
        for i in 0..<2 {
            dy.withUnsafeBufferPointer { db in x.withUnsafeBufferPointer { xb in w.withUnsafeBufferPointer { wb in
                rstd.withUnsafeBufferPointer { rb in
                    if i == 0 {
                        dxFresh.withUnsafeMutableBufferPointer { RMSNormKernel.backward(dOut: db, x: xb, weight: wb, rstd: rb, dX: $0) }
                    } else {
                        dxAcc.withUnsafeMutableBufferPointer { RMSNormKernel.backward(dOut: db, x: xb, weight: wb, rstd: rb, dX: $0) }
                    }
                } } } }
        }

        let mem = device.memory
        let gx = try mem.upload(x, as: .bf16), gw = try mem.upload(w, as: .bf16), gdy = try mem.upload(dy, as: .bf16)
        let gy = try mem.allocate(bytes: n * 2), grstd = try mem.allocate(bytes: rows * 4)
        let gdx = try mem.allocate(bytes: n * 4)
        defer { [gx, gw, gdy, gy, grstd, gdx].forEach(mem.free) }

        var ok = true
        try mem.fill(gy, byte: 0xFF); try mem.fill(grstd, byte: 0xFF)
        try CUDARMSNorm.forward(cache, x: gx, weight: gw, out: gy, rstd: grstd, rows: rows, width: width, eps: eps)
        say("  (kernels \(cache.lastCompiled ? "compiled with NVRTC" : "loaded from the cache"))")
        ok = check("forward y (bf16)", gpu: try mem.download(gy, count: n, as: .bf16), cpu: y, f32: false) && ok
        ok = check("forward rstd (f32)", gpu: try mem.download(grstd, count: rows, as: .f32), cpu: rstd, f32: true) && ok
        // Backward from the checked GPU rstd: equal to the CPU's within 1e-5 as just verified.
        try mem.fill(gdx, byte: 0xFF)
        try CUDARMSNorm.backward(cache, dOut: gdy, x: gx, weight: gw, rstd: grstd, dX: gdx, rows: rows, width: width, accumulate: false)
        ok = check("backward dX (f32, overwrite)", gpu: try mem.download(gdx, count: n, as: .f32), cpu: dxFresh, f32: true) && ok
        try mem.copy(dx0, into: gdx, as: .f32)
        try CUDARMSNorm.backward(cache, dOut: gdy, x: gx, weight: gw, rstd: grstd, dX: gdx, rows: rows, width: width, accumulate: true)
        ok = check("backward dX (f32, accumulate)", gpu: try mem.download(gdx, count: n, as: .f32), cpu: dxAcc, f32: true) && ok

        try timing("forward", bytes: n * 2 * 2 + width * 2 + rows * 4) {
            try CUDARMSNorm.forward(cache, x: gx, weight: gw, out: gy, rstd: grstd, rows: rows, width: width, eps: eps)
        }
        try timing("backward (overwrite)", bytes: n * 2 * 2 + n * 4 + width * 2 + rows * 4) {
            try CUDARMSNorm.backward(cache, dOut: gdy, x: gx, weight: gw, rstd: grstd, dX: gdx, rows: rows, width: width, accumulate: false)
        }
        return ok
    }

    func swiGLU(rows: Int, width: Int) throws -> Bool {
        say("SwiGLU \(rows)×\(width) (bf16 in/out, f32 math):")
        let n = rows * width
        let gate = Self.random(n, -6, 6, seed: 5), up = Self.random(n, -2, 2, seed: 6), dOut = Self.random(n, -1, 1, seed: 7)
        var out = [Float](repeating: 0, count: n), dGate = out, dUp = out
        gate.withUnsafeBufferPointer { gb in up.withUnsafeBufferPointer { ub in
            out.withUnsafeMutableBufferPointer { SwiGLUKernel.forward(gate: gb, up: ub, out: $0) }
            dOut.withUnsafeBufferPointer { db in
                dGate.withUnsafeMutableBufferPointer { dgb in dUp.withUnsafeMutableBufferPointer { dub in
                    SwiGLUKernel.backward(dOut: db, gate: gb, up: ub, dGate: dgb, dUp: dub)
                } }
            } } }

        let mem = device.memory
        let gg = try mem.upload(gate, as: .bf16), gu = try mem.upload(up, as: .bf16), gd = try mem.upload(dOut, as: .bf16)
        let go = try mem.allocate(bytes: n * 2), gdg = try mem.allocate(bytes: n * 2), gdu = try mem.allocate(bytes: n * 2)
        defer { [gg, gu, gd, go, gdg, gdu].forEach(mem.free) }

        var ok = true
        try mem.fill(go, byte: 0xFF)
        try CUDASwiGLU.forward(cache, gate: gg, up: gu, out: go, count: n)
        say("  (kernels \(cache.lastCompiled ? "compiled with NVRTC" : "loaded from the cache"))")
        ok = check("forward out (bf16)", gpu: try mem.download(go, count: n, as: .bf16), cpu: out, f32: false) && ok
        try mem.fill(gdg, byte: 0xFF); try mem.fill(gdu, byte: 0xFF)
        try CUDASwiGLU.backward(cache, dOut: gd, gate: gg, up: gu, dGate: gdg, dUp: gdu, count: n)
        ok = check("backward dGate (bf16)", gpu: try mem.download(gdg, count: n, as: .bf16), cpu: dGate, f32: false) && ok
        ok = check("backward dUp (bf16)", gpu: try mem.download(gdu, count: n, as: .bf16), cpu: dUp, f32: false) && ok

        try timing("forward", bytes: n * 2 * 3) { try CUDASwiGLU.forward(cache, gate: gg, up: gu, out: go, count: n) }
        try timing("backward", bytes: n * 2 * 5) {
            try CUDASwiGLU.backward(cache, dOut: gd, gate: gg, up: gu, dGate: gdg, dUp: gdu, count: n)
        }
        return ok
    }
}

func fmt(_ v: Double, digits: Int = -1) -> String {
    if digits >= 0 {
        var p = 1.0
        for _ in 0..<digits { p *= 10 }
        let r = (v * p).rounded() / p
        return "\(r)"
    }
    // scientific with 2 significant digits
    if v == 0 { return "0" }
    var e = 0, m = abs(v)
    while m >= 10 { m /= 10; e += 1 }
    while m < 1 { m *= 10; e -= 1 }
    let mr = (m * 10).rounded() / 10
    return "\(v < 0 ? "-" : "")\(mr)e\(e)"
}
