/// The state `AdamW8bit` keeps for one parameter tensor, on the parameter's backend: 8-bit codes with
/// per-block absmax for tensors of at least `AdamW8bit.minimumSize` elements, else f32 moments
/// (bnb's `min_8bit_size` rule).
public enum AdamW8bitState {
    /// `codes1`/`codes2`: u8 indices into `DynamicMap.signed`/`.unsigned`, one per element;
    /// `absmax1`/`absmax2`: f32, one per block of `AdamW8bit.blockSize` elements.
    case quantized(codes1: Tensor, codes2: Tensor, absmax1: Tensor, absmax2: Tensor)
    /// f32 first and second moments (bnb's `state1`/`state2` of the 32-bit path).
    case full(state1: Tensor, state2: Tensor)

    /// Fresh (zero) state for `parameter`, as bnb initialises it: all codes 0, absmax 0.
    public static func zeros(for parameter: Tensor) throws -> AdamW8bitState {
        let backend = parameter.backend
        if AdamW8bit.isQuantized(count: parameter.count) {
            let blocks = (parameter.count + AdamW8bit.blockSize - 1) / AdamW8bit.blockSize
            return .quantized(codes1: try backend.zeros(parameter.shape, .u8), codes2: try backend.zeros(parameter.shape, .u8),
                              absmax1: try backend.zeros([blocks], .f32), absmax2: try backend.zeros([blocks], .f32))
        }
        return .full(state1: try backend.zeros(parameter.shape, .f32), state2: try backend.zeros(parameter.shape, .f32))
    }

    /// The state's tensors with the name suffixes of `optimizer.safetensors`: bnb's `state1`, `state2`,
    /// `absmax1`, `absmax2` for 8-bit state; torch's `exp_avg`, `exp_avg_sq` for f32 moments.
    public var tensors: [(suffix: String, tensor: Tensor)] {
        switch self {
        case let .quantized(codes1, codes2, absmax1, absmax2):
            return [("state1", codes1), ("state2", codes2), ("absmax1", absmax1), ("absmax2", absmax2)]
        case let .full(state1, state2):
            return [("exp_avg", state1), ("exp_avg_sq", state2)]
        }
    }
}
