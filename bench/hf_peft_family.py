# The HF + PEFT baseline of ../shared/bench/hf_peft.py for the model families that are not LlamaForCausalLM:
# the same random-init model (the family's own transformers class), LoRA r 16 on every linear the family
# has (PEFT's names: Phi-3's fused qkv_proj and gate_up_proj), SDPA, the same timed loop and RESULT keys,
# so `swiftlet bench --arch qwen3-8b|phi3-mini|gemma2-9b|gemma3-4b|mixtral-8x7b|qwen3-30b-a3b` compares with it side by
# side. Gemma 2 runs eager attention by default: its softcapping is not in SDPA (transformers refuses SDPA
# for Gemma 2).
#   python3 bench/hf_peft_family.py --arch qwen3-8b --steps 8 [--fourbit 1] [--gc 0]
# Mixtures of experts: transformers 5 holds the experts as 3-D parameters, which bitsandbytes does not
# quantize (only nn.Linear), so HF's "4-bit" Mixtral has NF4 attention and bf16 experts (~84 GiB): it is
# quantized in place here (no save/reload: 94 GB would not fit the disk) and not passed through
# prepare_model_for_kbit_training (which would widen those experts to fp32). LoRA targets are PEFT's
# transformers-4 names (w1 w2 w3 / gate_proj up_proj down_proj and the router "gate"), which PEFT turns
# into target_parameters on the expert tensors, as `swiftlet bench` attaches them.
import argparse, json, tempfile, time, torch
from transformers import AutoModelForCausalLM, Qwen3Config, Phi3Config, Gemma2Config, Gemma3TextConfig, MixtralConfig, Qwen3MoeConfig
p = argparse.ArgumentParser()
p.add_argument("--arch", default="qwen3-8b"); p.add_argument("--bsz", type=int, default=2)
p.add_argument("--seq", type=int, default=2048); p.add_argument("--steps", type=int, default=8)
p.add_argument("--gc", type=int, default=1); p.add_argument("--fourbit", type=int, default=0)
p.add_argument("--r", type=int, default=16); p.add_argument("--attn", default=None, help="default: sdpa (gemma2: eager)")
a = p.parse_args()
families = {
    "qwen3-8b": (Qwen3Config(vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                             num_attention_heads=32, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-6,
                             rope_theta=1000000.0, max_position_embeddings=40960, tie_word_embeddings=False),
                 ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    "phi3-mini": (Phi3Config(vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                             num_attention_heads=32, num_key_value_heads=32, rms_norm_eps=1e-5, max_position_embeddings=4096,
                             sliding_window=2047, pad_token_id=32000),
                  ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]),
    # google/gemma-2-9b (swiftlet's gemma2-9b preset)
    "gemma2-9b": (Gemma2Config(vocab_size=256000, hidden_size=3584, intermediate_size=14336, num_hidden_layers=42,
                               num_attention_heads=16, num_key_value_heads=8, head_dim=256, rms_norm_eps=1e-6,
                               max_position_embeddings=8192, query_pre_attn_scalar=256, sliding_window=4096,
                               attn_logit_softcapping=50.0, final_logit_softcapping=30.0, tie_word_embeddings=True,
                               hidden_activation="gelu_pytorch_tanh"),
                  ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    # google/gemma-3-4b-pt's text model (swiftlet's gemma3-4b preset)
    "gemma3-4b": (Gemma3TextConfig(vocab_size=262208, hidden_size=2560, intermediate_size=10240, num_hidden_layers=34,
                                   num_attention_heads=8, num_key_value_heads=4, head_dim=256, rms_norm_eps=1e-6,
                                   max_position_embeddings=131072, query_pre_attn_scalar=256, sliding_window=1024,
                                   rope_theta=1000000.0, rope_local_base_freq=10000.0,
                                   rope_scaling={"rope_type": "linear", "factor": 8.0}, tie_word_embeddings=True,
                                   hidden_activation="gelu_pytorch_tanh"),
                  ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    "mixtral-8x7b": (MixtralConfig(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                   num_attention_heads=32, num_key_value_heads=8, rms_norm_eps=1e-5, rope_theta=1000000.0,
                                   max_position_embeddings=32768, num_local_experts=8, num_experts_per_tok=2,
                                   router_aux_loss_coef=0.02, output_router_logits=False),
                     ["q_proj", "k_proj", "v_proj", "o_proj", "w1", "w2", "w3", "gate"]),
    "qwen3-30b-a3b": (Qwen3MoeConfig(vocab_size=151936, hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768,
                                     num_hidden_layers=48, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
                                     rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=40960, num_experts=128,
                                     num_experts_per_tok=8, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
                                     output_router_logits=False, tie_word_embeddings=False),
                      ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "gate"]),
}
moe = a.arch in ("mixtral-8x7b", "qwen3-30b-a3b")
c, targets = families[a.arch]
a.attn = a.attn or ("eager" if a.arch.startswith("gemma2") else "sdpa")
c._attn_implementation = a.attn
def train():
    torch.manual_seed(0)
    with torch.device("cuda"):
        # Made in bf16 (an fp32 Mixtral 8x7B, 188 GB, does not fit the GPU).
        model = AutoModelForCausalLM.from_config(c, dtype=torch.bfloat16)
    if a.fourbit and moe:
        import bitsandbytes as bnb
        for module in list(model.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, torch.nn.Linear) and name != "lm_head":
                    q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                          compute_dtype=torch.bfloat16, quant_type="nf4", compress_statistics=True)
                    q.weight = bnb.nn.Params4bit(child.weight.data.cpu(), requires_grad=False, quant_type="nf4",
                                                 compress_statistics=True).cuda()
                    setattr(module, name, q)
        torch.cuda.empty_cache()
    elif a.fourbit:
        from transformers import BitsAndBytesConfig
        from peft import prepare_model_for_kbit_training
        d = tempfile.mkdtemp(); model.save_pretrained(d); del model; torch.cuda.empty_cache()
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(d, quantization_config=q, dtype=torch.bfloat16, device_map={"": 0}, attn_implementation=a.attn)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(a.gc))
    from peft import LoraConfig, get_peft_model
    model = get_peft_model(model, LoraConfig(r=a.r, lora_alpha=a.r, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                                             target_modules=targets))
    if a.gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True}); model.enable_input_require_grads()
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    g = torch.Generator(device="cuda").manual_seed(1)
    torch.cuda.reset_peak_memory_stats()
    times = []
    for s in range(a.steps + 2):
        x = torch.randint(0, c.vocab_size, (a.bsz, a.seq), device="cuda", generator=g); torch.cuda.synchronize(); t = time.perf_counter()
        out = model(input_ids=x, labels=x); out.loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize(); times.append(time.perf_counter() - t)
    tt = sorted(times[2:]); med = tt[len(tt) // 2]
    print("RESULT", json.dumps(dict(system="hf+peft", arch=a.arch, bsz=a.bsz, seq=a.seq, gc=a.gc, fourbit=a.fourbit, attn=a.attn, r=a.r,
                                    step_s=round(med, 4), tok_s=round(a.bsz * a.seq / med, 1),
                                    peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2), loss=round(out.loss.item(), 4))))


# A model that does not fit the GPU (Mixtral's bf16 experts on an 80 GB card) is a result too: said as one.
try:
    train()
except torch.OutOfMemoryError as e:
    print("RESULT", json.dumps(dict(system="hf+peft", arch=a.arch, bsz=a.bsz, seq=a.seq, gc=a.gc, fourbit=a.fourbit, r=a.r,
                                    oom=True, gpu_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
                                    peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
                                    error=str(e).split(".")[0][:160])))
