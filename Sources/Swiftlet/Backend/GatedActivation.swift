/// The activation on the gate of the MLP's gated linear unit, out = act(gate) ⊙ up: SiLU (SwiGLU:
/// Llama, Mistral, Qwen, Phi-3) or GELU with the tanh approximation (GeGLU: Gemma's
/// `gelu_pytorch_tanh`). One op computes both (`Backend.gatedLinearUnit`), so the families share it.
public enum GatedActivation: String, Equatable, Sendable, CaseIterable {
    case silu
    case geluTanh = "gelu_pytorch_tanh"
}
