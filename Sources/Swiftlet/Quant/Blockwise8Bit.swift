/// bitsandbytes' 8-bit blockwise quantization (`quantize_blockwise` / `dequantize_blockwise`):
/// one Float32 absmax per block and, per element, the index of the nearest level of a 256-entry
/// code book (by default the signed dynamic map). QLoRA uses it to compress the NF4 absmax
/// ("double quantization", block 256).
///
/// Matches bitsandbytes' pure-torch reference exactly. Its native CPU kernel finds the level
/// with an approximate reciprocal and can pick the other neighbour for values within ~1e-5 of a
/// midpoint; either choice dequantizes within one level.
public enum Blockwise8Bit {
    public static func quantize(_ x: [Float], blockSize: Int, codebook: [Float] = DynamicMap.signed)
        -> (codes: [UInt8], absmax: [Float])
    {
        let (scaled, absmax) = BlockwiseScaling.scale(x, blockSize: blockSize)
        let midpoints = CodeBook.midpoints(codebook)
        return (scaled.map { UInt8(CodeBook.bucket($0, midpoints: midpoints)) }, absmax)
    }

    /// codebook[code] · absmax[block], in Float32.
    public static func dequantize(_ codes: [UInt8], absmax: [Float], blockSize: Int,
                                  codebook: [Float] = DynamicMap.signed) -> [Float] {
        codes.indices.map { codebook[Int(codes[$0])] * absmax[$0 / blockSize] }
    }
}
