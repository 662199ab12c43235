import CCUDA
import Foundation

/// The CUDA backend: bf16 storage for weights and activations, f32 for LoRA parameters, optimizer
/// state, norms' rstd and attention's log-sum-exp; NVRTC-compiled kernels (CUDA/Kernels/) and
/// cuBLASLt products. Every op has the semantics of its CPU twin and is checked against it by
/// `swiftlet doctor`.
public final class CUDABackend: Backend, @unchecked Sendable {
    public let name = "cuda"
    /// bf16, or fp16 on GPUs without bf16 (compute capability 7.x).
    public let computeType: DType
    public let memory = MemoryCounter()
    public let device: CUDADevice
    let kernels: KernelCache
    let blas: CUBLASLt
    private var blocks: [UInt64: DeviceBuffer] = [:]
    /// Descriptor tables of the multi-tensor kernels, uploaded once per list of tensors.
    let multiTensorTables = MultiTensorTables()
    private let prelude: String
    private var functions: [String: [(source: String, kernel: CUDAKernel)]] = [:]
    let lock = NSLock()
    /// Pinned host blocks for offloaded activations (gradient checkpointing's offload mode).
    let pinnedHost: PinnedHostPool
    /// The LoRA weights' bf16 parts prepared for the stretch running now (`withPreparedLoRA`).
    var preparedLoRA: CUDAPreparedLoRA?
    /// cuBLAS's grouped GEMM for a mixture's experts, loaded on first use (`CUBLASGrouped.enabled`).
    lazy var groupedBLAS: CUBLASGrouped? = {
        do { return try CUBLASGrouped(stream: device.stream, besideCUBLASLt: device.libs.cublasLt?.path) } catch {
            FileHandle.standardError.write(Data("swiftlet: no cuBLAS grouped GEMM (\(error)); the experts' GEMMs run one by one\n".utf8))
            return nil
        }
    }()
    /// Offloads whose copies may still be reading their source (`settleOffloads`).
    var offloadsInFlight: [(source: Tensor, copied: CUDAEvent)] = []
    /// Which attention kernels run where they apply: cuDNN's fused attention (the default), our
    /// tiled tensor-core kernels, or the simple CUDA-core ones (environment SWIFTLET_ATTENTION=
    /// cudnn|swiftlet|simple; the doctor switches them to check and time each).
    public var attentionKernels: AttentionKernels
    public enum AttentionKernels: String, CaseIterable, Sendable {
        case cudnn
        /// Our tensor-core kernels (deterministic), falling back to the simple ones.
        case swiftlet
        case simple
    }
    /// cuDNN when it loaded (see `cudnnProblem` otherwise), with the attention graphs built so far
    /// and the geometries it has no engine for.
    let cudnnLibrary: CUDNN?
    public let cudnnProblem: String?
    var cudnnForwardGraphs: [CUDNNAttention.Key: CUDNNAttention.Forward] = [:]
    var cudnnBackwardGraphs: [CUDNNAttention.Key: CUDNNAttention.Backward] = [:]
    var cudnnFailedKeys: Set<CUDNNAttention.Key> = []
    /// Head dims whose tensor-core tiles this GPU refused (a launch or compile error): the simple kernels
    /// run them instead, and the first refusal is said on stderr, with why.
    public internal(set) var flashRefused: [Int: String] = [:]
    /// "9.14.0 (path)" when cuDNN loaded.
    public var cudnnDescription: String? { cudnnLibrary.map { "\($0.versionString) (\($0.path))" } }

    /// `storage` nil picks bf16 where the GPU has it (compute capability 8.0+), else fp16.
    public init(libraries: CUDALibraries? = nil, ordinal: Int = 0, storage: DType? = nil) throws {
        let libs = try libraries ?? CUDALibraries()
        device = try CUDADevice(libs: libs, ordinal: ordinal)
        computeType = storage ?? (device.computeCapability.major >= 8 ? .bf16 : .f16)
        guard computeType == .bf16 || computeType == .f16 else {
            throw CUDAError.invalid("CUDA storage must be bf16 or fp16, not \(computeType)")
        }
        prelude = CUDAKernelSource.prelude(storage: computeType)
        let requested = CUDALibrarySearch.processEnvironment["SWIFTLET_ATTENTION"] ?? "cudnn"
        guard let attention = AttentionKernels(rawValue: requested) else {
            throw CUDAError.invalid("SWIFTLET_ATTENTION=\(requested): expected one of "
                                    + AttentionKernels.allCases.map(\.rawValue).joined(separator: ", "))
        }
        attentionKernels = attention
        kernels = KernelCache(device: device)
        pinnedHost = PinnedHostPool(libs: libs)
        guard let cublasLt = libs.cublasLt else {
            throw CUDAError.invalid(libs.cublasLtProblem ?? "libcublasLt not found")
        }
        blas = try CUBLASLt(library: cublasLt, device: device)
        var cudnn: CUDNN?, problem = libs.cudnnProblem
        if let library = libs.cudnn {
            do { cudnn = try CUDNN(library: library, stream: device.stream) } catch { problem = "\(error)" }
        }
        cudnnLibrary = cudnn
        cudnnProblem = problem
    }

    /// Runs device work that can only fail through a broken device or a bug: such failures stop
    /// the program with the driver's message rather than leave wrong numbers behind. With
    /// profiling on, each op is timed with device events (and the stream synchronised).
    func run(_ op: String = #function, _ body: () throws -> Void) {
        do { try runThrowing(op, body) } catch { fatalError("\(error)") }
    }

    /// As `run`, profiled alike, but a failure comes back to the caller (one that has a way around it).
    func runThrowing(_ op: String, _ body: () throws -> Void) throws {
        if profile != nil {
            let ms = try device.time(body)
            let name = String(op.prefix { $0 != "(" })
            profile![name, default: (0, 0)].calls += 1
            profile![name, default: (0, 0)].milliseconds += Double(ms)
        } else {
            try body()
        }
    }

    /// Per-op device time while profiling (`startProfiling()`), by op name.
    public private(set) var profile: [String: (calls: Int, milliseconds: Double)]?
    public func startProfiling() { profile = [:] }

    /// The profile as a table, largest share first.
    public func profileReport() -> String {
        guard let profile else { return "" }
        let total = profile.values.reduce(0) { $0 + $1.milliseconds }
        var lines = ["| op | calls | ms | share |", "|---|---|---|---|"]
        for (name, entry) in profile.sorted(by: { $0.value.milliseconds > $1.value.milliseconds }) {
            lines.append(String(format: "| %@ | %d | %.1f | %.1f%% |", name, entry.calls, entry.milliseconds,
                                100 * entry.milliseconds / max(total, 1e-9)))
        }
        lines.append(String(format: "| total | | %.1f | |", total))
        return lines.joined(separator: "\n")
    }

    /// A kernel of `source`, compiled for this backend's storage type. Every launch asks for its
    /// kernel, so found ones are kept by name: the module cache's key hashes the whole source with
    /// the prelude (tens of KB), which cost more host time than a small kernel's GPU time. The
    /// source is kept beside the kernel because two families may name a kernel alike; comparing a
    /// static source with itself is immediate.
    func function(_ name: String, _ source: String) throws -> CUDAKernel {
        if let found = lock.withLock({ functions[name]?.first(where: { $0.source == source })?.kernel }) { return found }
        let kernel = try kernels.function(name, source: prelude + source)
        lock.withLock { functions[name, default: []].append((source, kernel)) }
        return kernel
    }

    func expect(_ t: Tensor, _ dtype: DType, file: StaticString = #file, line: UInt = #line) {
        precondition(t.dtype == dtype && t.backend === self, "expected a CUDA \(dtype) tensor, got \(t)", file: file, line: line)
    }

    public func synchronize() { run { try device.synchronize() } }

    // MARK: Memory

    public func zeros(_ shape: Shape, _ dtype: DType) throws -> Tensor {
        let t = try empty(shape, dtype)
        // Queued on the stream like the kernels that follow: no host wait.
        run { try device.libs.check(device.libs.cuMemsetD8Async(t.device, 0, t.buffer.byteCount, device.stream), "cuMemsetD8Async") }
        return t
    }

    /// Device memory straight from the caching allocator, contents undefined: for outputs that an
    /// op overwrites completely (a GEMM with beta 0, a kernel writing every element).
    public func empty(_ shape: Shape, _ dtype: DType) throws -> Tensor {
        let bytes = Swift.max(shape.count * dtype.size, 1)
        let block = try device.memory.allocate(bytes: bytes)
        lock.withLock { blocks[block.pointer] = block }
        memory.allocated(block.binBytes, requested: bytes)
        return Tensor(buffer: Buffer(byteCount: bytes, address: UnsafeMutableRawPointer(bitPattern: UInt(block.pointer))!,
                                     backend: self),
                      dtype: dtype, shape: shape)
    }

    public func release(_ buffer: Buffer) {
        let pointer = UInt64(UInt(bitPattern: buffer.address))
        guard let block = lock.withLock({ blocks.removeValue(forKey: pointer) }) else { return }
        memory.freed(block.binBytes, requested: buffer.byteCount)
        device.memory.free(block)
    }

    public func upload(_ values: [Float], _ shape: Shape, _ dtype: DType) throws -> Tensor {
        precondition(values.count == shape.count, "\(values.count) values for shape \(shape)")
        let t = try empty(shape, dtype)
        switch dtype {
        case .f32: try copyToDevice(values, t)
        case .bf16: try copyToDevice(values.map(BFloat16.bits), t)
        case .f16: try copyToDevice(values.map(Half.bits), t)
        default: preconditionFailure("upload of Float values as \(dtype)")
        }
        return t
    }

    public func upload(_ values: [Int32], _ shape: Shape) throws -> Tensor {
        precondition(values.count == shape.count, "\(values.count) values for shape \(shape)")
        let t = try empty(shape, .i32)
        try copyToDevice(values, t)
        return t
    }

    private func copyToDevice<T>(_ values: [T], _ t: Tensor) throws {
        guard !values.isEmpty else { return }
        try values.withUnsafeBytes {
            try device.libs.check(device.libs.cuMemcpyHtoD(t.device, $0.baseAddress, $0.count),
                                  "cuMemcpyHtoD_v2")
        }
    }

    /// The tensor's bytes seen as elements of T (its own element type, or UInt8 for raw bytes).
    private func copyToHost<T>(_ t: Tensor, as: T.Type, zero: T) -> [T] {
        precondition(t.backend === self, "expected a CUDA tensor, got \(t)")
        var out = [T](repeating: zero, count: t.byteCount / MemoryLayout<T>.stride)
        guard !out.isEmpty else { return out }
        synchronize()
        run {
            try out.withUnsafeMutableBytes {
                try device.libs.check(device.libs.cuMemcpyDtoH($0.baseAddress, t.device, $0.count), "cuMemcpyDtoH_v2")
            }
        }
        return out
    }

    public func download(_ tensor: Tensor) -> [Float] {
        switch tensor.dtype {
        case .f32: return copyToHost(tensor, as: Float.self, zero: 0)
        case .bf16: return Self.widened(copyToHost(tensor, as: UInt16.self, zero: 0), BFloat16.float)
        case .f16: return Self.widened(copyToHost(tensor, as: UInt16.self, zero: 0), Half.float)
        default: preconditionFailure("download of \(tensor.dtype) as Float")
        }
    }

    /// 16-bit values widened to Float on every core: a merged export reads every weight back through here
    /// (10^7–10^8 values a tensor at 7B).
    private static func widened(_ bits: [UInt16], _ widen: (UInt16) -> Float) -> [Float] {
        var out = [Float](repeating: 0, count: bits.count)
        bits.withUnsafeBufferPointer { bits in
            out.withUnsafeMutableBufferPointer { out in
                parallelFor(bits.count, grain: 1 << 20) { range in for i in range { out[i] = widen(bits[i]) } }
            }
        }
        return out
    }

    public func downloadInts(_ tensor: Tensor) -> [Int32] {
        expect(tensor, .i32)
        return copyToHost(tensor, as: Int32.self, zero: 0)
    }

    public func upload(bytes: [UInt8], _ shape: Shape, _ dtype: DType) throws -> Tensor {
        precondition(bytes.count == shape.count * dtype.size, "\(bytes.count) bytes for \(dtype) \(shape)")
        let t = try empty(shape, dtype)
        try copyToDevice(bytes, t)
        return t
    }

    public func downloadBytes(_ tensor: Tensor) -> [UInt8] { copyToHost(tensor, as: UInt8.self, zero: 0) }

    public func copy(_ source: Tensor, into destination: Tensor) {
        precondition(source.count == destination.count, "copy \(source.shape) into \(destination.shape)")
        guard source.dtype != destination.dtype else {
            // Same type (any dtype, u8 codes included): a device-to-device copy on the stream.
            run {
                try device.libs.check(device.libs.cuMemcpyDtoDAsync(destination.device, source.device, source.byteCount, device.stream),
                                      "cuMemcpyDtoDAsync_v2")
            }
            return
        }
        convert(source, into: destination)
    }
}

extension Tensor {
    /// The device address of a CUDA tensor's first element.
    var device: CUdeviceptr { CUdeviceptr(UInt(bitPattern: address)) }
}
