/// ggml's Q8_0 blocks, byte for byte as `quantize_row_q8_0_ref` (and gguf-py's `quants.Q8_0`)
/// writes them: per 32 values an f16 scale d = amax / 127, then 32 int8 = roundf(x / d), where
/// x / d is computed as x · (1 / d) in f32 and roundf rounds halves away from zero.
public enum GGMLQ8_0 {
    public static let blockSize = 32
    public static let blockBytes = 34

    /// `values.count` must be a multiple of 32 (rows are quantized independently and ggml
    /// requires the row length to be one).
    public static func quantize(_ values: [Float]) -> [UInt8] {
        precondition(values.count % blockSize == 0, "Q8_0 needs a multiple of 32 values, not \(values.count)")
        let blocks = values.count / blockSize
        var out = [UInt8](repeating: 0, count: blocks * blockBytes)
        values.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBytes { raw in
                for b in 0..<blocks {
                    var amax: Float = 0
                    for j in 0..<blockSize { amax = max(amax, abs(x[b * blockSize + j])) }
                    let d = amax / 127
                    let id: Float = d != 0 ? 1 / d : 0
                    let base = b * blockBytes
                    raw.storeBytes(of: Half.bits(d).littleEndian, toByteOffset: base, as: UInt16.self)
                    for j in 0..<blockSize {
                        let q = Int8((x[b * blockSize + j] * id).rounded(.toNearestOrAwayFromZero))
                        raw[base + 2 + j] = UInt8(bitPattern: q)
                    }
                }
            }
        }
        return out
    }

    /// The values a Q8_0 block stores: d · q.
    public static func dequantize(_ bytes: [UInt8]) -> [Float] {
        precondition(bytes.count % blockBytes == 0)
        var out: [Float] = []
        out.reserveCapacity(bytes.count / blockBytes * blockSize)
        for b in 0..<(bytes.count / blockBytes) {
            let base = b * blockBytes
            let d = Half.float(UInt16(bytes[base]) | UInt16(bytes[base + 1]) << 8)
            for j in 0..<blockSize { out.append(d * Float(Int8(bitPattern: bytes[base + 2 + j]))) }
        }
        return out
    }
}
