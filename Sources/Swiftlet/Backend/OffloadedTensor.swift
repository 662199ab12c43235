/// A tensor moved out of the backend's memory while it waits for the backward: gradient
/// checkpointing's `offload` mode keeps each layer's input in (pinned) host memory instead of on
/// the GPU, so activation memory no longer grows with the number of layers.
///
/// The host block is returned to its owner when the last reference goes away. Copies in and out
/// are ordered on the backend's stream, so no synchronisation is needed between them.
public final class OffloadedTensor: @unchecked Sendable {
    public let dtype: DType
    public let shape: Shape
    /// Host memory holding the elements.
    let host: UnsafeMutableRawPointer
    private let giveBack: (UnsafeMutableRawPointer) -> Void

    init(dtype: DType, shape: Shape, host: UnsafeMutableRawPointer,
         giveBack: @escaping (UnsafeMutableRawPointer) -> Void) {
        self.dtype = dtype
        self.shape = shape
        self.host = host
        self.giveBack = giveBack
    }

    public var byteCount: Int { shape.count * dtype.size }

    deinit { giveBack(host) }
}
