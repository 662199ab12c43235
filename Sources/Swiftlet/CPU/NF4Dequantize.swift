import Foundation

extension CPUBackend {
    /// Per block: the scale (nested: code[q] · scale[b / nestedBlock], then + offset, each an f32
    /// rounding as bitsandbytes does); per element: NF4[code] · scale, rounded to out's dtype.
    public func dequantizeNF4(_ weight: NF4Weight, into out: Tensor) {
        precondition(out.count == weight.count, "dequantize NF4 \(weight.shape) into \(out)")
        let n = weight.count, block = weight.blockSize
        let packed = weight.packed.address.assumingMemoryBound(to: UInt8.self)
        let scales: [Float]
        switch weight.absmax {
        case let .plain(t):
            scales = download(t)
        case let .nested(codes, nestedScales, codebook, offset, nestedBlock):
            let q = codes.address.assumingMemoryBound(to: UInt8.self)
            let s = nestedScales.floats, map = codebook.floats
            scales = (0..<codes.count).map { b in
                let scaled = map[Int(q[b])] * s[b / nestedBlock]  // two roundings, never a fused multiply-add
                return scaled + offset
            }
        }
        let code = NF4.codebook
        func value(_ i: Int) -> Float {
            let byte = packed[i >> 1]
            return code[Int(i & 1 == 0 ? byte >> 4 : byte & 0xF)] * scales[i / block]
        }
        switch out.dtype {
        case .f32:
            let o = out.floats
            for i in 0..<n { o[i] = value(i) }
        case .bf16:
            let o = out.address.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { o[i] = BFloat16.bits(value(i)) }
        case .f16:
            let o = out.address.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { o[i] = Half.bits(value(i)) }
        default:
            preconditionFailure("dequantize NF4 into \(out.dtype)")
        }
    }
}
