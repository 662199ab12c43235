/// Which of a global step's micro-batches a rank computes: rank r of N, with G micro-batches per
/// rank, takes the contiguous block r·G ..< (r+1)·G of the step's N·G micro-batches (in the global
/// data order every rank walks alike). Contiguous blocks keep each rank's accumulation in the
/// single-process order; the blocks together are exactly the single process's N·G micro-batches.
public struct DataParallelSplit: Sendable, Equatable {
    public var rank: Int
    public var worldSize: Int
    public var microBatchesPerRank: Int

    public init(rank: Int, worldSize: Int, microBatchesPerRank: Int) {
        precondition(worldSize > 0 && (0..<worldSize).contains(rank) && microBatchesPerRank > 0, "invalid data-parallel split")
        self.rank = rank; self.worldSize = worldSize; self.microBatchesPerRank = microBatchesPerRank
    }

    /// Indices into the step's `worldSize × microBatchesPerRank` micro-batches.
    public var microBatches: Range<Int> { rank * microBatchesPerRank ..< (rank + 1) * microBatchesPerRank }
}
