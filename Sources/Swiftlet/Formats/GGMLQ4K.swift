/// Helpers shared by ggml's k-quants (`ggml-quants.c`), with its f32 arithmetic kept operation for
/// operation (ggml-base is compiled without FMA contraction, so no fused multiply-adds here either).
enum GGMLKQuant {
    /// Super-block length (`QK_K`).
    static let superBlock = 256
    /// ggml's `GROUP_MAX_EPS`.
    static let groupMaxEps: Float = 1e-15

    /// ggml's `nearest_int`: round half to even through the 1.5·2^23 trick (|x| ≤ 4194303).
    @inline(__always) static func nearestInt(_ fval: Float) -> Int {
        let val = fval + 12582912
        return Int(Int32(bitPattern: val.bitPattern & 0x007f_ffff)) - 0x0040_0000
    }

    /// `make_qkx2_quants`: the scale and (negated) min of an asymmetric `nmax`-level fit of `x`
    /// under `weights`, searching `nstep + 1` scales around the min/max one; `L` receives the levels.
    static func makeQKX2(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
                         _ L: UnsafeMutablePointer<UInt8>, theMin: inout Float, _ laux: UnsafeMutablePointer<UInt8>,
                         rmin: Float, rdelta: Float, nstep: Int, useMad: Bool) -> Float {
        var min = x[0], max = x[0]
        var sumW = weights[0]
        var sumX = sumW * x[0]
        for i in 1..<n {
            if x[i] < min { min = x[i] }
            if x[i] > max { max = x[i] }
            let w = weights[i]
            sumW += w
            sumX += w * x[i]
        }
        if min > 0 { min = 0 }
        if max == min {
            for i in 0..<n { L[i] = 0 }
            theMin = -min
            return 0
        }
        var iscale = Float(nmax) / (max - min)
        var scale = 1 / iscale
        var bestError: Float = 0
        for i in 0..<n {
            let l = nearestInt(iscale * (x[i] - min))
            L[i] = UInt8(Swift.max(0, Swift.min(nmax, l)))
            var diff = scale * Float(L[i]) + min - x[i]
            diff = useMad ? abs(diff) : diff * diff
            bestError += weights[i] * diff
        }
        if nstep < 1 { theMin = -min; return scale }
        for step in 0...nstep {
            iscale = (rmin + rdelta * Float(step) + Float(nmax)) / (max - min)
            var sumL: Float = 0, sumL2: Float = 0, sumXL: Float = 0
            for i in 0..<n {
                var l = nearestInt(iscale * (x[i] - min))
                l = Swift.max(0, Swift.min(nmax, l))
                laux[i] = UInt8(l)
                let w = weights[i], fl = Float(l)
                sumL += w * fl
                sumL2 += w * fl * fl
                sumXL += w * fl * x[i]
            }
            let D = sumW * sumL2 - sumL * sumL
            if D > 0 {
                var thisScale = (sumW * sumXL - sumX * sumL) / D
                var thisMin = (sumL2 * sumX - sumL * sumXL) / D
                if thisMin > 0 {
                    thisMin = 0
                    thisScale = sumXL / sumL2
                }
                var curError: Float = 0
                for i in 0..<n {
                    var diff = thisScale * Float(laux[i]) + thisMin - x[i]
                    diff = useMad ? abs(diff) : diff * diff
                    curError += weights[i] * diff
                }
                if curError < bestError {
                    for i in 0..<n { L[i] = laux[i] }
                    bestError = curError
                    scale = thisScale
                    min = thisMin
                }
            }
        }
        theMin = -min
        return scale
    }

    /// `make_qx_quants` with `rmse_type` 1 and no importance weights (w = x²): a symmetric fit to
    /// levels −nmax…nmax−1 stored as L + nmax, searching 18 scales around −nmax / (signed max).
    static func makeQX(_ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<Int8>) -> Float {
        var max: Float = 0, amax: Float = 0
        for i in 0..<n {
            let ax = abs(x[i])
            if ax > amax { amax = ax; max = x[i] }
        }
        if amax < groupMaxEps {
            for i in 0..<n { L[i] = 0 }
            return 0
        }
        var iscale = -Float(nmax) / max
        var sumLX: Float = 0, sumL2: Float = 0
        for i in 0..<n {
            var l = nearestInt(iscale * x[i])
            l = Swift.max(-nmax, Swift.min(nmax - 1, l))
            L[i] = Int8(l + nmax)
            let w = x[i] * x[i], fl = Float(l)
            sumLX += w * x[i] * fl
            sumL2 += w * fl * fl
        }
        var scale: Float = sumL2 != 0 ? sumLX / sumL2 : 0
        var best = scale * sumLX
        for step in -9...9 where step != 0 {
            iscale = -(Float(nmax) + 0.1 * Float(step)) / max
            sumLX = 0; sumL2 = 0
            for i in 0..<n {
                var l = nearestInt(iscale * x[i])
                l = Swift.max(-nmax, Swift.min(nmax - 1, l))
                let w = x[i] * x[i], fl = Float(l)
                sumLX += w * x[i] * fl
                sumL2 += w * fl * fl
            }
            if sumL2 > 0 && sumLX * sumLX > best * sumL2 {
                for i in 0..<n {
                    let l = nearestInt(iscale * x[i])
                    L[i] = Int8(nmax + Swift.max(-nmax, Swift.min(nmax - 1, l)))
                }
                scale = sumLX / sumL2
                best = scale * sumLX
            }
        }
        return scale
    }
}

/// ggml's Q4_K blocks, byte for byte as `quantize_row_q4_K_ref` writes them (llama.cpp's quantizer
/// without an importance matrix): per super-block of 256 values, 144 bytes —
/// f16 d, f16 dmin, 12 bytes of eight 6-bit scales and eight 6-bit mins, 128 bytes of 4-bit levels.
/// Each of the eight 32-value sub-blocks is fit as x ≈ d·sc·q − dmin·m (q in 0…15) by
/// `make_qkx2_quants` (weights sqrt(mean x²) + |x|, 21 candidate scales), sc and m quantized to 6
/// bits against the largest, then the levels recomputed from the stored scales.
public enum GGMLQ4K {
    public static let blockSize = 256
    public static let blockBytes = 144

    public static func quantize(_ values: [Float]) -> [UInt8] {
        precondition(values.count % blockSize == 0, "Q4_K needs a multiple of 256 values, not \(values.count)")
        let blocks = values.count / blockSize
        var out = [UInt8](repeating: 0, count: blocks * blockBytes)
        var L = [UInt8](repeating: 0, count: 256), laux = [UInt8](repeating: 0, count: 32)
        var weights = [Float](repeating: 0, count: 32)
        var mins = [Float](repeating: 0, count: 8), scales = [Float](repeating: 0, count: 8)
        values.withUnsafeBufferPointer { xs in
            out.withUnsafeMutableBufferPointer { y in
                for b in 0..<blocks {
                    let x = xs.baseAddress! + b * blockSize
                    let base = b * blockBytes
                    var maxScale: Float = 0, maxMin: Float = 0
                    for j in 0..<8 {
                        var sumX2: Float = 0
                        for l in 0..<32 { sumX2 += x[32 * j + l] * x[32 * j + l] }
                        let avX = (sumX2 / 32).squareRoot()
                        for l in 0..<32 { weights[l] = avX + abs(x[32 * j + l]) }
                        var m: Float = 0
                        scales[j] = L.withUnsafeMutableBufferPointer { lp in
                            laux.withUnsafeMutableBufferPointer { ap in
                                GGMLKQuant.makeQKX2(32, 15, x + 32 * j, weights, lp.baseAddress! + 32 * j, theMin: &m,
                                                    ap.baseAddress!, rmin: -1, rdelta: 0.1, nstep: 20, useMad: false)
                            }
                        }
                        mins[j] = m
                        if scales[j] > maxScale { maxScale = scales[j] }
                        if m > maxMin { maxMin = m }
                    }
                    let invScale: Float = maxScale > 0 ? 63 / maxScale : 0
                    let invMin: Float = maxMin > 0 ? 63 / maxMin : 0
                    var sc = [UInt8](repeating: 0, count: 12)
                    for j in 0..<8 {
                        // C stores nearest_int's int into a uint8_t (truncation) before MIN(63, ·).
                        let ls = Swift.min(63, UInt8(truncatingIfNeeded: GGMLKQuant.nearestInt(invScale * scales[j])))
                        let lm = Swift.min(63, UInt8(truncatingIfNeeded: GGMLKQuant.nearestInt(invMin * mins[j])))
                        if j < 4 {
                            sc[j] = ls
                            sc[j + 4] = lm
                        } else {
                            sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4)
                            sc[j - 4] |= (ls >> 4) << 6
                            sc[j] |= (lm >> 4) << 6
                        }
                    }
                    let dBits = Half.bits(maxScale / 63), dminBits = Half.bits(maxMin / 63)
                    y[base] = UInt8(dBits & 0xFF); y[base + 1] = UInt8(dBits >> 8)
                    y[base + 2] = UInt8(dminBits & 0xFF); y[base + 3] = UInt8(dminBits >> 8)
                    for k in 0..<12 { y[base + 4 + k] = sc[k] }
                    let d = Half.float(dBits), dmin = Half.float(dminBits)
                    for j in 0..<8 {
                        let (s, m) = scaleMin(j, sc)
                        let dj = d * Float(s)
                        if dj == 0 { continue }
                        let dm = dmin * Float(m)
                        for ii in 0..<32 {
                            let l = GGMLKQuant.nearestInt((x[32 * j + ii] + dm) / dj)
                            L[32 * j + ii] = UInt8(Swift.max(0, Swift.min(15, l)))
                        }
                    }
                    for j in stride(from: 0, to: 256, by: 64) {
                        for l in 0..<32 { y[base + 16 + j / 2 + l] = L[j + l] | (L[j + l + 32] << 4) }
                    }
                }
            }
        }
        return out
    }

    /// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` from the 12 packed bytes.
    static func scaleMin(_ j: Int, _ q: [UInt8]) -> (UInt8, UInt8) {
        if j < 4 { return (q[j] & 63, q[j + 4] & 63) }
        return ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }

    /// The values Q4_K blocks store: d·sc·q − dmin·m (ggml's `dequantize_row_q4_K`).
    public static func dequantize(_ bytes: [UInt8]) -> [Float] {
        precondition(bytes.count % blockBytes == 0)
        var out: [Float] = []
        out.reserveCapacity(bytes.count / blockBytes * blockSize)
        for b in 0..<(bytes.count / blockBytes) {
            let base = b * blockBytes
            let d = Half.float(UInt16(bytes[base]) | UInt16(bytes[base + 1]) << 8)
            let dmin = Half.float(UInt16(bytes[base + 2]) | UInt16(bytes[base + 3]) << 8)
            let sc = Array(bytes[(base + 4)..<(base + 16)])
            for j in stride(from: 0, to: 256, by: 64) {
                let (s1, m1) = scaleMin(j / 32, sc), (s2, m2) = scaleMin(j / 32 + 1, sc)
                let d1 = d * Float(s1), mm1 = dmin * Float(m1), d2 = d * Float(s2), mm2 = dmin * Float(m2)
                let q = base + 16 + j / 2
                for l in 0..<32 { out.append(d1 * Float(bytes[q + l] & 0xF) - mm1) }
                for l in 0..<32 { out.append(d2 * Float(bytes[q + l] >> 4) - mm2) }
            }
        }
        return out
    }
}
