/// Each layer's keys (after RoPE) and values for a batch of sequences being generated, so a
/// decode step runs the layers for the new tokens only.
///
/// Row r of the batch owns cache rows r·capacity ..< (r+1)·capacity of every tensor
/// ([rows·capacity, kvHeads·headDim]); columns fill left to right, the same columns for every
/// row because prompts are left-padded. `keyValid` marks which columns are real tokens.
public final class KVCache {
    public let rows: Int
    public let capacity: Int
    public internal(set) var keys: [Tensor]
    public internal(set) var values: [Tensor]
    /// Columns written so far (the next step's first column).
    public internal(set) var length = 0
    /// [rows·capacity], 1 for a real token, 0 for padding or not yet written.
    var keyValid: [Int32]
    /// The RoPE table of the cache's positions and the inverse frequencies it was made with (and
    /// Gemma 3's table of its sliding layers, made with them).
    var rope: (frequencies: [Float], table: RoPETable, sliding: RoPETable?)?
    /// [rows·capacity] token ids and RoPE positions of the columns written, so that the cache can
    /// be filled again from scratch (Phi-3 longrope crossing its original context).
    var tokenIds: [Int32]
    var tokenPositions: [Int32]

    public init(model: LlamaModel, rows: Int, capacity: Int) throws {
        let backend = model.backend, width = model.config.kvWidth
        self.rows = rows
        self.capacity = capacity
        keys = try model.layers.indices.map { _ in try backend.zeros([rows * capacity, width], backend.computeType) }
        values = try model.layers.indices.map { _ in try backend.zeros([rows * capacity, width], backend.computeType) }
        keyValid = [Int32](repeating: 0, count: rows * capacity)
        tokenIds = [Int32](repeating: 0, count: rows * capacity)
        tokenPositions = tokenIds
    }

    /// Stores the new tokens' keys or values ([rows·queries, width]) at columns length ..< length+queries.
    func store(_ new: Tensor, into cache: Tensor, queries: Int) {
        let backend = new.backend
        for r in 0..<rows {
            let at = r * capacity + length
            backend.copy(new.rows((r * queries)..<((r + 1) * queries)), into: cache.rows(at..<(at + queries)))
        }
    }

    /// Forgets every column from `length` on (a chat turn whose rendering departs from what the
    /// cache holds there); the next step writes over them.
    public func truncate(to length: Int) {
        precondition(length >= 0 && length <= self.length, "truncate to \(length) of \(self.length) columns")
        for r in 0..<rows {
            for c in length..<self.length { keyValid[r * capacity + c] = 0 }
        }
        self.length = length
    }
}
