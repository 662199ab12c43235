/// NF4 quantization and dequantization, bit-identical to bitsandbytes' `quantize_4bit` /
/// `dequantize_4bit` with quant_type "nf4" (its pure-torch reference).
extension NF4 {
    /// bitsandbytes' defaults: NF4 block 64, nested (absmax) block 256.
    public static let defaultBlockSize = 64
    public static let nestedBlockSize = 256

    /// Quantizes `values` (row-major, `shape`); `doubleQuant` is bitsandbytes'
    /// `compress_statistics` / `bnb_4bit_use_double_quant`.
    public static func quantize(_ values: [Float], shape: Shape, blockSize: Int = defaultBlockSize,
                                doubleQuant: Bool) -> NF4Tensor {
        precondition(values.count == shape.count, "\(values.count) values for shape \(shape)")
        let (packed, absmax) = codes(values, blockSize: blockSize)
        return NF4Tensor(packed: packed, absmax: NF4Absmax(absmax, doubleQuant: doubleQuant), shape: shape,
                         blockSize: blockSize)
    }

    /// The 4-bit half of `quantize`: the packed codes (first element in the high nibble, an odd count
    /// padded with the code of 0) and each block's absmax. `Backend.quantizeNF4` computes the same
    /// where the tensor lives.
    static func codes(_ values: [Float], blockSize: Int) -> (packed: [UInt8], absmax: [Float]) {
        let (scaled, absmax) = BlockwiseScaling.scale(values, blockSize: blockSize)
        var packed = [UInt8](repeating: 0, count: (values.count + 1) / 2)
        let zero = code(0)
        scaled.withUnsafeBufferPointer { scaled in
            packed.withUnsafeMutableBufferPointer { packed in
                parallelFor(packed.count, grain: 1 << 16) { chunk in
                    for i in chunk {
                        let high = code(scaled[2 * i])
                        let low = 2 * i + 1 < scaled.count ? code(scaled[2 * i + 1]) : zero
                        packed[i] = high << 4 | low
                    }
                }
            }
        }
        return (packed, absmax)
    }
}

extension NF4Absmax {
    /// The blocks' absmax as `quantize` stores it: plainly, or double-quantized (bitsandbytes'
    /// `compress_statistics`): offset = absmax.mean() (torch: a Float32 sum in its order, then / n),
    /// then absmax - offset 8-bit blockwise.
    init(_ absmax: [Float], doubleQuant: Bool) {
        guard doubleQuant else {
            self = .plain(absmax)
            return
        }
        let offset = TorchFloatSum.sum(absmax) / Float(absmax.count)
        let (codes, scales) = Blockwise8Bit.quantize(absmax.map { $0 - offset }, blockSize: NF4.nestedBlockSize)
        self = .nested(NestedAbsmax(codes: codes, scales: scales, offset: offset, blockSize: NF4.nestedBlockSize))
    }
}

extension NF4Tensor {
    /// The values in Float32: codebook[code] · absmax[block], unrounded (bitsandbytes rounds
    /// this product once to the output dtype).
    public func dequantized() -> [Float] {
        let scales = absmax.values
        var out = [Float](repeating: 0, count: count)
        packed.withUnsafeBufferPointer { packed in
            for i in 0..<count {
                let byte = packed[i / 2]
                let code = i % 2 == 0 ? byte >> 4 : byte & 0xF
                out[i] = NF4.codebook[Int(code)] * scales[i / blockSize]
            }
        }
        return out
    }
}
