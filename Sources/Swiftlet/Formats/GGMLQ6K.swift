/// ggml's Q6_K blocks, byte for byte as `quantize_row_q6_K_ref` writes them (llama.cpp's quantizer
/// without an importance matrix): per super-block of 256 values, 210 bytes — 128 bytes of the low
/// 4 bits and 64 bytes of the high 2 bits of the 6-bit levels, 16 int8 scales, f16 d. Each of the
/// sixteen 16-value sub-blocks is fit symmetrically (x ≈ d·sc·(q − 32)) by `make_qx_quants`
/// (weights x², 19 candidate scales), the scales quantized to int8 against the largest in
/// magnitude (d = −max/128), then the levels recomputed from the stored scales.
public enum GGMLQ6K {
    public static let blockSize = 256
    public static let blockBytes = 210

    public static func quantize(_ values: [Float]) -> [UInt8] {
        precondition(values.count % blockSize == 0, "Q6_K needs a multiple of 256 values, not \(values.count)")
        let blocks = values.count / blockSize
        var out = [UInt8](repeating: 0, count: blocks * blockBytes)
        var L = [Int8](repeating: 0, count: 256)
        var scales = [Float](repeating: 0, count: 16)
        values.withUnsafeBufferPointer { xs in
            out.withUnsafeMutableBufferPointer { y in
                for b in 0..<blocks {
                    let x = xs.baseAddress! + b * blockSize
                    let base = b * blockBytes
                    var maxScale: Float = 0, maxAbsScale: Float = 0
                    for ib in 0..<16 {
                        let scale = L.withUnsafeMutableBufferPointer { GGMLKQuant.makeQX(16, 32, x + 16 * ib, $0.baseAddress! + 16 * ib) }
                        scales[ib] = scale
                        if abs(scale) > maxAbsScale { maxAbsScale = abs(scale); maxScale = scale }
                    }
                    if maxAbsScale < GGMLKQuant.groupMaxEps { continue }  // all 210 bytes zero (d = +0)
                    let iscale = -128 / maxScale
                    let dBits = Half.bits(1 / iscale)
                    y[base + 208] = UInt8(dBits & 0xFF); y[base + 209] = UInt8(dBits >> 8)
                    var sc = [Int8](repeating: 0, count: 16)
                    for ib in 0..<16 {
                        // int8_t = MIN(127, nearest_int(·)): a conversion of the int to int8_t.
                        sc[ib] = Int8(truncatingIfNeeded: Swift.min(127, GGMLKQuant.nearestInt(iscale * scales[ib])))
                        y[base + 192 + ib] = UInt8(bitPattern: sc[ib])
                    }
                    let d0 = Half.float(dBits)
                    for j in 0..<16 {
                        let d = d0 * Float(sc[j])
                        if d == 0 { continue }
                        for ii in 0..<16 {
                            let l = GGMLKQuant.nearestInt(x[16 * j + ii] / d)
                            L[16 * j + ii] = Int8(Swift.max(-32, Swift.min(31, l)) + 32)
                        }
                    }
                    for j in stride(from: 0, to: 256, by: 128) {
                        let ql = base + j / 2, qh = base + 128 + j / 4
                        for l in 0..<32 {
                            let a = UInt8(L[j + l]), b2 = UInt8(L[j + l + 32]), c = UInt8(L[j + l + 64]), e = UInt8(L[j + l + 96])
                            y[ql + l] = (a & 0xF) | ((c & 0xF) << 4)
                            y[ql + l + 32] = (b2 & 0xF) | ((e & 0xF) << 4)
                            y[qh + l] = (a >> 4) | ((b2 >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6)
                        }
                    }
                }
            }
        }
        return out
    }

    /// The values Q6_K blocks store: d·sc·(q − 32) (ggml's `dequantize_row_q6_K`).
    public static func dequantize(_ bytes: [UInt8]) -> [Float] {
        precondition(bytes.count % blockBytes == 0)
        var out = [Float](repeating: 0, count: bytes.count / blockBytes * blockSize)
        for b in 0..<(bytes.count / blockBytes) {
            let base = b * blockBytes
            let d = Half.float(UInt16(bytes[base + 208]) | UInt16(bytes[base + 209]) << 8)
            for n in stride(from: 0, to: 256, by: 128) {
                let ql = base + n / 2, qh = base + 128 + n / 4, sc = base + 192 + n / 16
                for l in 0..<32 {
                    let isub = l / 16
                    let h = bytes[qh + l]
                    let q1 = Int(bytes[ql + l] & 0xF | ((h >> 0) & 3) << 4) - 32
                    let q2 = Int(bytes[ql + l + 32] & 0xF | ((h >> 2) & 3) << 4) - 32
                    let q3 = Int(bytes[ql + l] >> 4 | ((h >> 4) & 3) << 4) - 32
                    let q4 = Int(bytes[ql + l + 32] >> 4 | ((h >> 6) & 3) << 4) - 32
                    let s = { (k: Int) in Float(Int8(bitPattern: bytes[sc + isub + k])) }
                    let o = b * blockSize + n + l
                    out[o] = d * s(0) * Float(q1)
                    out[o + 32] = d * s(2) * Float(q2)
                    out[o + 64] = d * s(4) * Float(q3)
                    out[o + 96] = d * s(6) * Float(q4)
                }
            }
        }
        return out
    }
}
