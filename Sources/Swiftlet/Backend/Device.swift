/// Which backend a command runs on.
public enum Device: String, CaseIterable, Sendable {
    case cpu, cuda, auto

    /// The backend for this choice. `auto` takes the GPU when the CUDA libraries and a device are
    /// there, else falls back to the CPU, saying why in one line; `cuda` fails with that line.
    /// `ordinal`: which GPU (a data-parallel rank's local rank).
    public func makeBackend(precision: Precision = .auto, ordinal: Int = 0, note: (String) -> Void = { _ in }) throws -> any Backend {
        switch self {
        case .cpu: return CPUBackend()
        case .cuda: return try CUDABackend(ordinal: ordinal, storage: precision.storage)
        case .auto:
            do { return try CUDABackend(ordinal: ordinal, storage: precision.storage) } catch {
                note("using the CPU: \(error)")
                return CPUBackend()
            }
        }
    }
}

/// The GPU's storage type: bf16 where the GPU has it (compute capability 8.0+), else fp16 with
/// dynamic loss scaling. The CPU always computes in f32.
public enum Precision: String, CaseIterable, Sendable {
    case auto, bf16, fp16

    var storage: DType? {
        switch self {
        case .auto: return nil
        case .bf16: return .bf16
        case .fp16: return .f16
        }
    }
}
