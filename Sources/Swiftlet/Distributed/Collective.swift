/// The communication data-parallel training needs between the processes of one job (a process
/// group, in PyTorch's words): sums of the LoRA gradients and of a step's loss and token counts, and
/// rank 0's adapters copied to every rank. `NCCLCollective` does it between GPUs; `TCPCollective`
/// over sockets, for CPU processes (and the tests). Every rank must make the same calls in the same
/// order, and ends each sum with bit-identical results, so the ranks' optimizer steps stay equal
/// without re-synchronising the weights.
public protocol Collective: AnyObject {
    var rank: Int { get }
    var worldSize: Int { get }
    /// Replaces each tensor (f32, on the training backend) with the elementwise sum over all ranks.
    func allReduceSum(_ tensors: [Tensor]) throws
    /// The elementwise sum of `values` over all ranks (loss sums, token counts, flags).
    func allReduceSum(_ values: [Double]) throws -> [Double]
    /// Overwrites each tensor with rank `root`'s.
    func broadcast(_ tensors: [Tensor], from root: Int) throws
    /// Returns when every rank has reached it.
    func barrier() throws
}

extension Collective {
    public var isRankZero: Bool { rank == 0 }

    /// The sum of one value over all ranks.
    public func sum(_ value: Double) throws -> Double { try allReduceSum([value])[0] }
}
