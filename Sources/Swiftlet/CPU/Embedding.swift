/// Embedding lookup (gather) and its backward (scatter-add into the table's gradient).
enum EmbeddingKernel {
    static func forward<T: BinaryFloatingPoint>(table: UnsafeBufferPointer<T>, width: Int,
                                                ids: UnsafeBufferPointer<Int32>,
                                                out: UnsafeMutableBufferPointer<T>) {
        let vocab = table.count / width
        for (n, id) in ids.enumerated() {
            precondition(id >= 0 && Int(id) < vocab, "token id \(id) outside the vocabulary of \(vocab)")
            for j in 0..<width { out[n * width + j] = table[Int(id) * width + j] }
        }
    }

    static func backward<T: BinaryFloatingPoint>(dOut: UnsafeBufferPointer<T>, width: Int,
                                                 ids: UnsafeBufferPointer<Int32>,
                                                 dTable: UnsafeMutableBufferPointer<T>) {
        for (n, id) in ids.enumerated() {
            for j in 0..<width { dTable[Int(id) * width + j] += dOut[n * width + j] }
        }
    }
}

extension CPUBackend {
    public func embedding(table: Tensor, ids: Tensor, into out: Tensor) {
        EmbeddingKernel.forward(table: UnsafeBufferPointer(table.floats), width: table.shape[1],
                                ids: UnsafeBufferPointer(ids.ints), out: out.floats)
    }

    public func embeddingBackward(dOut: Tensor, ids: Tensor, into dTable: Tensor) {
        EmbeddingKernel.backward(dOut: UnsafeBufferPointer(dOut.floats), width: dTable.shape[1],
                                 ids: UnsafeBufferPointer(ids.ints), dTable: dTable.floats)
    }
}
