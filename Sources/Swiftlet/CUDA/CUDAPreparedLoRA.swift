import CCUDA

/// A layer's LoRA weights split into their bf16 parts once, in one launch, for every split-bf16
/// product of the layer's forward, or of its recompute and backward (`Backend.withPreparedLoRA`):
/// each A as the down products stack it ([Σ 3r, K] for a group) and as the backward's up-adds into
/// dL/dx stack it ([Σ 6r, K]); each B as the forward's up-add takes it ([O, 6r]) and as dz = dY·B does
/// ([O, 3r]). The ops look their operand up by the weights' addresses and split it themselves where
/// nothing was prepared; the parts are the ones they would split (the same bits). ≈ 22 MB a 7B layer
/// while it runs. Opt-in (`SWIFTLET_LORA_PRESPLIT=1`) until it has run on a GPU.
struct CUDAPreparedLoRA {
    enum Form: Hashable {
        case downA3, upA6, upB6, dzB3
    }
    struct Key: Hashable {
        var weights: [CUdeviceptr]
        var form: Form
        init(_ weights: [Tensor], _ form: Form) { self.weights = weights.map(\.device); self.form = form }
    }
    var parts: [Key: Tensor] = [:]
    /// Lookups that found their parts, over the backend's life: the doctor's check that the parts were
    /// used, not only built.
    nonisolated(unsafe) static var hits = 0

    nonisolated(unsafe) static var enabled = CUDALibrarySearch.processEnvironment["SWIFTLET_LORA_PRESPLIT"] == "1"
}

extension CUDABackend {
    public func withPreparedLoRA<R>(_ groups: @autoclosure () -> [[LoRAAdapter]], _ body: () throws -> R) throws -> R {
        guard CUDAPreparedLoRA.enabled else { return try body() }
        let groups = groups()
        var prepared = CUDAPreparedLoRA(), jobs: [SplitJob] = []
        let (cross, three) = (CUDASplitBF16.crossRight, [1, 2, 3])
        for group in groups where !group.isEmpty && group.allSatisfy({
            usesSplitLoRA(rank: $0.rank, features: $0.a.shape[1], $0.b.shape[0]) && $0.a.shape[1] == group[0].a.shape[1]
        }) {
            let k = group[0].a.shape[1], total = group.reduce(0) { $0 + $1.rank }
            let a3 = try empty([3 * total, k], .bf16), a6 = try empty([6 * total, k], .bf16)
            var row = 0
            for adapter in group {
                let r = adapter.rank, o = adapter.b.shape[0]
                jobs.append(SplitJob(src: adapter.a, parts: three, stacked: true, dst: a3.device + UInt64(3 * row * k * 2), rowStride: k))
                jobs.append(SplitJob(src: adapter.a, parts: cross, stacked: true, dst: a6.device + UInt64(6 * row * k * 2), rowStride: k))
                row += r
                let b6 = try empty([o, 6 * r], .bf16), b3 = try empty([o, 3 * r], .bf16)
                jobs.append(SplitJob(src: adapter.b, parts: cross, stacked: false, dst: b6.device, rowStride: 6 * r))
                jobs.append(SplitJob(src: adapter.b, parts: three, stacked: false, dst: b3.device, rowStride: 3 * r))
                prepared.parts[.init([adapter.b], .upB6)] = b6
                prepared.parts[.init([adapter.b], .dzB3)] = b3
            }
            prepared.parts[.init(group.map(\.a), .downA3)] = a3
            prepared.parts[.init(group.map(\.a), .upA6)] = a6
        }
        splitBF16(jobs: jobs)
        let outer = lock.withLock { () -> CUDAPreparedLoRA? in
            defer { preparedLoRA = prepared }
            return preparedLoRA
        }
        defer {
            // Swapped out under the lock, freed after it: freeing a tensor takes the lock.
            let finished = lock.withLock { () -> CUDAPreparedLoRA? in
                defer { preparedLoRA = outer }
                return preparedLoRA
            }
            _ = finished
        }
        return try body()
    }

    /// The prepared parts of `weights` in `form`, if the current stretch prepared them.
    func preparedParts(_ weights: [Tensor], _ form: CUDAPreparedLoRA.Form) -> Tensor? {
        lock.withLock {
            let found = preparedLoRA?.parts[.init(weights, form)]
            if found != nil { CUDAPreparedLoRA.hits += 1 }
            return found
        }
    }
}
