/// Element types of tensors. Storage types only: the CPU backend computes in Float32, the CUDA
/// backend (bf16 or f16 storage) accumulates in Float32.
public enum DType: String, CaseIterable, Sendable, Codable {
    case f32, bf16, f16
    case f64, i64, i32, i16, i8, u8, bool
    // The rest of the safetensors spec, so any checkpoint's header can be described.
    case u64, u32, u16
    /// 8-bit floats as PyTorch's `float8_e4m3fn` (no infinities) and `float8_e5m2`.
    case f8_e4m3, f8_e5m2

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .bf16, .f16, .i16, .u16: return 2
        case .i8, .u8, .bool, .f8_e4m3, .f8_e5m2: return 1
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .f32, .bf16, .f16, .f64, .f8_e4m3, .f8_e5m2: return true
        default: return false
        }
    }
}

/// bfloat16 conversions, bit-identical to PyTorch's (`c10::BFloat16`): round to nearest, ties to
/// even; NaN becomes the canonical quiet NaN 0x7FC0.
public enum BFloat16 {
    @inlinable
    public static func bits(_ value: Float) -> UInt16 {
        if value.isNaN { return 0x7FC0 }
        let u = value.bitPattern
        let roundingBias = ((u >> 16) & 1) &+ 0x7FFF
        return UInt16(truncatingIfNeeded: (u &+ roundingBias) >> 16)
    }

    @inlinable
    public static func float(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Rounds a Float to the nearest bf16 value, returned as Float.
    @inlinable
    public static func round(_ value: Float) -> Float { float(bits(value)) }
}

/// IEEE half conversions (round to nearest even), as PyTorch's `at::Half`.
public enum Half {
    @inlinable
    public static func bits(_ value: Float) -> UInt16 { Float16(value).bitPattern }
    @inlinable
    public static func float(_ bits: UInt16) -> Float { Float(Float16(bitPattern: bits)) }
}
