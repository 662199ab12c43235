import CCUDA

/// The device-side description of a list of tensors that one multi-tensor kernel launch works on
/// (CUDA/Kernels/MultiTensorKernels.swift has the C side):
///
/// - one row per tensor: up to 7 operand addresses (parameter, gradient, state, …) and the element
///   count of the first, 8 words (`mt_row`);
/// - one chunk per thread block: (row, chunk index within the row) (`mt_chunk`); chunk k of a row
///   covers elements [k·chunkSize, min((k+1)·chunkSize, n)). Empty tensors get no chunk.
///
/// Rows and chunks are one upload. The LoRA tensors never move during training, so the same table
/// serves every optimizer step: tables are cached by their own contents (every word of the table is
/// in the key), which makes a cache hit correct by construction, even where freed memory was handed
/// out again at the same addresses.
final class MultiTensorTables {
    static let operandsPerRow = 7
    static let wordsPerRow = operandsPerRow + 1

    /// A table on the device: `rows` at its start, `chunks` after them; `chunkCount` thread blocks.
    struct Table {
        let storage: Tensor
        let rows: CUdeviceptr
        let chunks: CUdeviceptr
        let chunkCount: Int
    }

    private var tables: [[UInt64]: Table] = [:]
    /// Keys oldest first, to bound the cache (one-off lists, e.g. the self-test's, would pile up).
    private var order: [[UInt64]] = []
    static let capacity = 32

    /// The table for `rows` (each a tensor's operands, the first giving the element count).
    func table(rows: [[Tensor]], chunkSize: Int, on backend: CUDABackend) throws -> Table {
        precondition(chunkSize > 0, "chunk size must be positive")
        var words: [UInt64] = []
        words.reserveCapacity(rows.count * Self.wordsPerRow + rows.count + 1)
        for operands in rows {
            precondition(!operands.isEmpty && operands.count <= Self.operandsPerRow, "a row holds 1...7 operands")
            for t in operands { words.append(t.device) }
            words.append(contentsOf: repeatElement(0, count: Self.operandsPerRow - operands.count))
            words.append(UInt64(operands[0].count))
        }
        let rowWords = words.count
        for (row, operands) in rows.enumerated() {
            let chunks = (operands[0].count + chunkSize - 1) / chunkSize
            precondition(chunks <= Int(Int32.max), "tensor too large for the chunk table")
            for k in 0..<chunks {
                // mt_chunk { int row; int index; }, little-endian: row in the low half.
                words.append(UInt64(UInt32(row)) | UInt64(UInt32(k)) << 32)
            }
        }
        let chunkCount = words.count - rowWords
        words.append(UInt64(chunkSize))   // part of the key only: the chunks depend on it
        if let table = tables[words] { return table }

        let bytes = words.withUnsafeBytes { Array($0) }
        let storage = try backend.upload(bytes: bytes, [bytes.count], .u8)
        let table = Table(storage: storage, rows: storage.device,
                          chunks: storage.device + CUdeviceptr(rowWords * 8), chunkCount: chunkCount)
        if order.count == Self.capacity { tables.removeValue(forKey: order.removeFirst()) }
        tables[words] = table
        order.append(words)
        return table
    }
}

extension CUDABackend {
    /// Launches `kernel` once over every chunk of `rows`: arguments (rows, chunks, chunkSize) and then
    /// `scalars`. Nothing is launched when every tensor is empty.
    func launchMultiTensor(_ kernel: String, source: String, rows: [[Tensor]], chunkSize: Int, threads: Int,
                           _ scalars: [KernelArgument], op: String = #function) {
        run(op) {
            let table = try multiTensorTables.table(rows: rows, chunkSize: chunkSize, on: self)
            guard table.chunkCount > 0 else { return }
            try kernels.launch(try function(kernel, source), grid: (table.chunkCount, 1, 1), block: (threads, 1, 1),
                               arguments: [.pointer(table.rows), .pointer(table.chunks), .int32(Int32(chunkSize))] + scalars)
        }
    }
}
