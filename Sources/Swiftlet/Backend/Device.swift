/// Which backend a command runs on.
public enum Device: String, CaseIterable, Sendable {
    case cpu, cuda, auto

    /// The backend for this choice. `auto` takes the GPU when the CUDA libraries and a device are
    /// there, else falls back to the CPU, saying why in one line; `cuda` fails with that line.
    public func makeBackend(note: (String) -> Void = { _ in }) throws -> any Backend {
        switch self {
        case .cpu: return CPUBackend()
        case .cuda: return try CUDABackend()
        case .auto:
            do { return try CUDABackend() } catch {
                note("using the CPU: \(error)")
                return CPUBackend()
            }
        }
    }
}
