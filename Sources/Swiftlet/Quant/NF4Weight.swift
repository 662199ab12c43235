/// An NF4-quantized weight living on a backend: the packed codes and the absmax tensors of an
/// `NF4Tensor`, uploaded once. Layers dequantize it into a scratch tensor of the compute type
/// right before each GEMM (`dequantized()`), so the 16-bit weight never stays resident.
public struct NF4Weight {
    /// u8, ceil(count / 2) bytes, first element in the high nibble.
    public var packed: Tensor
    public var absmax: Absmax
    /// Logical shape, [out, in] for a linear weight.
    public var shape: Shape
    public var blockSize: Int

    public enum Absmax {
        /// f32, one per block.
        case plain(Tensor)
        /// u8 codes into `codebook` (f32 [256]), one f32 scale per `blockSize` codes, plus offset.
        case nested(codes: Tensor, scales: Tensor, codebook: Tensor, offset: Float, blockSize: Int)
    }

    public var backend: any Backend { packed.backend }
    public var count: Int { shape.count }

    public init(packed: Tensor, absmax: Absmax, shape: Shape, blockSize: Int) {
        precondition(packed.dtype == .u8 && packed.count == (shape.count + 1) / 2,
                     "NF4 codes of \(shape) must be \((shape.count + 1) / 2) bytes, not \(packed)")
        self.packed = packed
        self.absmax = absmax
        self.shape = shape
        self.blockSize = blockSize
    }

    /// Uploads a host-side NF4 tensor.
    public init(_ q: NF4Tensor, on backend: any Backend) throws {
        self.init(packed: try backend.upload(bytes: q.packed, [q.packed.count], .u8),
                  absmax: try Absmax(q.absmax, on: backend), shape: q.shape, blockSize: q.blockSize)
    }

    /// Quantizes a dense host weight (bitsandbytes' `Params4bit`) and uploads it.
    public init(quantizing values: [Float], shape: Shape, doubleQuant: Bool, on backend: any Backend) throws {
        try self.init(NF4.quantize(values, shape: shape, doubleQuant: doubleQuant), on: backend)
    }

    /// Quantizes a dense tensor where it lives (`Backend.quantizeNF4`): the weight
    /// `init(quantizing: backend.download(dense), …)` makes, bit for bit, without moving the dense
    /// values to the host. Double quantization brings back only the absmax (one f32 per 64 elements)
    /// for the host's nested quantization, whose offset is a sum in torch's order.
    public init(quantizing dense: Tensor, doubleQuant: Bool) throws {
        let backend = dense.backend, blockSize = NF4.defaultBlockSize
        let packed = try backend.empty([(dense.count + 1) / 2], .u8)
        let absmax = try backend.empty([(dense.count + blockSize - 1) / blockSize], .f32)
        backend.quantizeNF4(dense, blockSize: blockSize, into: packed, absmax: absmax)
        let scales = doubleQuant ? try Absmax(NF4Absmax(backend.download(absmax), doubleQuant: true), on: backend)
                                 : .plain(absmax)
        self.init(packed: packed, absmax: scales, shape: dense.shape, blockSize: blockSize)
    }

    /// A fresh tensor of the compute type holding the dequantized weight.
    public func dequantized() throws -> Tensor {
        // Written whole by the dequantization: no zero fill first.
        let out = try backend.empty(shape, backend.computeType)
        backend.dequantizeNF4(self, into: out)
        return out
    }

    /// The host-side form (for saving in bitsandbytes' layout).
    public func host() -> NF4Tensor {
        let b = backend
        let absmax: NF4Absmax
        switch self.absmax {
        case let .plain(t):
            absmax = .plain(b.download(t))
        case let .nested(codes, scales, _, offset, nestedBlock):
            absmax = .nested(NestedAbsmax(codes: b.downloadBytes(codes), scales: b.download(scales),
                                          offset: offset, blockSize: nestedBlock))
        }
        return NF4Tensor(packed: b.downloadBytes(packed), absmax: absmax, shape: shape, blockSize: blockSize)
    }
}

extension NF4Weight.Absmax {
    /// Uploads a host-side absmax.
    init(_ absmax: NF4Absmax, on backend: any Backend) throws {
        switch absmax {
        case let .plain(values):
            self = .plain(try backend.upload(values, [values.count], .f32))
        case let .nested(n):
            self = .nested(codes: try backend.upload(bytes: n.codes, [n.codes.count], .u8),
                           scales: try backend.upload(n.scales, [n.scales.count], .f32),
                           codebook: try backend.upload(DynamicMap.signed, [256], .f32),
                           offset: n.offset, blockSize: n.blockSize)
        }
    }
}
