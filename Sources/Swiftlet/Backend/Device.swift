/// Which backend a command runs on.
public enum Device: String, CaseIterable, Sendable {
    case cpu, cuda, auto

    /// The backend for this choice. `auto` falls back to the CPU, saying why in one line.
    public func makeBackend(note: (String) -> Void = { _ in }) throws -> any Backend {
        switch self {
        case .cpu: return CPUBackend()
        case .cuda: throw BackendError.unavailable(Device.cudaUnavailable)
        case .auto:
            switch CUDALibraries.shared {
            case let .failure(error): note("using the CPU: \(error)")
            case .success: note(Device.cudaUnfinished)
            }
            return CPUBackend()
        }
    }

    static let cudaUnfinished = "the CUDA backend's training ops are not finished yet; using the CPU"

    /// Why `--device cuda` cannot run: the loader's one line when the libraries are missing.
    static var cudaUnavailable: String {
        switch CUDALibraries.shared {
        case let .failure(error): return "\(error)"
        case .success: return "the CUDA backend's training ops are not finished yet (run with --device cpu or auto)"
        }
    }
}
