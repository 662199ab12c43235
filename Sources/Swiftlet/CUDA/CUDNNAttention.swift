import CCUDA
#if canImport(Glibc)
import Glibc
#endif

/// Causal grouped-query attention through cuDNN's fused attention (its FlashAttention-style
/// kernels for Hopper and Ampere), forward and backward, with the same semantics and outputs as
/// CUDAFlashAttention and CPU/Attention.swift: out, the log-sum-exp [tokens, heads] (natural log of
/// the scaled scores), and dQ, dK, dV overwritten.
///
/// The graphs are the ones cuDNN's own frontend builds for scaled dot-product attention (read off
/// cuDNN's API log on the H200): S = Q·Kᵀ·scale, the causal mask as gen-index row ≥ column, softmax
/// with its statistics, O = P·V; the backward recomputes P from the statistics and gives
/// dS = P ⊙ (dO·Vᵀ − rowsum(dO ⊙ O)) · scale, dQ = dS·K, dK = dSᵀ·Q, dV = Pᵀ·dO, with GQA's
/// per-head dK and dV summed over each group inside the fused kernel. Accumulation is f32 and P
/// and dS are rounded to the storage type before their products, as in FlashAttention-2 and our own
/// kernels. Unlike ours, cuDNN's backward adds dQ with atomics: reruns can differ in the last bits of
/// dQ (SWIFTLET_ATTENTION=swiftlet keeps our deterministic kernels).
///
/// Used where the layout is plain causal attention over whole rows (every row one sequence: no
/// packing, no padding; a multiple of 128 long; a sliding window at least as long as the row; no
/// logit softcapping),
/// head dim 64 or 128, compute capability 8.0+, and cuDNN 9 loaded; everything else runs on our
/// kernels. `extended` (opt-in, `SWIFTLET_CUDNN_EXTENDED=1`, until the doctor has checked it on a GPU)
/// also takes head dims 96 (Phi-3) and 256 (Gemma 3) and sliding windows shorter than the row: the
/// window as the band mask cuDNN's frontend builds before 9.21 (column + window > row, a second select
/// after the causal one, the window a by-value scalar). Gemma 2's softcapped scores stay on our kernels:
/// cuDNN takes a score modifier only without a causal mask.
enum CUDNNAttention {
    nonisolated(unsafe) static var extended = CUDALibrarySearch.processEnvironment["SWIFTLET_CUDNN_EXTENDED"] == "1"

    static var headDims: Set<Int> { extended ? [64, 96, 128, 256] : [64, 128] }

    /// 9.0 and newer, except 9.10.0 and 9.10.1 (their bf16/fp16 attention backward has known bugs,
    /// as cuDNN's frontend says). Rows must be a multiple of 128 long: through 9.15 the backward
    /// needs its padding-mask variant otherwise, which these graphs do not build yet.
    static func supports(version: Int) -> Bool { version >= 90000 && version != 91000 && version != 91001 }

    struct Key: Hashable {
        var backward: Bool
        var rows, columns, heads, kvHeads, headDim: Int
        var storage: Int32
        /// A sliding window shorter than the row: the graph has the band mask (the window itself is bound at execution).
        var windowed: Bool
    }

    /// Unique ids of the graph tensors a call binds, and the plan.
    struct Forward {
        let plan: CUDNN.Plan
        let q, kT, v, out, stats, scale, negativeInfinity: Int64
        /// The window's by-value scalar, where the graph has the band.
        let window: Int64?
    }

    struct Backward {
        let plan: CUDNN.Plan
        let q, kT, vT, out, dOut, stats, dQ, dK, dV, scale, one, negativeInfinity, rowSum, dQAccumulator: Int64
        let window: Int64?
    }

    /// The strides of a [tokens, heads·d] activation seen as [rows, heads, columns, d].
    static func bhsd(columns: Int, heads: Int, headDim: Int) -> [Int64] {
        [Int64(columns * heads * headDim), Int64(headDim), Int64(heads * headDim), 1]
    }

    /// The same activation transposed to [rows, heads, d, columns].
    static func bhds(columns: Int, heads: Int, headDim: Int) -> [Int64] {
        [Int64(columns * heads * headDim), Int64(headDim), 1, Int64(heads * headDim)]
    }

    /// Our log-sum-exp [tokens, heads] seen as [rows, heads, columns, 1].
    static func statsStrides(columns: Int, heads: Int) -> [Int64] {
        [Int64(columns * heads), 1, Int64(heads), 1]
    }

    static func forwardGraph(_ library: CUDNN, _ key: Key) throws -> Forward {
        var g = CUDNNGraph(library)
        let b = Int64(key.rows), h = Int64(key.heads), hk = Int64(key.kvHeads), s = Int64(key.columns), d = Int64(key.headDim)
        let q = try g.tensor([b, h, s, d], strides: bhsd(columns: key.columns, heads: key.heads, headDim: key.headDim), key.storage)
        let kT = try g.tensor([b, hk, d, s], strides: bhds(columns: key.columns, heads: key.kvHeads, headDim: key.headDim), key.storage)
        let v = try g.tensor([b, hk, s, d], strides: bhsd(columns: key.columns, heads: key.kvHeads, headDim: key.headDim), key.storage)
        let out = try g.tensor([b, h, s, d], strides: bhsd(columns: key.columns, heads: key.heads, headDim: key.headDim), key.storage)
        let stats = try g.tensor([b, h, s, 1], strides: statsStrides(columns: key.columns, heads: key.heads), SWIFTLET_CUDNN_DATA_FLOAT)
        let scores = [b, h, s, s], rowStat = [b, h, s, 1]

        let raw = try g.virtual(scores)
        try g.matmul(q, kT, into: raw)
        let scale = try g.scalar()
        let scaled = try g.virtual(scores)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_MUL, raw, scale, into: scaled)
        let negativeInfinity = try g.scalar()
        let window = key.windowed ? try g.scalar() : nil
        let masked = try windowMask(&g, try causalMask(&g, scaled, negativeInfinity: negativeInfinity),
                                    window: window, negativeInfinity: negativeInfinity)

        let max = try g.virtual(rowStat)
        try g.reduce(SWIFTLET_CUDNN_REDUCE_TENSOR_MAX, masked, into: max)
        let shifted = try g.virtual(scores)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_SUB, masked, max, into: shifted)
        let exps = try g.virtual(scores)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_EXP, shifted, into: exps)
        let sum = try g.virtual(rowStat)
        try g.reduce(SWIFTLET_CUDNN_REDUCE_TENSOR_ADD, exps, into: sum)
        let logSum = try g.virtual(rowStat)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_LOG, sum, into: logSum)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_ADD, max, logSum, into: stats)
        let p = try g.virtual(scores, key.storage)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_DIV, exps, sum, into: p)
        try g.matmul(p, v, into: out)
        return Forward(plan: try g.plan(), q: q.uid, kT: kT.uid, v: v.uid, out: out.uid, stats: stats.uid,
                       scale: scale.uid, negativeInfinity: negativeInfinity.uid, window: window?.uid)
    }

    /// scores where row ≥ column, −∞ elsewhere.
    static func causalMask(_ g: inout CUDNNGraph, _ scores: CUDNNGraph.TensorRef,
                           negativeInfinity: CUDNNGraph.TensorRef) throws -> CUDNNGraph.TensorRef {
        let column = try g.virtual(scores.dims, SWIFTLET_CUDNN_DATA_INT32)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_GEN_INDEX, scores, into: column, axis: 3)
        let row = try g.virtual(scores.dims, SWIFTLET_CUDNN_DATA_INT32)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_GEN_INDEX, scores, into: row, axis: 2)
        let visible = try g.virtual(scores.dims, SWIFTLET_CUDNN_DATA_BOOLEAN)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_CMP_GE, row, column, into: visible, precision: SWIFTLET_CUDNN_DATA_BOOLEAN)
        let masked = try g.virtual(scores.dims)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_BINARY_SELECT, scores, negativeInfinity, t: visible, into: masked)
        return masked
    }

    /// scores where column + window > row (the query is less than `window` positions after the key), −∞
    /// elsewhere; the scores unchanged without a window. As cuDNN's frontend composes its left bound before
    /// 9.21: the column index plus the window in f32, compared with the row index.
    static func windowMask(_ g: inout CUDNNGraph, _ scores: CUDNNGraph.TensorRef, window: CUDNNGraph.TensorRef?,
                           negativeInfinity: CUDNNGraph.TensorRef) throws -> CUDNNGraph.TensorRef {
        guard let window else { return scores }
        let row = try g.virtual(scores.dims, SWIFTLET_CUDNN_DATA_INT32)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_GEN_INDEX, scores, into: row, axis: 2)
        let column = try g.virtual(scores.dims, SWIFTLET_CUDNN_DATA_INT32)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_GEN_INDEX, scores, into: column, axis: 3)
        let reach = try g.virtual(scores.dims)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_ADD, column, window, into: reach, axis: 3)   // the axis as the frontend sets it
        let visible = try g.virtual(scores.dims, SWIFTLET_CUDNN_DATA_BOOLEAN)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_CMP_GT, reach, row, into: visible, precision: SWIFTLET_CUDNN_DATA_BOOLEAN)
        let masked = try g.virtual(scores.dims)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_BINARY_SELECT, scores, negativeInfinity, t: visible, into: masked)
        return masked
    }

    static func backwardGraph(_ library: CUDNN, _ key: Key) throws -> Backward {
        var g = CUDNNGraph(library)
        let b = Int64(key.rows), h = Int64(key.heads), hk = Int64(key.kvHeads), s = Int64(key.columns), d = Int64(key.headDim)
        let qStrides = bhsd(columns: key.columns, heads: key.heads, headDim: key.headDim)
        let kvStrides = bhsd(columns: key.columns, heads: key.kvHeads, headDim: key.headDim)
        let kvTransposed = bhds(columns: key.columns, heads: key.kvHeads, headDim: key.headDim)
        let q = try g.tensor([b, h, s, d], strides: qStrides, key.storage)
        let kT = try g.tensor([b, hk, d, s], strides: kvTransposed, key.storage)
        let vT = try g.tensor([b, hk, d, s], strides: kvTransposed, key.storage)
        let out = try g.tensor([b, h, s, d], strides: qStrides, key.storage)
        let dOut = try g.tensor([b, h, s, d], strides: qStrides, key.storage)
        let stats = try g.tensor([b, h, s, 1], strides: statsStrides(columns: key.columns, heads: key.heads), SWIFTLET_CUDNN_DATA_FLOAT)
        let dQ = try g.tensor([b, h, s, d], strides: qStrides, key.storage)
        let dK = try g.tensor([b, hk, s, d], strides: kvStrides, key.storage)
        let dV = try g.tensor([b, hk, s, d], strides: kvStrides, key.storage)
        let scale = try g.scalar(), one = try g.scalar(), negativeInfinity = try g.scalar()
        let window = key.windowed ? try g.scalar() : nil
        // Two f32 buffers the fused kernel keeps in device memory: rowsum(dO ⊙ O), and dQ's accumulator.
        let rowSum = try g.tensor([b, h, s, 1], SWIFTLET_CUDNN_DATA_FLOAT)
        let dQAccumulator = try g.tensor([b, h, s, d], SWIFTLET_CUDNN_DATA_FLOAT)
        let scores = [b, h, s, s], transposedScores = [h * s * s, s * s, 1, s]

        let dP = try g.virtual(scores)
        try g.matmul(dOut, vT, into: dP)
        let raw = try g.virtual(scores)
        try g.matmul(q, kT, into: raw)
        let dOutTimesOut = try g.virtual([b, h, s, d])
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_MUL, dOut, out, into: dOutTimesOut)
        let k = try g.virtual([b, hk, s, d], strides: kvStrides)
        try g.reshape(kT, into: k)

        let scaled = try g.virtual(scores)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_MUL, raw, scale, into: scaled)
        let shifted = try g.virtual(scores)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_SUB, scaled, stats, into: shifted)
        let masked = try windowMask(&g, try causalMask(&g, shifted, negativeInfinity: negativeInfinity),
                                    window: window, negativeInfinity: negativeInfinity)
        let p = try g.virtual(scores)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_EXP, masked, into: p)

        // dV = Pᵀ·dO (per query head, then summed over each GQA group)
        let pT = try g.virtual(scores, key.storage, strides: transposedScores)
        try g.reshape(p, into: pT)
        try headGroupProduct(&g, pT, dOut, into: dV, key)

        let dotSum = try g.virtual([b, h, s, 1])
        try g.reduce(SWIFTLET_CUDNN_REDUCE_TENSOR_ADD, dOutTimesOut, into: dotSum)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_MUL, dotSum, one, into: rowSum)
        let centered = try g.virtual(scores)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_SUB, dP, rowSum, into: centered)
        let dS = try g.virtual(scores)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_MUL, centered, p, into: dS)
        let dSScaled = try g.virtual(scores)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_MUL, dS, scale, into: dSScaled)

        try g.matmul(dSScaled, k, into: dQAccumulator)
        try g.pointwise(SWIFTLET_CUDNN_POINTWISE_IDENTITY, dQAccumulator, into: dQ)
        let dST = try g.virtual(scores, key.storage, strides: transposedScores)
        try g.reshape(dSScaled, into: dST)
        try headGroupProduct(&g, dST, q, into: dK, key)

        return Backward(plan: try g.plan(), q: q.uid, kT: kT.uid, vT: vT.uid, out: out.uid, dOut: dOut.uid,
                        stats: stats.uid, dQ: dQ.uid, dK: dK.uid, dV: dV.uid, scale: scale.uid, one: one.uid,
                        negativeInfinity: negativeInfinity.uid, rowSum: rowSum.uid, dQAccumulator: dQAccumulator.uid,
                        window: window?.uid)
    }

    /// result = a·b into a KV-head tensor: directly with one query head per KV head, else per query
    /// head and summed over each group.
    static func headGroupProduct(_ g: inout CUDNNGraph, _ a: CUDNNGraph.TensorRef, _ b: CUDNNGraph.TensorRef,
                                 into result: CUDNNGraph.TensorRef, _ key: Key) throws {
        guard key.heads != key.kvHeads else { return try g.matmul(a, b, into: result) }
        let perHead = try g.virtual([Int64(key.rows), Int64(key.heads), Int64(key.columns), Int64(key.headDim)], key.storage)
        try g.matmul(a, b, into: perHead)
        try g.reduce(SWIFTLET_CUDNN_REDUCE_TENSOR_ADD, perHead, into: result)
    }
}

extension CUDABackend {
    /// Whether this call runs on cuDNN's fused attention (see `CUDNNAttention`).
    func usesCUDNNAttention(_ layout: AttentionLayout, _ tensors: [Tensor]) -> Bool {
        guard attentionKernels == .cudnn, let cudnn = cudnnLibrary, CUDNNAttention.supports(version: cudnn.version),
              device.computeCapability.major >= 8, CUDNNAttention.headDims.contains(layout.headDim),
              layout.wholeRows, layout.columns % 128 == 0, layout.softcap == nil,
              CUDNNAttention.extended || !Self.windowed(layout),
              tensors.allSatisfy({ $0.device % 16 == 0 }) else { return false }
        return !cudnnFailedKeys.contains(cudnnKey(layout, backward: false))
    }

    func cudnnKey(_ layout: AttentionLayout, backward: Bool) -> CUDNNAttention.Key {
        CUDNNAttention.Key(backward: backward, rows: layout.rows, columns: layout.columns, heads: layout.heads,
                           kvHeads: layout.kvHeads, headDim: layout.headDim,
                           storage: computeType == .bf16 ? SWIFTLET_CUDNN_DATA_BFLOAT16 : SWIFTLET_CUDNN_DATA_HALF,
                           windowed: Self.windowed(layout))
    }

    /// Whether the layout's sliding window hides any key of its rows.
    static func windowed(_ layout: AttentionLayout) -> Bool { layout.slidingWindow.map { $0 < layout.columns } ?? false }

    static func pointer(_ t: Tensor) -> UnsafeMutableRawPointer? { UnsafeMutableRawPointer(bitPattern: UInt(t.device)) }

    /// Host pointers to `values` for the graph's by-value scalars (cuDNN reads them when the plan is
    /// enqueued, inside `body`).
    static func withScalars(_ values: [Float], _ body: ([UnsafeMutableRawPointer?]) throws -> Void) rethrows {
        var values = values
        try values.withUnsafeMutableBufferPointer { buffer in
            try body((0..<buffer.count).map { UnsafeMutableRawPointer(buffer.baseAddress! + $0) })
        }
    }

    /// The forward on cuDNN; false (nothing run) where cuDNN has no engine for this geometry, which
    /// is remembered so the caller's fallback runs from then on.
    func cudnnAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, layout: AttentionLayout,
                        into out: Tensor, logSumExp: Tensor) -> Bool {
        guard let cudnn = cudnnLibrary else { return false }
        let key = cudnnKey(layout, backward: false)
        let graph: CUDNNAttention.Forward
        if let cached = cudnnForwardGraphs[key] {
            graph = cached
        } else {
            do { graph = try CUDNNAttention.forwardGraph(cudnn, key) } catch {
                cudnnUnavailable(key, error)
                return false
            }
            cudnnForwardGraphs[key] = graph
        }
        run {
            let workspace = try empty([Swift.max(graph.plan.workspaceBytes, 1)], .u8)
            try Self.withScalars([layout.scale, -Float.infinity, Float(layout.slidingWindow ?? 0)]) { scalars in
                try cudnn.execute(graph.plan, pointers: [
                    (graph.q, Self.pointer(q)), (graph.kT, Self.pointer(k)), (graph.v, Self.pointer(v)),
                    (graph.out, Self.pointer(out)), (graph.stats, Self.pointer(logSumExp)),
                    (graph.scale, scalars[0]), (graph.negativeInfinity, scalars[1]),
                ] + (graph.window.map { [($0, scalars[2])] } ?? []), workspace: Self.pointer(workspace))
            }
        }
        return true
    }

    /// The backward on cuDNN; false (nothing run) where cuDNN has no engine for it.
    func cudnnAttentionBackward(dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, logSumExp: Tensor,
                                layout: AttentionLayout, dQ: Tensor, dK: Tensor, dV: Tensor) -> Bool {
        guard let cudnn = cudnnLibrary else { return false }
        let key = cudnnKey(layout, backward: true)
        let graph: CUDNNAttention.Backward
        if let cached = cudnnBackwardGraphs[key] {
            graph = cached
        } else {
            do { graph = try CUDNNAttention.backwardGraph(cudnn, key) } catch {
                cudnnUnavailable(key, error)
                return false
            }
            cudnnBackwardGraphs[key] = graph
        }
        let tokens = q.shape[0]
        run {
            let rowSum = try empty([tokens, layout.heads], .f32)
            let accumulator = try empty([tokens, layout.heads * layout.headDim], .f32)
            // cuDNN zeroes dQ's accumulator itself from 9.6 on.
            if cudnn.version < 90600 { zero([accumulator]) }
            let workspace = try empty([Swift.max(graph.plan.workspaceBytes, 1)], .u8)
            try Self.withScalars([layout.scale, 1, -Float.infinity, Float(layout.slidingWindow ?? 0)]) { scalars in
                try cudnn.execute(graph.plan, pointers: [
                    (graph.q, Self.pointer(q)), (graph.kT, Self.pointer(k)), (graph.vT, Self.pointer(v)),
                    (graph.out, Self.pointer(out)), (graph.dOut, Self.pointer(dOut)),
                    (graph.stats, Self.pointer(logSumExp)), (graph.dQ, Self.pointer(dQ)),
                    (graph.dK, Self.pointer(dK)), (graph.dV, Self.pointer(dV)),
                    (graph.scale, scalars[0]), (graph.one, scalars[1]), (graph.negativeInfinity, scalars[2]),
                    (graph.rowSum, Self.pointer(rowSum)), (graph.dQAccumulator, Self.pointer(accumulator)),
                ] + (graph.window.map { [($0, scalars[3])] } ?? []), workspace: Self.pointer(workspace))
            }
        }
        return true
    }

    /// Remembers a geometry cuDNN cannot run (both directions fall back from then on) and says why
    /// once on stderr.
    private func cudnnUnavailable(_ key: CUDNNAttention.Key, _ error: Error) {
        var forward = key
        forward.backward = false
        cudnnFailedKeys.insert(forward)
        fputs("swiftlet: cuDNN attention unavailable for \(key.rows)×\(key.columns), \(key.heads)/\(key.kvHeads) heads, "
              + "d \(key.headDim) (\(key.backward ? "backward" : "forward")); using Swiftlet's kernels: \(error)\n", stderr)
    }
}
