/// The frozen base weight of a `Linear`: a dense tensor of the compute type, or NF4 codes
/// (QLoRA) that are dequantized for each use.
public enum FrozenWeight {
    case dense(Tensor)
    case nf4(NF4Weight)
    /// NF4 weights stacked by rows, each quantized on its own: an expert's fused gate_up from a
    /// checkpoint that stores (and bitsandbytes quantizes) w1 and w3 apart. Dequantized into the
    /// row blocks of one scratch tensor.
    case nf4Rows([NF4Weight])

    public var shape: Shape {
        switch self {
        case let .dense(t): return t.shape
        case let .nf4(w): return w.shape
        case let .nf4Rows(parts): return [parts.reduce(0) { $0 + $1.shape[0] }, parts[0].shape[1]]
        }
    }

    public var backend: any Backend {
        switch self {
        case let .dense(t): return t.backend
        case let .nf4(w): return w.backend
        case let .nf4Rows(parts): return parts[0].backend
        }
    }

    public var isQuantized: Bool { if case .dense = self { return false } else { return true } }

    /// The weight as a compute-type tensor for one GEMM: the tensor itself when dense; for NF4 a
    /// freshly dequantized scratch tensor, freed as soon as the caller drops it (the caching
    /// allocator hands the same memory to the next layer).
    public func materialized() throws -> Tensor {
        switch self {
        case let .dense(t): return t
        case let .nf4(w): return try w.dequantized()
        case let .nf4Rows(parts):
            let out = try backend.empty(shape, backend.computeType)
            var row = 0
            for part in parts {
                backend.dequantizeNF4(part, into: out.rows(row..<(row + part.shape[0])))
                row += part.shape[0]
            }
            return out
        }
    }

    /// The dequantizations `materialized()` runs, each into its part of `out` (a compute-type tensor of
    /// this weight's shape): none when dense. A caller can run many weights' at once
    /// (`Backend.dequantizeNF4(_:into:)` with arrays).
    func dequantizations(into out: Tensor) -> [(weight: NF4Weight, out: Tensor)] {
        switch self {
        case .dense: return []
        case let .nf4(w): return [(w, out)]
        case let .nf4Rows(parts):
            var row = 0
            return parts.map { part in
                defer { row += part.shape[0] }
                return (part, out.rows(row..<(row + part.shape[0])))
            }
        }
    }

    /// The values on the host in Float32 (what the model computes with: NF4 dequantized and
    /// rounded to the compute type).
    public func floats() throws -> [Float] {
        backend.download(try materialized())
    }
}
