import Foundation

/// Small elementwise ops of the CPU backend.
extension CPUBackend {
    public func add(_ x: Tensor, into y: Tensor, alpha: Float) {
        precondition(x.count == y.count, "add \(x.shape) into \(y.shape)")
        let xs = x.floats, ys = y.floats
        for i in 0..<ys.count { ys[i] += alpha * xs[i] }
    }

    public func addBias(_ bias: Tensor, into x: Tensor) {
        let bs = bias.floats, xs = x.floats, width = bias.count
        precondition(xs.count % width == 0, "bias \(bias.shape) for \(x.shape)")
        for row in 0..<(xs.count / width) {
            for j in 0..<width { xs[row * width + j] += bs[j] }
        }
    }

    public func scale(_ x: Tensor, by factor: Float) {
        let xs = x.floats
        for i in 0..<xs.count { xs[i] *= factor }
    }

    public func multiply(_ x: Tensor, by y: Tensor) {
        precondition(x.count == y.count, "multiply \(x.shape) by \(y.shape)")
        let xs = x.floats, ys = y.floats
        for i in 0..<xs.count { xs[i] *= ys[i] }
    }

    /// Each tensor summed in element order, then the tensors' sums in list order: with factor 1 the
    /// sum the per-tensor `sumOfSquares` calls of earlier versions added up, bit for bit.
    public func sumOfSquares(_ tensors: [Tensor], scaledBy factor: Float) -> Double {
        var total = 0.0
        for x in tensors {
            var sum = 0.0
            for v in x.floats { let d = Double(v * factor); sum += d * d }
            total += sum
        }
        return total
    }

    public func zero(_ tensors: [Tensor]) {
        for x in tensors { x.floats.update(repeating: 0) }
    }

    public func fillUniform(_ x: Tensor, seed: UInt64, bound: Float) {
        let xs = x.floats
        parallelFor(xs.count, grain: 1 << 16) { range in
            for i in range { xs[i] = (2 * CounterHash.unit(seed: seed, index: UInt64(i)) - 1) * bound }
        }
    }

    public func dropout(_ x: Tensor, probability: Float, seed: UInt64, mask: Tensor) {
        let xs = x.floats, ms = mask.floats
        let keep = 1 / (1 - probability)
        for i in 0..<xs.count {
            ms[i] = DropoutMask.keeps(seed: seed, index: UInt64(i), probability: probability) ? keep : 0
            xs[i] *= ms[i]
        }
    }
}

/// A uniform number in [0, 1) for element `index` under `seed`: a counter-based hash (SplitMix64
/// of seed + index), so every backend draws the same values without sharing generator state.
public enum CounterHash {
    @inlinable
    public static func unit(seed: UInt64, index: UInt64) -> Float {
        var z = seed &+ (index &+ 1) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Float(z >> 40) * 0x1p-24  // 24 random bits
    }
}

/// The dropout decision for element `index` under `seed`.
public enum DropoutMask {
    @inlinable
    public static func keeps(seed: UInt64, index: UInt64, probability: Float) -> Bool {
        CounterHash.unit(seed: seed, index: index) >= probability
    }
}
