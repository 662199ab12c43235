/// Which backend a command runs on.
public enum Device: String, CaseIterable, Sendable {
    case cpu, cuda, auto

    /// The backend for this choice. `auto` falls back to the CPU, saying why in one line.
    public func makeBackend(note: (String) -> Void = { _ in }) throws -> any Backend {
        switch self {
        case .cpu: return CPUBackend()
        case .cuda: throw BackendError.unavailable(Device.cudaUnavailable)
        case .auto:
            note("using the CPU: \(Device.cudaUnavailable)")
            return CPUBackend()
        }
    }

    static let cudaUnavailable = "the CUDA backend is not part of this build yet"
}
