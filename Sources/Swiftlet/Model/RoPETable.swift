/// cos and sin of position · inverse frequency, [positions, headDim/2] Float32 each, on a backend.
public struct RoPETable {
    public var cos: Tensor
    public var sin: Tensor
    public var headDim: Int
    public var positions: Int { cos.shape[0] }
    public init(cos: Tensor, sin: Tensor, headDim: Int) {
        self.cos = cos; self.sin = sin; self.headDim = headDim
    }
}
