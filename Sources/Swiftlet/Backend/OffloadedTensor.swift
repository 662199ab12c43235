/// A tensor moved out of the backend's memory while it waits for the backward: gradient
/// checkpointing's `offload` mode keeps each layer's input in (pinned) host memory instead of on
/// the GPU, so activation memory no longer grows with the number of layers.
///
/// The host block is returned to its owner when the last reference goes away. A GPU backend copies
/// out and back beside its compute (`Backend.prefetch`), ordering the two only where one needs the
/// other's result.
public final class OffloadedTensor: @unchecked Sendable {
    public let dtype: DType
    public let shape: Shape
    /// Host memory holding the elements.
    let host: UnsafeMutableRawPointer
    private let giveBack: (UnsafeMutableRawPointer) -> Void
    /// The copy back to the backend, when `Backend.prefetch` started it: `reload` returns its tensor.
    var staged: StagedCopy?

    init(dtype: DType, shape: Shape, host: UnsafeMutableRawPointer,
         giveBack: @escaping (UnsafeMutableRawPointer) -> Void) {
        self.dtype = dtype
        self.shape = shape
        self.host = host
        self.giveBack = giveBack
    }

    public var byteCount: Int { shape.count * dtype.size }

    /// A prefetch that nothing reloaded (an error between the two) may still be writing its tensor:
    /// the backend's later work is ordered after it before that memory can be reused. The host block
    /// itself is only ever read and written on the backend's one copy stream, in order.
    deinit {
        try? staged?.join()
        giveBack(host)
    }
}

/// A copy into a backend tensor that may still be running beside the backend's work.
struct StagedCopy {
    let tensor: Tensor
    /// Orders the backend's later work after the copy (on the device; the host does not wait).
    let join: () throws -> Void
}
