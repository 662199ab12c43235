import Foundation

/// LoRA settings with PEFT's semantics.
public struct LoRAConfig: Equatable, Sendable {
    /// The linear layers LoRA may wrap, by their Hugging Face module names. A model has some of
    /// them: q k v o gate up down (Llama, Mistral, Qwen2, Qwen3) or qkv o gate_up down (Phi-3's
    /// fused projections, as PEFT names them). In a mixture of experts gate, up and down name the
    /// experts' projections (Mixtral's w1, w3, w2 parse to them) and `router` the router, which PEFT
    /// calls `gate` (not gate_proj).
    public enum Target: String, CaseIterable, Sendable, Codable, Comparable {
        case q = "q_proj", k = "k_proj", v = "v_proj", qkv = "qkv_proj", o = "o_proj"
        case gate = "gate_proj", up = "up_proj", gateUp = "gate_up_proj", down = "down_proj"
        case router = "gate"

        /// Mixtral's expert names, as PEFT's target_modules take them.
        static let mixtralAliases: [String: Target] = ["w1": .gate, "w3": .up, "w2": .down]
        public static func < (a: Target, b: Target) -> Bool {
            allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
        }
    }

    public var r: Int
    public var alpha: Float
    public var dropout: Float
    /// The targeted modules; `Target.allCases` (the default, "all-linear") means every linear the
    /// model has, whatever its family.
    public var targets: Set<Target>
    /// rsLoRA: scale by alpha/√r instead of alpha/r.
    public var useRSLoRA: Bool

    public init(r: Int = 16, alpha: Float = 16, dropout: Float = 0,
                targets: Set<Target> = Set(Target.allCases), useRSLoRA: Bool = false) {
        self.r = r; self.alpha = alpha; self.dropout = dropout; self.targets = targets; self.useRSLoRA = useRSLoRA
    }

    /// The factor on the low-rank path: y = xWᵀ + scaling · x Aᵀ Bᵀ.
    public var scaling: Float { useRSLoRA ? alpha / Float(r).squareRoot() : alpha / Float(r) }

    /// Parses "q_proj,k_proj,..." (or "all").
    public static func targets(parsing list: String) throws -> Set<Target> {
        if list == "all" || list == "all-linear" { return Set(Target.allCases) }
        var result = Set<Target>()
        for name in list.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !name.isEmpty {
            guard let t = Target(rawValue: name) ?? Target.mixtralAliases[name] else {
                throw LoRAError.unknownTarget(name)
            }
            result.insert(t)
        }
        guard !result.isEmpty else { throw LoRAError.unknownTarget(list) }
        return result
    }
}

public enum LoRAError: Error, CustomStringConvertible {
    case unknownTarget(String)
    /// A target the model has no linear for (q_proj of Phi-3, qkv_proj of Llama).
    case targetNotInModel(String, modelType: String, available: [String])
    case invalid(String)
    public var description: String {
        switch self {
        case let .unknownTarget(name):
            return "unknown LoRA target module '\(name)'; choose from "
                + LoRAConfig.Target.allCases.map(\.rawValue).joined(separator: ", ")
        case let .targetNotInModel(name, modelType, available):
            return "LoRA target module '\(name)' is not a linear layer of this \(modelType) model; its linear layers: "
                + available.joined(separator: ", ")
        case let .invalid(why): return why
        }
    }
}
