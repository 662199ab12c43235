import RealModule

/// Cross-entropy of each logits row against its label (-100: ignored), with the gradient
/// written over the logits in the same pass, so full logits never exist twice.
enum CrossEntropyKernel {
    static let ignoreIndex: Int32 = -100

    /// Returns each row's loss (0 for ignored rows). With `gradScale`, logits become
    /// gradScale·(softmax − onehot), or zeros on ignored rows.
    static func forwardBackward<T: Real & BinaryFloatingPoint>(
        logits: UnsafeMutableBufferPointer<T>, vocab: Int, labels: UnsafeBufferPointer<Int32>,
        gradScale: T?, losses: UnsafeMutableBufferPointer<T>
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
                var m = -T.infinity
                for j in 0..<vocab { m = Swift.max(m, logits[base + j]) }
                var total: T = 0
                for j in 0..<vocab { total += T.exp(logits[base + j] - m) }
                let lse = m + T.log(total)
                losses[r] = lse - logits[base + Int(label)]
                if let scale = gradScale {
                    for j in 0..<vocab { logits[base + j] = scale * T.exp(logits[base + j] - lse) }
                    logits[base + Int(label)] -= scale
                }
            }
        }
    }
}

extension CPUBackend {
    public func crossEntropy(logits: Tensor, labels: Tensor, gradScale: Float?, losses: Tensor) {
        let rows = labels.count
        precondition(losses.count == rows, "one loss per row")
        CrossEntropyKernel.forwardBackward(logits: logits.floats, vocab: logits.count / Swift.max(rows, 1),
                                           labels: UnsafeBufferPointer(labels.ints), gradScale: gradScale,
                                           losses: losses.floats)
    }
}
