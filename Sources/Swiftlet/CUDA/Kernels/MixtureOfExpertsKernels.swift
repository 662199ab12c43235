import CCUDA

/// The mixture-of-experts ops on the GPU (Backend.moe*; CPU twin CPU/ExpertRouting.swift):
///   moe_route / moe_route_backward   one thread per token: f32 softmax over the experts, top-k by
///                                    repeated arg-max (lower expert first on ties), renormalised;
///                                    the backward through both, plus the load-balancing term
///   moe_statistics                   one block per expert: its top-k count and Σ probability over
///                                    unpadded tokens (fixed-order block sums)
///   moe_count, moe_sort_rows         the counting sort: one block per expert counts its assignments,
///                                    then each block takes its offset (Σ of the lower experts'
///                                    counts) and ranks its assignments in token order with warp
///                                    ballots: a stable order, integers only
///   moe_gather                       each token copied to the rows of its k experts
///   moe_combine                      out[t] = Σ_j w·sorted[row], the k rows in ascending order, f32
///   moe_combine_backward_rows / _weights   dSorted = w·dOut (each row once); dWeights[t, j] by one
///                                    block-sum per assignment
/// Every output element has one writer and sums run in a fixed order: no atomics, deterministic.
enum CUDAMixtureOfExperts {
    static let source = """
    extern "C" __global__ void moe_route(const storage_t* __restrict__ logits, float* __restrict__ probs,
                                         int* __restrict__ chosen, float* __restrict__ weights,
                                         long long tokens, int experts, int k, int normalize) {
        const long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x;
        if (t >= tokens) return;
        const storage_t* x = logits + t * experts;
        float* p = probs + t * experts;
        float m = -__int_as_float(0x7f800000);
        for (int e = 0; e < experts; ++e) m = fmaxf(m, to_f32(x[e]));
        float sum = 0.0f;
        for (int e = 0; e < experts; ++e) sum += expf(to_f32(x[e]) - m);
        for (int e = 0; e < experts; ++e) p[e] = expf(to_f32(x[e]) - m) / sum;
        float total = 0.0f;
        for (int j = 0; j < k; ++j) {
            int best = -1;
            for (int e = 0; e < experts; ++e) {
                bool taken = false;
                for (int i = 0; i < j; ++i) taken = taken || chosen[t * k + i] == e;
                if (!taken && (best < 0 || p[e] > p[best])) best = e;
            }
            chosen[t * k + j] = best;
            weights[t * k + j] = p[best];
            total += p[best];
        }
        if (normalize) for (int j = 0; j < k; ++j) weights[t * k + j] /= total;
    }

    // k <= 32 (checked on the host).
    extern "C" __global__ void moe_route_backward(const float* __restrict__ dweights, const float* __restrict__ probs,
                                                  const int* __restrict__ chosen, const float* __restrict__ aux,
                                                  const int* __restrict__ sequence_ids, storage_t* __restrict__ dlogits,
                                                  long long tokens, int experts, int k, int normalize) {
        const long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x;
        if (t >= tokens) return;
        const float* p = probs + t * experts;
        const bool counted = aux != 0 && (sequence_ids == 0 || sequence_ids[t] >= 0);
        float total = 0.0f, weighted = 0.0f, g[32];
        for (int j = 0; j < k; ++j) total += p[chosen[t * k + j]];
        for (int j = 0; j < k; ++j) weighted += dweights[t * k + j] * p[chosen[t * k + j]] / total;
        for (int j = 0; j < k; ++j) g[j] = normalize ? (dweights[t * k + j] - weighted) / total : dweights[t * k + j];
        float dot = 0.0f;
        for (int e = 0; e < experts; ++e) {
            float dp = counted ? aux[e] : 0.0f;
            for (int j = 0; j < k; ++j) if (chosen[t * k + j] == e) dp += g[j];
            dot += p[e] * dp;
        }
        for (int e = 0; e < experts; ++e) {
            float dp = counted ? aux[e] : 0.0f;
            for (int j = 0; j < k; ++j) if (chosen[t * k + j] == e) dp += g[j];
            dlogits[t * experts + e] = to_storage(p[e] * (dp - dot));
        }
    }

    // grid: one block per expert. out [2, experts].
    extern "C" __global__ void moe_statistics(const float* __restrict__ probs, const int* __restrict__ chosen,
                                              const int* __restrict__ sequence_ids, float* __restrict__ out,
                                              long long tokens, int experts, int k) {
        __shared__ float shared[32];
        const int e = blockIdx.x;
        float count = 0.0f, mass = 0.0f;
        for (long long t = threadIdx.x; t < tokens; t += blockDim.x) {
            if (sequence_ids != 0 && sequence_ids[t] < 0) continue;
            for (int j = 0; j < k; ++j) count += chosen[t * k + j] == e ? 1.0f : 0.0f;
            mass += probs[t * experts + e];
        }
        count = block_sum(count, shared);
        mass = block_sum(mass, shared);
        if (threadIdx.x == 0) { out[e] = count; out[experts + e] = mass; }
    }

    // grid: one block per expert.
    extern "C" __global__ void moe_count(const int* __restrict__ chosen, int* __restrict__ counts, long long n) {
        __shared__ float shared[32];
        const int e = blockIdx.x;
        float count = 0.0f;  // exact: n < 2^24
        for (long long a = threadIdx.x; a < n; a += blockDim.x) count += chosen[a] == e ? 1.0f : 0.0f;
        count = block_sum(count, shared);
        if (threadIdx.x == 0) counts[e] = (int)count;
    }

    // grid: one block per expert, blockDim a multiple of 32 (at most 1024).
    extern "C" __global__ void moe_sort_rows(const int* __restrict__ chosen, const int* __restrict__ counts,
                                             int* __restrict__ rows, long long n) {
        __shared__ int warp_counts[32];
        __shared__ int offset;
        const int e = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
        if (threadIdx.x == 0) {
            int o = 0;
            for (int i = 0; i < e; ++i) o += counts[i];
            offset = o;
        }
        __syncthreads();
        int base = offset;
        for (long long start = 0; start < n; start += blockDim.x) {
            const long long a = start + threadIdx.x;
            const int flag = a < n && chosen[a] == e;
            const unsigned int mask = __ballot_sync(0xffffffffu, flag);
            if (lane == 0) warp_counts[warp] = __popc(mask);
            __syncthreads();
            int before = 0, total = 0;
            for (int w = 0; w < warps; ++w) { before += w < warp ? warp_counts[w] : 0; total += warp_counts[w]; }
            if (flag) rows[a] = base + before + __popc(mask & ((1u << lane) - 1u));
            __syncthreads();
            base += total;
        }
    }

    extern "C" __global__ void moe_gather(const storage_t* __restrict__ x, const int* __restrict__ rows,
                                          storage_t* __restrict__ sorted, long long n, long long width, int k) {
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n * width;
             i += (long long)gridDim.x * blockDim.x) {
            const long long a = i / width, h = i - a * width;
            sorted[(long long)rows[a] * width + h] = x[(a / k) * width + h];
        }
    }

    // k <= 32 (checked on the host). weights may be null (all 1).
    extern "C" __global__ void moe_combine(const storage_t* __restrict__ sorted, const int* __restrict__ rows,
                                           const float* __restrict__ weights, storage_t* __restrict__ out,
                                           long long tokens, long long width, int k) {
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < tokens * width;
             i += (long long)gridDim.x * blockDim.x) {
            const long long t = i / width, h = i - t * width;
            int order[32];
            for (int j = 0; j < k; ++j) {  // insertion sort of the token's slots by row: expert order
                int m = j;
                while (m > 0 && rows[t * k + order[m - 1]] > rows[t * k + j]) { order[m] = order[m - 1]; --m; }
                order[m] = j;
            }
            float sum = 0.0f;
            for (int m = 0; m < k; ++m) {
                const long long a = t * k + order[m];
                const float w = weights != 0 ? weights[a] : 1.0f;
                sum += w * to_f32(sorted[(long long)rows[a] * width + h]);
            }
            out[i] = to_storage(sum);
        }
    }

    extern "C" __global__ void moe_combine_backward_rows(const storage_t* __restrict__ dout, const int* __restrict__ rows,
                                                         const float* __restrict__ weights, storage_t* __restrict__ dsorted,
                                                         long long n, long long width, int k) {
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n * width;
             i += (long long)gridDim.x * blockDim.x) {
            const long long a = i / width, h = i - a * width;
            dsorted[(long long)rows[a] * width + h] = to_storage(weights[a] * to_f32(dout[(a / k) * width + h]));
        }
    }

    // grid: one block per assignment.
    extern "C" __global__ void moe_combine_backward_weights(const storage_t* __restrict__ dout, const storage_t* __restrict__ sorted,
                                                            const int* __restrict__ rows, float* __restrict__ dweights,
                                                            long long width, int k) {
        __shared__ float shared[32];
        const long long a = blockIdx.x, t = a / k, row = rows[a];
        float dot = 0.0f;
        for (long long h = threadIdx.x; h < width; h += blockDim.x)
            dot += to_f32(dout[t * width + h]) * to_f32(sorted[row * width + h]);
        dot = block_sum(dot, shared);
        if (threadIdx.x == 0) dweights[a] = dot;
    }
    """

    static let maxTopK = 32
}

extension CUDABackend {
    private func launchMoE(_ name: String, grid: Int, block: Int, _ arguments: [KernelArgument], op: String = #function) {
        guard grid > 0 else { return }
        run(op) { try kernels.launch(try function(name, CUDAMixtureOfExperts.source), grid: (grid, 1, 1), block: (block, 1, 1),
                                     arguments: arguments) }
    }

    private func optionalPointer(_ t: Tensor?) -> KernelArgument { .pointer(t?.device ?? 0) }

    public func moeRoute(logits: Tensor, topK: Int, normalize: Bool, probabilities: Tensor, experts: Tensor, weights: Tensor) {
        expect(logits, computeType); expect(probabilities, .f32); expect(experts, .i32); expect(weights, .f32)
        let tokens = logits.shape[0]
        launchMoE("moe_route", grid: (tokens + 127) / 128, block: 128,
                  [.pointer(logits.device), .pointer(probabilities.device), .pointer(experts.device), .pointer(weights.device),
                   .int64(Int64(tokens)), .int32(Int32(logits.shape[1])), .int32(Int32(topK)), .int32(normalize ? 1 : 0)])
    }

    public func moeRouteBackward(dWeights: Tensor, probabilities: Tensor, experts: Tensor, normalize: Bool,
                                 auxGradient: Tensor?, sequenceIds: Tensor?, into dLogits: Tensor) {
        expect(dWeights, .f32); expect(probabilities, .f32); expect(experts, .i32); expect(dLogits, computeType)
        precondition(experts.shape[1] <= CUDAMixtureOfExperts.maxTopK, "top-k of at most \(CUDAMixtureOfExperts.maxTopK)")
        let tokens = probabilities.shape[0]
        launchMoE("moe_route_backward", grid: (tokens + 127) / 128, block: 128,
                  [.pointer(dWeights.device), .pointer(probabilities.device), .pointer(experts.device),
                   optionalPointer(auxGradient), optionalPointer(sequenceIds), .pointer(dLogits.device),
                   .int64(Int64(tokens)), .int32(Int32(probabilities.shape[1])), .int32(Int32(experts.shape[1])),
                   .int32(normalize ? 1 : 0)])
    }

    public func moeRouterStatistics(probabilities: Tensor, experts: Tensor, sequenceIds: Tensor?, into statistics: Tensor) {
        expect(probabilities, .f32); expect(experts, .i32); expect(statistics, .f32)
        launchMoE("moe_statistics", grid: probabilities.shape[1], block: 256,
                  [.pointer(probabilities.device), .pointer(experts.device), optionalPointer(sequenceIds),
                   .pointer(statistics.device), .int64(Int64(probabilities.shape[0])), .int32(Int32(probabilities.shape[1])),
                   .int32(Int32(experts.shape[1]))])
    }

    public func moeSort(experts: Tensor, expertCount: Int, counts: Tensor, rows: Tensor) {
        expect(experts, .i32); expect(counts, .i32); expect(rows, .i32)
        precondition(experts.count < 1 << 24, "at most 2^24 expert assignments per layer")
        launchMoE("moe_count", grid: expertCount, block: 256,
                  [.pointer(experts.device), .pointer(counts.device), .int64(Int64(experts.count))])
        launchMoE("moe_sort_rows", grid: expertCount, block: 256,
                  [.pointer(experts.device), .pointer(counts.device), .pointer(rows.device), .int64(Int64(experts.count))])
    }

    public func moeGather(_ x: Tensor, rows: Tensor, into sorted: Tensor) {
        expect(x, computeType); expect(rows, .i32); expect(sorted, computeType)
        let width = x.shape[1]
        launchElementwise("moe_gather", count: rows.count * width,
                          [.pointer(x.device), .pointer(rows.device), .pointer(sorted.device), .int64(Int64(rows.count)),
                           .int64(Int64(width)), .int32(Int32(rows.count / x.shape[0]))],
                          source: CUDAMixtureOfExperts.source)
    }

    public func moeCombine(_ sorted: Tensor, rows: Tensor, weights: Tensor?, into out: Tensor) {
        expect(sorted, computeType); expect(rows, .i32); expect(out, computeType)
        if let weights { expect(weights, .f32) }
        let tokens = out.shape[0], width = out.shape[1], k = rows.count / tokens
        precondition(k <= CUDAMixtureOfExperts.maxTopK, "top-k of at most \(CUDAMixtureOfExperts.maxTopK)")
        launchElementwise("moe_combine", count: tokens * width,
                          [.pointer(sorted.device), .pointer(rows.device), optionalPointer(weights), .pointer(out.device),
                           .int64(Int64(tokens)), .int64(Int64(width)), .int32(Int32(k))],
                          source: CUDAMixtureOfExperts.source)
    }

    public func moeCombineBackward(dOut: Tensor, sorted: Tensor, rows: Tensor, weights: Tensor, dSorted: Tensor, dWeights: Tensor) {
        expect(dOut, computeType); expect(sorted, computeType); expect(rows, .i32); expect(weights, .f32)
        expect(dSorted, computeType); expect(dWeights, .f32)
        let tokens = dOut.shape[0], width = dOut.shape[1], k = rows.count / tokens
        launchElementwise("moe_combine_backward_rows", count: rows.count * width,
                          [.pointer(dOut.device), .pointer(rows.device), .pointer(weights.device), .pointer(dSorted.device),
                           .int64(Int64(rows.count)), .int64(Int64(width)), .int32(Int32(k))],
                          source: CUDAMixtureOfExperts.source)
        launchMoE("moe_combine_backward_weights", grid: rows.count, block: 128,
                  [.pointer(dOut.device), .pointer(sorted.device), .pointer(rows.device), .pointer(dWeights.device),
                   .int64(Int64(width)), .int32(Int32(k))])
    }
}
