import RealModule

/// Cross-entropy of each logits row against its label (-100: ignored), with the gradient
/// written over the logits in the same pass, so full logits never exist twice.
enum CrossEntropyKernel {
    static let ignoreIndex: Int32 = -100

    /// Returns each row's loss (0 for ignored rows). With `gradScale`, logits become
    /// gradScale·(softmax − onehot), or zeros on ignored rows. With `softcap`, each logit z is first
    /// capped to cap·tanh(z / cap) (Gemma 2), and the gradient is chained through the cap.
    static func forwardBackward<T: Real & BinaryFloatingPoint>(
        logits: UnsafeMutableBufferPointer<T>, vocab: Int, labels: UnsafeBufferPointer<Int32>,
        softcap: T? = nil, gradScale: T?, losses: UnsafeMutableBufferPointer<T>
    ) {
        parallelFor(labels.count, grain: 4) { rows in
            for r in rows {
                let base = r * vocab, label = labels[r]
                guard label != ignoreIndex else {
                    losses[r] = 0
                    if gradScale != nil { for j in 0..<vocab { logits[base + j] = 0 } }
                    continue
                }
                precondition(label >= 0 && Int(label) < vocab, "label \(label) outside the vocabulary of \(vocab)")
                // The logit the loss sees: z, or Gemma 2's capped cap·tanh(z / cap).
                func logit(_ j: Int) -> T { softcap.map { LogitSoftcap.apply(logits[base + j], cap: $0) } ?? logits[base + j] }
                var m = -T.infinity
                for j in 0..<vocab { m = Swift.max(m, logit(j)) }
                var total: T = 0
                for j in 0..<vocab { total += T.exp(logit(j) - m) }
                let lse = m + T.log(total)
                losses[r] = lse - logit(Int(label))
                if let scale = gradScale {
                    for j in 0..<vocab {
                        let c = logit(j)
                        var g = scale * T.exp(c - lse)
                        if j == Int(label) { g -= scale }
                        // through the cap: d cap·tanh(z / cap) / dz = 1 − tanh² = 1 − (c / cap)²
                        logits[base + j] = softcap.map { g * LogitSoftcap.derivative(capped: c, cap: $0) } ?? g
                    }
                }
            }
        }
    }
}

extension CPUBackend {
    public func crossEntropy(logits: Tensor, labels: Tensor, softcap: Float?, gradScale: Float?, losses: Tensor) {
        let rows = labels.count
        precondition(losses.count == rows, "one loss per row")
        CrossEntropyKernel.forwardBackward(logits: logits.floats, vocab: logits.count / Swift.max(rows, 1),
                                           labels: UnsafeBufferPointer(labels.ints), softcap: softcap, gradScale: gradScale,
                                           losses: losses.floats)
    }
}
