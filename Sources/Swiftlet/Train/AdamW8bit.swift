#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// bitsandbytes' `AdamW8bit` (0.50.2) as its CUDA kernels compute it, on the CPU: the reference the
/// CUDA kernel is tested against. Hugging Face's `optim="adamw_bnb_8bit"` runs exactly this.
///
/// A tensor with fewer than `minimumSize` elements keeps 32-bit state and takes bnb's 32-bit Adam
/// (`kOptimizer32bit2State`, `update32bit`); a larger one keeps its two moments as 8-bit codes into
/// the dynamic code books (`DynamicMap.signed` for the first moment, `.unsigned` for the second)
/// with one f32 scale (absmax) per block of `blockSize` elements (`kOptimizerStatic8bit2StateBlockwise`,
/// `updateBlockwise`). Both apply weight decay *after* the Adam step, as `p · (1 − lr·wd)`, and take
/// the bias corrections as `−lr·√(1−β₂ᵗ)/(1−β₁ᵗ)` with ε scaled by `√(1−β₂ᵗ)`: bnb's forms, not torch's.
///
/// All arithmetic is Float32 in bnb's operation order, without fused multiply-adds. Where bnb's
/// kernel uses the GPU's approximate `__powf` and `__fdividef`, the CPU uses `powf` and true
/// division; these differ by an ulp or so, so GPU and CPU agree to ~1e-6 relative, and an 8-bit code
/// can differ by one where a value lies on a rounding boundary.
///
/// `gradientMultiplier` (unscale, clip) is applied to each gradient element as it is read, as HF's
/// in-place `clip_grad_norm_` before bnb's step would have; the padding lanes of a partial block
/// keep gradient 0 unscaled, as bnb's loads fill them.
public enum AdamW8bit {
    /// bnb's `min_8bit_size`: smaller tensors keep 32-bit state.
    public static let minimumSize = 4096
    /// Elements per absmax (bnb's blockwise optimizers quantize in blocks of 256).
    public static let blockSize = 256

    /// Whether a tensor of `count` elements keeps 8-bit state.
    public static func isQuantized(count: Int) -> Bool { count >= minimumSize }

    /// `(1 − β₁ᵗ, √(1 − β₂ᵗ), −lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ))` in Float32, as both bnb kernels compute them.
    static func corrections(step: Int, hyper: AdamWHyper) -> (c1: Float, c2: Float, stepSize: Float) {
        let c1 = 1 - powf(hyper.beta1, Float(step))
        let c2 = (1 - powf(hyper.beta2, Float(step))).squareRoot()
        return (c1, c2, -hyper.lr * c2 / c1)
    }

    /// bnb's 32-bit Adam step (the path for tensors under `minimumSize`). Non-finite gradients are
    /// not filtered here (bnb's 32-bit kernel does not either).
    public static func update32bit(
        parameter: UnsafeMutableBufferPointer<Float>,
        gradient: UnsafeBufferPointer<Float>,
        state1: UnsafeMutableBufferPointer<Float>,
        state2: UnsafeMutableBufferPointer<Float>,
        step: Int,
        hyper: AdamWHyper,
        gradientMultiplier: GradientMultiplier = .one
    ) {
        precondition(step >= 1, "AdamW8bit step is 1-based")
        let n = parameter.count
        precondition(gradient.count == n && state1.count == n && state2.count == n, "AdamW8bit buffer sizes differ")
        let (_, c2, stepSize) = corrections(step: step, hyper: hyper)
        let b1 = hyper.beta1, b2 = hyper.beta2, lr = hyper.lr, wd = hyper.weightDecay
        for i in 0..<n {
            let g = gradientMultiplier.apply(gradient[i])
            let s1 = state1[i] * b1 + (1 - b1) * g
            let s2 = state2[i] * b2 + (1 - b2) * (g * g)
            var p = parameter[i] + stepSize * (s1 / (s2.squareRoot() + hyper.eps * c2))
            if wd > 0 { p = p * (1 - lr * wd) }
            state1[i] = s1
            state2[i] = s2
            parameter[i] = p
        }
    }

    /// bnb's blockwise 8-bit Adam step. `codes1`/`codes2` index `DynamicMap.signed`/`.unsigned`;
    /// `absmax1`/`absmax2` hold one scale per block of `blockSize` (the last block may be partial).
    public static func updateBlockwise(
        parameter: UnsafeMutableBufferPointer<Float>,
        gradient: UnsafeBufferPointer<Float>,
        codes1: UnsafeMutableBufferPointer<UInt8>,
        codes2: UnsafeMutableBufferPointer<UInt8>,
        absmax1: UnsafeMutableBufferPointer<Float>,
        absmax2: UnsafeMutableBufferPointer<Float>,
        step: Int,
        hyper: AdamWHyper,
        gradientMultiplier: GradientMultiplier = .one
    ) {
        precondition(step >= 1, "AdamW8bit step is 1-based")
        let n = parameter.count
        let blocks = (n + blockSize - 1) / blockSize
        precondition(gradient.count == n && codes1.count == n && codes2.count == n, "AdamW8bit buffer sizes differ")
        precondition(absmax1.count == blocks && absmax2.count == blocks, "AdamW8bit needs one absmax per \(blockSize) elements")
        let (_, c2, stepSize) = corrections(step: step, hyper: hyper)
        let b1 = hyper.beta1, b2 = hyper.beta2, lr = hyper.lr, wd = hyper.weightDecay
        let signed = DynamicMap.signed, unsigned = DynamicMap.unsigned
        var s1 = [Float](repeating: 0, count: blockSize), s2 = s1

        for block in 0..<blocks {
            let start = block * blockSize, end = Swift.min(start + blockSize, n)
            let scale1 = absmax1[block], scale2 = absmax2[block]
            var max1 = -Float.greatestFiniteMagnitude, max2 = -Float.greatestFiniteMagnitude
            for i in start..<end {
                let g = gradientMultiplier.apply(gradient[i])
                if g.isFinite {
                    s2[i - start] = (unsigned[Int(codes2[i])] * scale2) * b2 + (1 - b2) * g * g
                    s1[i - start] = (signed[Int(codes1[i])] * scale1) * b1 + (1 - b1) * g
                } else {
                    s1[i - start] = 0
                    s2[i - start] = 0
                }
                max1 = fmaxf(max1, abs(s1[i - start]))
                max2 = fmaxf(max2, abs(s2[i - start]))
            }
            if end - start < blockSize {
                // bnb's kernel runs the lanes past the end too, with gradient 0 and the codes its loads
                // fill in (128 and 0), and they take part in the block's max.
                let zero: Float = 0
                max1 = fmaxf(max1, abs((signed[128] * scale1) * b1 + (1 - b1) * zero))
                max2 = fmaxf(max2, abs((unsigned[0] * scale2) * b2 + (1 - b2) * zero * zero))
            }
            absmax1[block] = max1
            absmax2[block] = max2
            for i in start..<end {
                let m = s1[i - start], v = s2[i - start]
                if gradientMultiplier.apply(gradient[i]).isFinite {
                    var p = parameter[i] + stepSize * (m / (v.squareRoot() + c2 * hyper.eps))
                    if wd > 0 { p = p * (1 - lr * wd) }
                    parameter[i] = p
                }
                var code1 = quantize(m / max1, codebook: signed, signed: true)
                // Keep the first moment's sign through quantization (bnb's fix, wrapping as C's uint8 does).
                if signed[Int(code1)].sign != m.sign { code1 = m > 0 ? code1 &+ 1 : code1 &- 1 }
                codes1[i] = code1
                codes2[i] = quantize(v / max2, codebook: unsigned, signed: false)
            }
        }
    }

    /// bnb's `quantize_2D`: a 7-step binary search over the sorted code book, then the nearer of the
    /// two neighbours by comparing against their midpoint (a tie goes to the code just searched).
    /// NaN (an all-zero block's 0/0) compares false everywhere and gives code 0.
    @inlinable
    public static func quantize(_ x: Float, codebook code: [Float], signed: Bool) -> UInt8 {
        var pivot = 127, upperPivot = 255, lowerPivot = 0
        var lower: Float = signed ? -1 : 0, upper: Float = 1
        var value = code[127]
        var i = 64
        while i > 0 {
            if x > value {
                lowerPivot = pivot; lower = value; pivot += i
            } else {
                upperPivot = pivot; upper = value; pivot -= i
            }
            value = code[pivot]
            i >>= 1
        }
        if x > value {
            return UInt8(x > (upper + value) * 0.5 ? upperPivot : pivot)
        } else {
            return UInt8(x < (lower + value) * 0.5 ? lowerPivot : pivot)
        }
    }
}
