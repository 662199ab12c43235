/// Linear layers that read the same input and whose outputs are used apart: q, k and v of the
/// attention, gate and up of the MLP. Llama keeps them as separate `Linear`s; Phi-3 fuses them into
/// one `Linear` whose output holds the parts side by side (qkv_proj: q | k | v, gate_up_proj:
/// gate | up), with one LoRA adapter over the whole. The fused forward runs one GEMM and copies the
/// parts out (`Backend.copyColumns`); its backward copies the parts' gradients into one tensor and
/// runs one backward. The decoder layer is the same code for both.
public enum ProjectionGroup {
    case separate([Linear])
    /// One linear; `widths` are the parts' output widths, in order (they sum to its out features).
    case fused(Linear, widths: [Int])

    /// The group's linears: one per part, or the fused one.
    public var linears: [Linear] {
        switch self {
        case let .separate(parts): return parts
        case let .fused(linear, _): return [linear]
        }
    }

    /// What the backward needs: each linear's saved activations.
    struct Saved {
        var linears: [Linear.Saved]

        /// Lets go of the shared input, for an owner that recomputes it before the backward.
        mutating func dropInput() { for i in linears.indices { linears[i].input = nil } }
        /// The input again (the same values as in the forward).
        mutating func restoreInput(_ x: Tensor) { for i in linears.indices { linears[i].input = x } }
    }

    /// The parts' outputs, in order. `dropoutSeed(i)` is part i's dropout seed; a fused linear
    /// takes part 0's (PEFT draws one mask for the fused module's input).
    func forward(_ x: Tensor, dropoutSeed: (Int) -> UInt64?) throws -> ([Tensor], Saved) {
        switch self {
        case let .separate(parts):
            // Adapters on the fused path share x: their down products at once (one read of x on a GPU).
            var zs: [Tensor]?
            if let adapters = Self.fusedAdapters(parts, dropoutSeed: dropoutSeed) {
                let group = try adapters.map { try x.backend.empty([x.shape[0], $0.rank], .f32) }
                x.backend.loraDown(x, adapters.map(\.a), into: group)
                zs = group
            }
            var outputs: [Tensor] = [], saved: [Linear.Saved] = []
            for (i, linear) in parts.enumerated() {
                let (y, s) = try zs.map { try linear.forward(x, lowRank: $0[i]) } ?? linear.forward(x, dropoutSeed: dropoutSeed(i))
                outputs.append(y)
                saved.append(s)
            }
            return (outputs, Saved(linears: saved))
        case let .fused(linear, widths):
            let backend = x.backend, tokens = x.shape[0]
            let (y, s) = try linear.forward(x, dropoutSeed: dropoutSeed(0))
            var outputs: [Tensor] = [], column = 0
            for width in widths {
                let part = try backend.empty([tokens, width], y.dtype)
                backend.copyColumns(y, sourceColumn: column, into: part, destinationColumn: 0, width: width)
                outputs.append(part)
                column += width
            }
            return (outputs, Saved(linears: [s]))
        }
    }

    /// dL/dx from the parts' output gradients (the LoRA gradients accumulate as a side effect).
    func backward(_ dParts: [Tensor], saved: Saved) throws -> Tensor {
        switch self {
        case let .separate(parts):
            precondition(dParts.count == parts.count, "one gradient per part")
            if Self.groupsAdapters, parts.count > 1, zip(parts, saved.linears).allSatisfy({ $0.runsFused($1) }),
               let x = saved.linears[0].input {
                // dB_i and dz_i per part (they read dY_i); the A gradients from one read of x; the frozen
                // weights' dY_i W_i summed into dL/dx, then Σ dz_i A_i added to it at once.
                let dzs = try zip(parts, zip(dParts, saved.linears)).map { try $0.outputTerms($1.0, saved: $1.1) }
                x.backend.loraGradient(x, dzs, intoTransposed: parts.map { $0.lora!.gradA })
                var dX: Tensor?
                for (part, dY) in zip(parts, dParts) { dX = try part.baseBackward(dY, into: dX, accumulate: dX != nil) }
                x.backend.loraUpAdd(dzs, parts.map { $0.lora!.a }, into: dX!)
                return dX!
            }
            let dX = try parts[0].backward(dParts[0], saved: saved.linears[0], accumulateInto: nil)
            for i in parts.indices.dropFirst() {
                try parts[i].backward(dParts[i], saved: saved.linears[i], accumulateInto: dX)
            }
            return dX
        case let .fused(linear, widths):
            precondition(dParts.count == widths.count, "one gradient per part")
            let backend = dParts[0].backend
            // Every column of dY is written by one of the copies.
            let dY = try backend.empty([dParts[0].shape[0], linear.outFeatures], dParts[0].dtype)
            var column = 0
            for (dPart, width) in zip(dParts, widths) {
                backend.copyColumns(dPart, sourceColumn: 0, into: dY, destinationColumn: column, width: width)
                column += width
            }
            return try linear.backward(dY, saved: saved.linears[0], accumulateInto: nil)
        }
    }

    /// The adapters as the low-rank ops take them (`Backend.withPreparedLoRA`): together where they
    /// can share x (every separate part has one on the fused path), else one to a group; none that
    /// the fused low-rank ops never see.
    var loraGroups: [[LoRAAdapter]] {
        let adapters = linears.compactMap(\.lora).filter(Linear.takesFusedOps)
        if case .separate = self, Self.groupsAdapters, adapters.count > 1, adapters.count == linears.count { return [adapters] }
        return adapters.map { [$0] }
    }

    /// The parts' adapters when every part has one on the fused path (no dropout drawn, a rank the
    /// fused ops take) and there are several: their products can share x.
    static func fusedAdapters(_ parts: [Linear], dropoutSeed: (Int) -> UInt64?) -> [LoRAAdapter]? {
        guard groupsAdapters else { return nil }
        let adapters = parts.enumerated().compactMap { i, linear in linear.fusedAdapter(dropoutSeed: dropoutSeed(i)) }
        return parts.count > 1 && adapters.count == parts.count ? adapters : nil
    }

    /// `SWIFTLET_LORA_GROUPS=0` runs each linear's adapter on its own (to time the two ways in one binary).
    nonisolated(unsafe) static var groupsAdapters = CUDALibrarySearch.processEnvironment["SWIFTLET_LORA_GROUPS"] != "0"

    /// The linear that `target` names in this group, nil when the group has no such linear
    /// (`names` are the targets of the separate parts, in order; `fusedName` the fused one's).
    func linear(_ target: LoRAConfig.Target, names: [LoRAConfig.Target], fusedName: LoRAConfig.Target) -> Linear? {
        switch self {
        case let .separate(parts): return names.firstIndex(of: target).map { parts[$0] }
        case let .fused(linear, _): return target == fusedName ? linear : nil
        }
    }

    /// Replaces the linear that `target` names (no-op when the group has none).
    mutating func setLinear(_ target: LoRAConfig.Target, names: [LoRAConfig.Target], fusedName: LoRAConfig.Target,
                            to new: Linear) {
        switch self {
        case var .separate(parts):
            guard let i = names.firstIndex(of: target) else { return }
            parts[i] = new
            self = .separate(parts)
        case let .fused(_, widths):
            guard target == fusedName else { return }
            self = .fused(new, widths: widths)
        }
    }
}

extension ProjectionGroup {
    /// Applies `body` to every linear of the group.
    mutating func updateLinears(_ body: (inout Linear) throws -> Void) rethrows {
        switch self {
        case var .separate(parts):
            for i in parts.indices { try body(&parts[i]) }
            self = .separate(parts)
        case .fused(var linear, let widths):
            try body(&linear)
            self = .fused(linear, widths: widths)
        }
    }
}
