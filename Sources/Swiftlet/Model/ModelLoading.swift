import Foundation

/// Builds a `LlamaModel` from a Hugging Face model folder (config.json + safetensors), or from
/// seeded random weights (the built-in demo and benchmarks).
extension LlamaModel {
    /// Loads `directory`'s config.json and weights (single file or sharded) onto `backend`.
    /// Missing tensors and shapes that disagree with config.json are errors naming the tensor.
    ///
    /// Linear weights stored in bitsandbytes' 4-bit layout (a pre-quantized checkpoint, config.json
    /// with `quantization_config`) load as NF4 as they are. With `loadIn4bit`, the 16-bit q k v o
    /// gate up down weights are quantized to NF4 one tensor at a time as they are read (as
    /// transformers + bitsandbytes do for every nn.Linear but lm_head), so the model never exists
    /// in 16-bit; embeddings, norms and the LM head stay in the compute type.
    public static func load(directory: URL, on backend: any Backend, loadIn4bit: Bool = false,
                            doubleQuant: Bool = true) throws -> LlamaModel {
        let configURL = directory.appendingPathComponent("config.json")
        let config = try HFConfig.load(configURL)
        _ = try BnbQuantizationConfig.load(configURL)  // rejects quantizations Swiftlet cannot read
        let checkpoint = try Checkpoint(directory: directory)
        let source = directory.path
        func checkedInfo(_ name: String, _ shape: Shape) throws -> SafetensorsTensorInfo {
            guard checkpoint.contains(name) else { throw ModelError.missingTensor(name: name, source: source) }
            let info = try checkpoint.info(name)
            guard info.shape == shape else {
                throw ModelError.shapeMismatch(name: name, source: source, expected: shape, found: info.shape)
            }
            return info
        }
        func checkedValues(_ name: String, _ shape: Shape) throws -> [Float] {
            _ = try checkedInfo(name, shape)
            return try checkpoint.floats(name)
        }
        func tensor(_ name: String, _ shape: Shape) throws -> Tensor {
            try backend.upload(checkedValues(name, shape), shape, backend.computeType)
        }
        func linearWeight(_ name: String, _ shape: Shape) throws -> FrozenWeight {
            if BnbNF4Layout.isQuantized(name, in: checkpoint) {
                return .nf4(try NF4Weight(BnbNF4Layout.read(name, from: checkpoint, expectedShape: shape), on: backend))
            }
            if loadIn4bit && !isRouter(name) {
                // Stored in the compute type (a bf16 checkpoint on a bf16 GPU): its bytes go up as they are
                // and are quantized there, the values the host would have quantized.
                if try checkedInfo(name, shape).dtype == backend.computeType {
                    let dense = try backend.upload(bytes: Array(checkpoint.rawBytes(name)), shape, backend.computeType)
                    return .nf4(try NF4Weight(quantizing: dense, doubleQuant: doubleQuant))
                }
                return .nf4(try NF4Weight(quantizing: checkpoint.floats(name), shape: shape,
                                          doubleQuant: doubleQuant, on: backend))
            }
            return .dense(try tensor(name, shape))
        }
        return try assemble(config: config, on: backend, tensor: tensor, linearWeight: linearWeight)
    }

    /// A model of `config`'s shape with seeded random weights, uniform with standard deviation
    /// `std` (0.02 is transformers' Llama initialiser), norms scaling by 1 (Gemma's stored w at 0).
    /// Filled on the backend itself, so a 7B model needs no host copy.
    ///
    /// With `loadIn4bit` each linear weight (not a mixture's router) is quantized to NF4 as soon as it
    /// is filled and its 16-bit form dropped, so a model far larger than device memory in 16-bit
    /// (Mixtral 8x7B: 47B parameters) is built within its 4-bit size; the values are those of
    /// `random(...)` followed by `quantizeLinearsToNF4`.
    public static func random(config: LlamaConfig, seed: UInt64, std: Float = 0.02, loadIn4bit: Bool = false,
                              on backend: any Backend) throws -> LlamaModel {
        var tensors = 0
        func tensor(_ name: String, _ shape: Shape) throws -> Tensor {
            if name.hasSuffix("norm.weight") {
                return try backend.upload([Float](repeating: 1 - config.normWeightOffset, count: shape.count), shape,
                                          backend.computeType)
            }
            tensors += 1
            let t = try backend.zeros(shape, backend.computeType)
            backend.fillUniform(t, seed: seed &+ UInt64(tensors) &* 0x9E37_79B9, bound: std * Float(3).squareRoot())
            return t
        }
        return try assemble(config: config, on: backend, tensor: tensor) { name, shape in
            let dense = try tensor(name, shape)
            guard loadIn4bit && !isRouter(name) else { return .dense(dense) }
            return .nf4(try NF4Weight(quantizing: dense, doubleQuant: true))
        }
    }

    /// A mixture's router (`mlp.gate` / `block_sparse_moe.gate`): left in 16-bit by 4-bit loading.
    static func isRouter(_ name: String) -> Bool { name.hasSuffix(".gate.weight") }

    /// Hugging Face tensor names and shapes of each part of the model.
    static func assemble(config c: LlamaConfig, on backend: any Backend,
                         tensor: (String, Shape) throws -> Tensor,
                         linearWeight: ((String, Shape) throws -> FrozenWeight)? = nil) throws -> LlamaModel {
        func linearWeightOrDense(_ name: String, _ shape: Shape) throws -> FrozenWeight {
            try linearWeight?(name, shape) ?? .dense(try tensor(name, shape))
        }
        let embedding = try tensor("model.embed_tokens.weight", [c.vocabSize, c.hiddenSize])
        var layers: [DecoderLayer] = []
        for i in 0..<c.layers {
            let p = "model.layers.\(i)."
            func linear(_ name: String, out: Int, in inFeatures: Int, bias: Bool) throws -> Linear {
                Linear(weight: try linearWeightOrDense(p + name + ".weight", [out, inFeatures]),
                       bias: bias ? try tensor(p + name + ".bias", [out]) : nil)
            }
            // Made in module order (q k v o gate up down): `random` seeds the weights in this order.
            let qkvWidths = [c.qWidth, c.kvWidth, c.kvWidth]
            let qkv: ProjectionGroup = c.fusedProjections
                // Phi-3: rows q | k | v and gate | up, as transformers' Phi3Attention and Phi3MLP split them.
                ? .fused(try linear("self_attn.qkv_proj", out: qkvWidths.reduce(0, +), in: c.hiddenSize, bias: c.qkvBias),
                         widths: qkvWidths)
                : .separate([try linear("self_attn.q_proj", out: c.qWidth, in: c.hiddenSize, bias: c.qkvBias),
                             try linear("self_attn.k_proj", out: c.kvWidth, in: c.hiddenSize, bias: c.qkvBias),
                             try linear("self_attn.v_proj", out: c.kvWidth, in: c.hiddenSize, bias: c.qkvBias)])
            let o = try linear("self_attn.o_proj", out: c.hiddenSize, in: c.qWidth, bias: c.oBias)
            if let moe = c.moe {
                layers.append(DecoderLayer(
                    inputNorm: try tensor(p + "input_layernorm.weight", [c.hiddenSize]),
                    postAttentionNorm: try tensor(p + "post_attention_layernorm.weight", [c.hiddenSize]),
                    qNorm: c.qkNorm ? try tensor(p + "self_attn.q_norm.weight", [c.headDim]) : nil,
                    kNorm: c.qkNorm ? try tensor(p + "self_attn.k_norm.weight", [c.headDim]) : nil,
                    qkvProjections: qkv, o: o,
                    feedForward: .mixture(try mixtureOfExperts(c, moe, layer: i, tensor: tensor, linearWeight: linearWeightOrDense))))
                continue
            }
            let gateUp: ProjectionGroup = c.fusedProjections
                ? .fused(try linear("mlp.gate_up_proj", out: 2 * c.intermediateSize, in: c.hiddenSize, bias: false),
                         widths: [c.intermediateSize, c.intermediateSize])
                : .separate([try linear("mlp.gate_proj", out: c.intermediateSize, in: c.hiddenSize, bias: false),
                             try linear("mlp.up_proj", out: c.intermediateSize, in: c.hiddenSize, bias: false)])
            let norms = c.layerNormNames
            layers.append(DecoderLayer(
                inputNorm: try tensor(p + "input_layernorm.weight", [c.hiddenSize]),
                postAttentionNorm: try tensor(p + norms.preMLP, [c.hiddenSize]),
                attentionOutputNorm: try norms.attentionOutput.map { try tensor(p + $0, [c.hiddenSize]) },
                mlpOutputNorm: try norms.mlpOutput.map { try tensor(p + $0, [c.hiddenSize]) },
                qNorm: c.qkNorm ? try tensor(p + "self_attn.q_norm.weight", [c.headDim]) : nil,
                kNorm: c.qkNorm ? try tensor(p + "self_attn.k_norm.weight", [c.headDim]) : nil,
                qkvProjections: qkv,
                o: o,
                gateUpProjections: gateUp,
                down: try linear("mlp.down_proj", out: c.hiddenSize, in: c.intermediateSize, bias: false)))
        }
        let finalNorm = try tensor("model.norm.weight", [c.hiddenSize])
        let lmHead = c.tieWordEmbeddings ? embedding : try tensor("lm_head.weight", [c.vocabSize, c.hiddenSize])
        return LlamaModel(config: c, backend: backend, embedding: embedding, layers: layers,
                          finalNorm: finalNorm, lmHead: lmHead)
    }

    /// The checkpoint names of a mixture's router and experts, as transformers' save_pretrained writes
    /// them (transformers 4's layout, which 5 converts on load): Mixtral's
    /// `block_sparse_moe.{gate, experts.E.w1, w3, w2}`, Qwen3-MoE's `mlp.{gate, experts.E.gate_proj,
    /// up_proj, down_proj}`.
    static func expertNames(_ c: LlamaConfig, layer i: Int) -> (router: String, expert: (Int) -> (gate: String, up: String, down: String)) {
        let p = "model.layers.\(i)."
        if c.modelType == .mixtral {
            return (p + "block_sparse_moe.gate.weight", { e in
                let x = p + "block_sparse_moe.experts.\(e)."
                return (x + "w1.weight", x + "w3.weight", x + "w2.weight")
            })
        }
        return (p + "mlp.gate.weight", { e in
            let x = p + "mlp.experts.\(e)."
            return (x + "gate_proj.weight", x + "up_proj.weight", x + "down_proj.weight")
        })
    }

    /// One layer's router and experts. Each expert's gate and up become one fused [2I, hidden]
    /// linear (transformers 5's gate_up_proj[e]): dense parts are copied into one tensor, NF4 parts
    /// (quantized apart, as bitsandbytes quantizes w1 and w3) kept as stacked row blocks.
    static func mixtureOfExperts(_ c: LlamaConfig, _ moe: MixtureOfExpertsConfig, layer i: Int,
                                 tensor: (String, Shape) throws -> Tensor,
                                 linearWeight: (String, Shape) throws -> FrozenWeight) throws -> MixtureOfExperts {
        let names = expertNames(c, layer: i)
        let hidden = c.hiddenSize, width = moe.intermediateSize
        // The router stays in the compute type (transformers + bitsandbytes do not quantize it)
        // unless the checkpoint holds it quantized.
        let router = Linear(weight: try linearWeight(names.router, [moe.experts, hidden]))
        var experts: [GatedMLP] = []
        for e in 0..<moe.experts {
            let n = names.expert(e)
            let gate = try linearWeight(n.gate, [width, hidden]), up = try linearWeight(n.up, [width, hidden])
            let fused: FrozenWeight
            switch (gate, up) {
            case let (.dense(g), .dense(u)):
                let both = try g.backend.empty([2 * width, hidden], g.dtype)
                g.backend.copy(g, into: both.rows(0..<width))
                g.backend.copy(u, into: both.rows(width..<(2 * width)))
                fused = .dense(both)
            case let (.nf4(g), .nf4(u)): fused = .nf4Rows([g, u])
            default:
                throw ModelError.mixedExpertQuantization(gate: n.gate, up: n.up)
            }
            experts.append(GatedMLP(gateUp: .fused(Linear(weight: fused), widths: [width, width]),
                                    down: Linear(weight: try linearWeight(n.down, [hidden, width]))))
        }
        return MixtureOfExperts(router: router, experts: experts, config: moe)
    }
}

extension LlamaConfig {
    /// The Hugging Face names (under model.layers.N.) of a layer's norms around the MLP and the
    /// sublayer outputs: Llama's post_attention_layernorm is the norm before the MLP; Gemma calls
    /// that one pre_feedforward_layernorm and uses post_attention_layernorm (and
    /// post_feedforward_layernorm) for the norms of the attention (and MLP) outputs.
    var layerNormNames: (preMLP: String, attentionOutput: String?, mlpOutput: String?) {
        sandwichNorms
            ? ("pre_feedforward_layernorm.weight", "post_attention_layernorm.weight", "post_feedforward_layernorm.weight")
            : ("post_attention_layernorm.weight", nil, nil)
    }
}
