/// The frozen base weight of a `Linear`: a dense tensor of the compute type, or NF4 codes
/// (QLoRA) that are dequantized for each use.
public enum FrozenWeight {
    case dense(Tensor)
    case nf4(NF4Weight)

    public var shape: Shape {
        switch self {
        case let .dense(t): return t.shape
        case let .nf4(w): return w.shape
        }
    }

    public var backend: any Backend {
        switch self {
        case let .dense(t): return t.backend
        case let .nf4(w): return w.backend
        }
    }

    public var isQuantized: Bool { if case .nf4 = self { return true } else { return false } }

    /// The weight as a compute-type tensor for one GEMM: the tensor itself when dense; for NF4 a
    /// freshly dequantized scratch tensor, freed as soon as the caller drops it (the caching
    /// allocator hands the same memory to the next layer).
    public func materialized() throws -> Tensor {
        switch self {
        case let .dense(t): return t
        case let .nf4(w): return try w.dequantized()
        }
    }

    /// The values on the host in Float32 (what the model computes with: NF4 dequantized and
    /// rounded to the compute type).
    public func floats() throws -> [Float] {
        backend.download(try materialized())
    }
}
