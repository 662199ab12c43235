/// A tensor quantized to NF4 the way bitsandbytes stores it (`Params4bit` + `QuantState`):
/// two codes per byte, the first element in the high nibble (an odd count is padded with one
/// zero code), and one absmax per block of `blockSize` elements, stored plainly or itself
/// 8-bit quantized.
public struct NF4Tensor: Sendable, Equatable {
    /// ceil(count / 2) bytes.
    public var packed: [UInt8]
    public var absmax: NF4Absmax
    /// The logical shape of the original tensor ([out, in] for a weight).
    public var shape: Shape
    public var blockSize: Int

    public init(packed: [UInt8], absmax: NF4Absmax, shape: Shape, blockSize: Int) {
        self.packed = packed
        self.absmax = absmax
        self.shape = shape
        self.blockSize = blockSize
    }

    public var count: Int { shape.count }
    public var blockCount: Int { (count + blockSize - 1) / blockSize }
}

/// The per-block scales of an NF4 tensor.
public enum NF4Absmax: Sendable, Equatable {
    /// One Float32 per block.
    case plain([Float])
    /// Double quantization: absmax - offset, 8-bit blockwise with the signed dynamic map.
    case nested(NestedAbsmax)

    /// The Float32 scales, resolved as bitsandbytes does: dynamic[code] · scale[b / 256], then
    /// + offset, each rounded to Float32.
    public var values: [Float] {
        switch self {
        case let .plain(values):
            return values
        case let .nested(n):
            return Blockwise8Bit.dequantize(n.codes, absmax: n.scales, blockSize: n.blockSize).map { $0 + n.offset }
        }
    }
}

/// The 8-bit quantized absmax of a double-quantized NF4 tensor (bitsandbytes' `state2` plus
/// `offset`).
public struct NestedAbsmax: Sendable, Equatable {
    /// One code per NF4 block: an index into `DynamicMap.signed`.
    public var codes: [UInt8]
    /// One Float32 per `blockSize` codes (`nested_absmax`).
    public var scales: [Float]
    /// The mean of the original absmax, subtracted before quantizing (`nested_offset`).
    public var offset: Float
    /// 256 in bitsandbytes' `quantize_4bit`.
    public var blockSize: Int

    public init(codes: [UInt8], scales: [Float], offset: Float, blockSize: Int) {
        self.codes = codes
        self.scales = scales
        self.offset = offset
        self.blockSize = blockSize
    }
}
