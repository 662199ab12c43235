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
        func checkedValues(_ name: String, _ shape: Shape) throws -> [Float] {
            guard checkpoint.contains(name) else { throw ModelError.missingTensor(name: name, source: source) }
            let found = try checkpoint.info(name).shape
            guard found == shape else {
                throw ModelError.shapeMismatch(name: name, source: source, expected: shape, found: found)
            }
            return try checkpoint.floats(name)
        }
        func tensor(_ name: String, _ shape: Shape) throws -> Tensor {
            try backend.upload(checkedValues(name, shape), shape, backend.computeType)
        }
        func linearWeight(_ name: String, _ shape: Shape) throws -> FrozenWeight {
            if BnbNF4Layout.isQuantized(name, in: checkpoint) {
                return .nf4(try NF4Weight(BnbNF4Layout.read(name, from: checkpoint, expectedShape: shape), on: backend))
            }
            if loadIn4bit {
                return .nf4(try NF4Weight(quantizing: checkedValues(name, shape), shape: shape,
                                          doubleQuant: doubleQuant, on: backend))
            }
            return .dense(try tensor(name, shape))
        }
        return try assemble(config: config, on: backend, tensor: tensor, linearWeight: linearWeight)
    }

    /// A model of `config`'s shape with seeded random weights, uniform with standard deviation
    /// `std` (0.02 is transformers' Llama initialiser), norms scaling by 1 (Gemma's stored w at 0).
    /// Filled on the backend itself, so a 7B model needs no host copy.
    public static func random(config: LlamaConfig, seed: UInt64, std: Float = 0.02,
                              on backend: any Backend) throws -> LlamaModel {
        var tensors = 0
        return try assemble(config: config, on: backend) { name, shape in
            if name.hasSuffix("norm.weight") {
                return try backend.upload([Float](repeating: 1 - config.normWeightOffset, count: shape.count), shape,
                                          backend.computeType)
            }
            tensors += 1
            let t = try backend.zeros(shape, backend.computeType)
            backend.fillUniform(t, seed: seed &+ UInt64(tensors) &* 0x9E37_79B9, bound: std * Float(3).squareRoot())
            return t
        }
    }

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
