#!/usr/bin/env python3
"""Make the PyTorch + transformers + PEFT reference fixtures for the Swiftlet tests.

Requirements:  pip install torch transformers peft safetensors
(made with torch 2.15, transformers 5.24.0, peft 0.21.2; other versions may differ in the last bits)

Usage:
    python scripts/make_fixtures.py [--out Tests/SwiftletTests/Fixtures] [--only NAME ...]

Every fixture is a folder under --out:
    config.json, model.safetensors   base model (fp32), as `model.save_pretrained(dir)` writes it
    adapter/                         PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors)
    batch.json                       input_ids / labels / attention_mask (or null) / position_ids (or null)
    expected.json                    loss, num_target_tokens, LoRA scaling, optimizer settings, notes
    expected.safetensors (f32)       logits [B,T,V], hidden.final [B,T,H] (output of the final RMSNorm,
                                     i.e. the input of lm_head), grad.<name>, adamw.<name>, sgd.<name>
                                     where <name> is the key of the LoRA weight in adapter_model.safetensors
    meta.json                        versions and findings (rope, masking, packing)

Everything is float32, CPU, eager attention, fixed seeds. Everything in expected.* is computed on a model
re-loaded from the files just written (base via from_pretrained + PeftModel.from_pretrained), so the
fixtures describe exactly what the saved files mean.
"""

import argparse
import copy
import json
import math
import os
import platform
import shutil
import sys
import warnings
from pathlib import Path

import torch
import transformers
import peft
import safetensors
from safetensors.torch import save_file, load_file
from transformers import (AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, Phi3Config, Phi3ForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM, Gemma2Config, Gemma2ForCausalLM, Gemma3TextConfig,
                          Gemma3ForCausalLM)
from peft import LoraConfig, PeftModel, get_peft_model

DTYPE = torch.float32
ADAMW = {"lr": 1e-2, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01}
SGD = {"lr": 0.5, "steps": 3}
ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PHI3_ALL = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]  # PEFT's names for Phi-3's fused linears

# Gemma's configs name the activation hidden_activation (gelu_pytorch_tanh); hidden_act is not theirs.
def gemma_common(**overrides):
    common = {k: v for k, v in COMMON.items() if k != "hidden_act"}
    return dict(common, hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6, **overrides)


COMMON = dict(
    vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, hidden_act="silu",
    initializer_range=0.2, attention_dropout=0.0,
)


# ----------------------------------------------------------------------------------------------
# fixture definitions
# ----------------------------------------------------------------------------------------------

def gen_ids(g, b, t):
    return torch.randint(0, COMMON["vocab_size"], (b, t), generator=g)


def batch_llama_gqa(g):
    B, T = 2, 16
    ids = gen_ids(g, B, T)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, T - 5:] = 0
    ids[1, T - 5:] = 0  # pad token id 0 (its value must not matter)
    labels = ids.clone()
    labels[0, :3] = -100  # prompt
    labels[1, :4] = -100  # prompt
    labels[mask == 0] = -100
    return dict(input_ids=ids, labels=labels, attention_mask=mask, position_ids=None)


PACKED_LENS = [7, 9, 4]


def batch_llama_packed(g):
    T = sum(PACKED_LENS)
    ids = gen_ids(g, 1, T)
    pos = torch.cat([torch.arange(n) for n in PACKED_LENS])[None]
    labels = ids.clone()
    labels[pos == 0] = -100  # first token of every packed sequence: no label crosses a boundary
    return dict(input_ids=ids, labels=labels, attention_mask=None, position_ids=pos)


def batch_mistral_window(g):
    B, T = 2, 16
    ids = gen_ids(g, B, T)
    labels = ids.clone()
    labels[0, :2] = -100
    labels[1, :5] = -100
    labels[1, 9] = -100  # an ignored label in the middle as well
    return dict(input_ids=ids, labels=labels, attention_mask=None, position_ids=None)


def batch_qwen2_bias(g):
    B, T = 2, 12
    ids = gen_ids(g, B, T)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, T - 3:] = 0
    ids[1, T - 3:] = 0
    labels = ids.clone()
    labels[0, :2] = -100
    labels[1, :3] = -100
    labels[mask == 0] = -100
    return dict(input_ids=ids, labels=labels, attention_mask=mask, position_ids=None)


FIXTURES = {
    "llama_gqa": dict(
        seed=1001,
        model_cls=LlamaForCausalLM,
        config=lambda: LlamaConfig(
            **COMMON, head_dim=8, max_position_embeddings=64, tie_word_embeddings=False,
            rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8}),
        lora=dict(r=4, lora_alpha=8, target_modules=ALL7),
        batch=batch_llama_gqa,
    ),
    "llama_packed": dict(
        seed=1002,
        model_cls=LlamaForCausalLM,
        config=lambda: LlamaConfig(
            **COMMON, head_dim=8, max_position_embeddings=8, tie_word_embeddings=False,
            # use_cache=False: see meta.json["packing"]; with the default use_cache=True the forward creates
            # a DynamicCache and transformers then does NOT detect packed sequences.
            use_cache=False,
            rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}),
        lora=dict(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj", "down_proj"]),
        batch=batch_llama_packed,
    ),
    "mistral_window": dict(
        seed=1003,
        model_cls=MistralForCausalLM,
        config=lambda: MistralConfig(
            **COMMON, head_dim=8, max_position_embeddings=64, tie_word_embeddings=False,
            sliding_window=4, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        lora=dict(r=4, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
        batch=batch_mistral_window,
    ),
    "qwen2_bias": dict(
        seed=1004,
        model_cls=Qwen2ForCausalLM,
        config=lambda: Qwen2Config(
            **COMMON, max_position_embeddings=64, tie_word_embeddings=True, use_sliding_window=False,
            rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}),
        lora=dict(r=4, lora_alpha=8, target_modules=ALL7, use_rslora=True),
        batch=batch_qwen2_bias,
    ),
    "llama32_tied": dict(
        seed=1005,
        model_cls=LlamaForCausalLM,
        # Llama 3.2 1B's numbers: tied embeddings, theta 500000, llama3 scaling factor 32 from 8192
        # (with head_dim 8 the four frequencies fall in the kept, smoothed and divided bands).
        config=lambda: LlamaConfig(
            **COMMON, head_dim=8, max_position_embeddings=131072, tie_word_embeddings=True,
            bos_token_id=1, eos_token_id=[2, 3],
            rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192}),
        lora=dict(r=4, lora_alpha=8, target_modules=ALL7),
        batch=batch_qwen2_bias,
    ),
    "qwen3_qknorm": dict(
        seed=1006,
        model_cls=Qwen3ForCausalLM,
        # head_dim 16 with hidden 32 and 4 heads: q is 64 wide, wider than the hidden state.
        config=lambda: Qwen3Config(
            **COMMON, head_dim=16, max_position_embeddings=64, tie_word_embeddings=True,
            attention_bias=False, use_sliding_window=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        lora=dict(r=4, lora_alpha=8, target_modules=ALL7),
        batch=batch_llama_gqa,
    ),
    "phi3_fused": dict(
        seed=1007,
        model_cls=Phi3ForCausalLM,
        config=lambda: Phi3Config(
            **COMMON, max_position_embeddings=64, original_max_position_embeddings=64,
            tie_word_embeddings=False, sliding_window=6, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            resid_pdrop=0.0, embd_pdrop=0.0,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        lora=dict(r=4, lora_alpha=8, target_modules=PHI3_ALL),
        batch=batch_qwen2_bias,
    ),
    # Phi-3 128k's longrope, one layer to stay small. The batch is 12 long, past the original 8:
    # long_factor, and attention_factor from factor = 64 / 8 (sqrt(2)) scales cos and sin.
    "phi3_longrope": dict(
        # (seed 1008 left one gradient element at 5e-7 of its tensor's largest: AdamW's first step
        # divides by |g|, so that element's step was rounding noise on any engine)
        seed=1010,
        model_cls=Phi3ForCausalLM,
        config=lambda: Phi3Config(
            **dict(COMMON, num_hidden_layers=1), max_position_embeddings=64, original_max_position_embeddings=8,
            tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            resid_pdrop=0.0, embd_pdrop=0.0,
            rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                             "short_factor": [1.0, 1.1, 1.7, 2.3], "long_factor": [1.2, 3.5, 9.0, 27.0]}),
        lora=dict(r=4, lora_alpha=8, target_modules=PHI3_ALL),
        batch=batch_qwen2_bias,
    ),
    # The same kind of model with the batch (12) within the original 16: short_factor, and a given
    # attention_factor (used instead of the one from max / original).
    "phi3_longrope_short": dict(
        seed=1009,
        model_cls=Phi3ForCausalLM,
        config=lambda: Phi3Config(
            **dict(COMMON, num_hidden_layers=1), max_position_embeddings=64, original_max_position_embeddings=16,
            tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            resid_pdrop=0.0, embd_pdrop=0.0,
            rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0, "attention_factor": 1.25,
                             "short_factor": [1.0, 1.4, 2.2, 5.0], "long_factor": [1.5, 4.0, 12.0, 40.0]}),
        lora=dict(r=4, lora_alpha=8, target_modules=PHI3_ALL),
        batch=batch_qwen2_bias,
    ),
    # Gemma 2: GeGLU (tanh), (1 + w) RMSNorms with the four per-layer norms, embeddings times sqrt(hidden),
    # layer 0 sliding (window 4) and layer 1 global, attention and final logit softcapping (small caps so
    # tanh is far from linear), query_pre_attn_scalar 24 (scale 24^-0.5, not head_dim's), head_dim 16 with
    # hidden 32, tied embeddings. Norm weights are centred on 0 (Gemma stores w of 1 + w).
    "gemma2_softcap": dict(
        seed=1011,
        model_cls=Gemma2ForCausalLM,
        norm_center=0.0,
        config=lambda: Gemma2Config(
            **gemma_common(), head_dim=16, max_position_embeddings=64, tie_word_embeddings=True,
            query_pre_attn_scalar=24, sliding_window=4, attn_logit_softcapping=2.0, final_logit_softcapping=3.0,
            pad_token_id=0, bos_token_id=2, eos_token_id=1,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        lora=dict(r=4, lora_alpha=8, target_modules=ALL7),
        batch=batch_llama_gqa,
    ),
    # Gemma 3 (text): Gemma 2's layer without softcapping, plus q_norm/k_norm ((1 + w), per head), and two
    # RoPEs: sliding layers rope_theta 10000 (rope_local_base_freq), global layers theta 1e6 with linear
    # scaling (factor 4), as the 4B/12B/27B models have. Layers: sliding, full, sliding (window 4).
    "gemma3_text": dict(
        seed=1012,
        model_cls=Gemma3ForCausalLM,
        norm_center=0.0,
        config=lambda: Gemma3TextConfig(
            **gemma_common(num_hidden_layers=3), head_dim=16, max_position_embeddings=64,
            tie_word_embeddings=True, query_pre_attn_scalar=20, sliding_window=4,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            pad_token_id=0, bos_token_id=2, eos_token_id=1,
            rope_parameters={"full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1000000.0},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}),
        lora=dict(r=4, lora_alpha=8, target_modules=ALL7),
        batch=batch_llama_gqa,
    ),
}


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def random_init(model, g, norm_center=1.0):
    """normal(0, 0.2) for every weight and bias; RMSNorm weights norm_center + 0.1*noise (Gemma: 0, as its
    norms scale by 1 + w). Tied weights once."""
    with torch.no_grad():
        for name, p in model.named_parameters():  # named_parameters() yields a tied tensor once
            noise = torch.randn(p.shape, generator=g, dtype=DTYPE)
            if "norm" in name:
                p.copy_(norm_center + 0.1 * noise)
            else:
                p.copy_(0.2 * noise)


def lora_params(peft_model):
    """{saved name: parameter} for every LoRA parameter, saved name as in adapter_model.safetensors."""
    out = {}
    for name, p in peft_model.named_parameters():
        if "lora_" in name:
            saved = name.replace(".default.", ".")
            out[saved] = p
    return out


def forward(model, batch, labels=True, hook_norm=None):
    kw = dict(input_ids=batch["input_ids"], use_cache=False)
    if batch["attention_mask"] is not None:
        kw["attention_mask"] = batch["attention_mask"]
    if batch["position_ids"] is not None:
        kw["position_ids"] = batch["position_ids"]
    if labels:
        kw["labels"] = batch["labels"]
    return model(**kw)


def manual_loss(logits, labels):
    """Mean CE over target tokens after the shift (what transformers' ForCausalLMLoss does)."""
    V = logits.shape[-1]
    lg = logits[:, :-1].reshape(-1, V).float()
    lb = labels[:, 1:].reshape(-1)
    return torch.nn.functional.cross_entropy(lg, lb, ignore_index=-100, reduction="sum") / (lb != -100).sum()


def load_reference(folder):
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPE, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, folder / "adapter", is_trainable=True)
    model.train()
    return model


def get_inner(peft_model):
    return peft_model.base_model.model  # the *ForCausalLM


def to_list(t):
    return None if t is None else t.tolist()


def first_scaling(peft_model):
    for m in peft_model.modules():
        if hasattr(m, "scaling") and isinstance(m.scaling, dict) and "default" in m.scaling:
            return float(m.scaling["default"])
    raise RuntimeError("no LoRA scaling found")


def max_abs(a, b):
    return float((a - b).abs().max())


# ----------------------------------------------------------------------------------------------
# per-fixture checks and findings
# ----------------------------------------------------------------------------------------------

def packing_findings(folder, batch):
    """Is packing detected from position_ids? What does dynamic rope do in a packed training forward?"""
    model = load_reference(folder)
    ids, pos = batch["input_ids"], batch["position_ids"]
    rot = get_inner(model).model.rotary_emb
    res = {}
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=pos, use_cache=False).logits
        inv_freq_packed = rot.inv_freq.clone()
        packed_default_cache = model(input_ids=ids, position_ids=pos, use_cache=True).logits

        # 1) each sequence on its own, dynamic rope acting normally (seq_len = that sequence's length)
        # 2) each sequence on its own with the rotary frozen to the packed batch's inv_freq
        sep_dyn, sep_frozen = [], []
        o = 0
        for n in PACKED_LENS:
            sl = slice(o, o + n)
            s_ids, s_pos = ids[:, sl], pos[:, sl]
            sep_dyn.append(max_abs(packed[:, sl], model(input_ids=s_ids, position_ids=s_pos, use_cache=False).logits))
            saved_type = rot.rope_type
            rot.rope_type = "default"  # the dynamic_rope_update wrapper then leaves inv_freq alone
            old = rot.inv_freq
            rot.inv_freq = inv_freq_packed.clone()
            sep_frozen.append(max_abs(packed[:, sl], model(input_ids=s_ids, position_ids=s_pos, use_cache=False).logits))
            rot.inv_freq = old
            rot.rope_type = saved_type
            o += n

        # 3) explicit block-diagonal causal 4-D additive mask, attention_mask given
        T = ids.shape[1]
        seq_id = torch.cat([torch.full((n,), i) for i, n in enumerate(PACKED_LENS)])
        allowed = (seq_id[:, None] == seq_id[None, :]) & torch.ones(T, T, dtype=torch.bool).tril()
        mask4 = torch.zeros(1, 1, T, T, dtype=DTYPE).masked_fill(~allowed, torch.finfo(DTYPE).min)
        explicit = model(input_ids=ids, position_ids=pos, attention_mask=mask4, use_cache=False).logits

    o = 0
    default_cache_diffs = []
    for n in PACKED_LENS:
        sl = slice(o, o + n)
        default_cache_diffs.append(max_abs(packed[:, sl], packed_default_cache[:, sl]))
        o += n

    seq_len = int(pos.max()) + 1
    cfg = get_inner(model).config
    rp = cfg.rope_parameters
    dim = cfg.head_dim
    base_f64 = rp["rope_theta"] * ((rp["factor"] * seq_len / cfg.max_position_embeddings) - (rp["factor"] - 1)) ** (dim / (dim - 2))
    res["detected_with_use_cache_false"] = max(sep_frozen) < 1e-4 and max_abs(packed, explicit) < 1e-5
    res["detected_with_default_use_cache_true"] = max(default_cache_diffs[1:]) < 1e-4
    res["max_abs_logit_diff_packed_vs_separate_with_frozen_batch_rope_per_seq"] = sep_frozen
    res["max_abs_logit_diff_packed_vs_separate_with_normal_dynamic_rope_per_seq"] = sep_dyn
    res["max_abs_logit_diff_use_cache_false_vs_default_use_cache_true_per_seq"] = default_cache_diffs
    res["max_abs_logit_diff_packed_vs_explicit_block_diagonal_4d_mask"] = max_abs(packed, explicit)
    res["dynamic_rope"] = {
        "seq_len_used": seq_len,
        "rule": "seq_len = max(position_ids over the WHOLE batch) + 1 (not per packed sequence); if seq_len > "
                "max_position_embeddings: base = rope_theta * ((factor*seq_len/max_position_embeddings) - (factor-1))"
                " ** (head_dim/(head_dim-2)), computed in float32 torch ops (seq_len is a tensor); "
                "inv_freq = 1/base**(arange(0,head_dim,2)/head_dim); attention_scaling 1.0. Otherwise plain rope.",
        "base_float64_formula": base_f64,
        "inv_freq_used": inv_freq_packed.tolist(),
        "stateful_caveat": "rotary_emb caches the grown inv_freq (max_seq_len_cached) and only resets it when a "
                           "later call has seq_len < max_position_embeddings; a later call with seq_len == "
                           "max_position_embeddings keeps the previously grown frequencies. The fixtures never hit that.",
    }
    assert res["detected_with_use_cache_false"], res
    assert sep_dyn[1] < 1e-4 and sep_dyn[0] > 1e-4, "expected the dynamic-rope difference on the short sequences"
    return res


def sliding_window_check(folder, batch, logits):
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPE, attn_implementation="eager")
    cfg = copy.deepcopy(base.config)
    cfg.sliding_window = None
    nowin = MistralForCausalLM(cfg)
    nowin.load_state_dict(base.state_dict())
    model = PeftModel.from_pretrained(nowin, folder / "adapter")
    with torch.no_grad():
        lg = forward(model, batch, labels=False).logits
    T = lg.shape[1]
    w = base.config.sliding_window
    d_early = max_abs(lg[:, :w], logits[:, :w])
    d_late = max_abs(lg[:, w:], logits[:, w:])
    assert d_late > 1e-2, f"sliding window does not change logits ({d_late})"
    assert d_early < 1e-5, f"positions < sliding_window should not be affected ({d_early})"
    return {"max_abs_logit_diff_vs_no_window_positions_ge_window": d_late,
            "max_abs_logit_diff_vs_no_window_positions_lt_window": d_early,
            "rule": f"query i attends key j iff j <= i and j > i - sliding_window (window {w} = the token itself "
                    "and the 3 before it), transformers masking_utils.sliding_window_overlay"}


# ----------------------------------------------------------------------------------------------
# main work
# ----------------------------------------------------------------------------------------------

def make_fixture(name, spec, out_root):
    folder = out_root / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    torch.manual_seed(spec["seed"])
    g = torch.Generator().manual_seed(spec["seed"])

    # --- base model -------------------------------------------------------------------------
    cfg = spec["config"]()
    cfg._attn_implementation = "eager"
    base = spec["model_cls"](cfg).to(DTYPE)
    random_init(base, g, spec.get("norm_center", 1.0))
    base.save_pretrained(folder)

    # --- adapter ----------------------------------------------------------------------------
    lcfg = LoraConfig(task_type="CAUSAL_LM", lora_dropout=0.0, bias="none", **spec["lora"])
    pm = get_peft_model(base, lcfg)
    with torch.no_grad():
        for n, p in sorted(lora_params(pm).items()):
            p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=DTYPE))
    pm.save_pretrained(folder / "adapter", safe_serialization=True)
    (folder / "adapter" / "README.md").unlink(missing_ok=True)  # PEFT's boilerplate model card
    # PEFT keeps target_modules as a set, so its order in adapter_config.json depends on the string hash seed;
    # sort it so that the file is reproducible (same meaning).
    acfg_path = folder / "adapter" / "adapter_config.json"
    acfg = json.loads(acfg_path.read_text())
    if isinstance(acfg.get("target_modules"), list):
        acfg["target_modules"] = sorted(acfg["target_modules"])
    acfg_path.write_text(json.dumps(acfg, indent=2, sort_keys=True))
    batch = spec["batch"](g)
    with torch.no_grad():
        pm.train()
        mem_logits = forward(pm, batch).logits
    del pm, base

    saved_keys = set(load_file(folder / "adapter" / "adapter_model.safetensors").keys())

    # --- reference on the re-loaded files ---------------------------------------------------
    model = load_reference(folder)
    params = lora_params(model)
    assert set(params) == saved_keys, (sorted(set(params) ^ saved_keys))
    assert all(p.requires_grad for p in params.values())
    assert sum(p.requires_grad for p in model.parameters()) == len(params), "only LoRA params may be trainable"

    hidden = {}
    h = get_inner(model).model.norm.register_forward_hook(lambda m, i, o: hidden.__setitem__("final", o.detach()))
    model.zero_grad()
    out = forward(model, batch)
    h.remove()
    loss = out.loss
    logits = out.logits.detach()
    assert max_abs(logits, mem_logits) == 0.0, "re-loaded model differs from the in-memory one"
    ml = manual_loss(logits, batch["labels"])
    assert abs(ml.item() - loss.item()) < 1e-6, (ml.item(), loss.item())
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in params.items()}
    for n, gr in grads.items():
        assert float(gr.abs().max()) > 0, f"zero gradient for {n}"
    num_targets = int((batch["labels"][:, 1:] != -100).sum())
    scaling = first_scaling(model)

    opt = torch.optim.AdamW(list(params.values()), lr=ADAMW["lr"], betas=tuple(ADAMW["betas"]),
                            eps=ADAMW["eps"], weight_decay=ADAMW["weight_decay"])
    opt.step()
    adamw = {n: p.detach().clone() for n, p in params.items()}
    del model, opt

    # --- SGD from the saved adapter ("continue training from a PEFT adapter") ----------------
    model = load_reference(folder)
    params = lora_params(model)
    opt = torch.optim.SGD(list(params.values()), lr=SGD["lr"], momentum=0.0)
    sgd_losses = []
    for _ in range(SGD["steps"]):
        opt.zero_grad()
        l = forward(model, batch).loss
        sgd_losses.append(l.item())
        l.backward()
        opt.step()
    with torch.no_grad():
        sgd_losses.append(float(forward(model, batch).loss))
    sgd = {n: p.detach().clone() for n, p in params.items()}
    rotary = get_inner(model).model.rotary_emb
    if hasattr(rotary, "inv_freq"):
        rope_inv_freq = rotary.inv_freq.tolist()
        rope_attention_scaling = float(rotary.attention_scaling)
    else:  # Gemma 3: one RoPE per layer type
        rope_inv_freq = {t: getattr(rotary, f"{t}_inv_freq").tolist() for t in rotary.layer_types}
        rope_attention_scaling = {t: float(getattr(rotary, f"{t}_attention_scaling")) for t in rotary.layer_types}
    del model, opt

    # --- write ------------------------------------------------------------------------------
    tensors = {"logits": logits.contiguous(), "hidden.final": hidden["final"].contiguous()}
    for n in sorted(grads):
        tensors[f"grad.{n}"] = grads[n].contiguous()
        tensors[f"adamw.{n}"] = adamw[n].contiguous()
        tensors[f"sgd.{n}"] = sgd[n].contiguous()
    assert all(t.dtype == torch.float32 for t in tensors.values())
    save_file(tensors, folder / "expected.safetensors", metadata={"format": "pt"})

    with open(folder / "batch.json", "w") as f:
        json.dump({k: to_list(batch[k]) for k in ["input_ids", "labels", "attention_mask", "position_ids"]}, f)
        f.write("\n")

    notes = ("loss = PeftModel(input_ids, attention_mask, position_ids, labels, use_cache=False).loss: "
             "cross-entropy (fp32) averaged over target tokens after the shift (labels[:,1:] != -100). "
             "grad.* are dL/dW of that loss for the initial adapter; adamw.* = weights after one "
             "torch.optim.AdamW step from grad.*; sgd.* = weights after `steps` SGD steps (recomputing loss/grads "
             "each step) starting from adapter/; sgd.losses are the losses before each step plus the final one. "
             "hidden.final = output of the final RMSNorm (input of lm_head).")
    expected = {
        "loss": loss.item(),
        "num_target_tokens": num_targets,
        "scaling": scaling,
        "adamw": ADAMW,
        "sgd": dict(SGD, momentum=0.0, losses=sgd_losses),
        "notes": notes,
    }
    with open(folder / "expected.json", "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")

    meta = {
        "fixture": name,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__,
                     "safetensors": safetensors.__version__},
        "seed": spec["seed"],
        "dtype": "float32",
        "attn_implementation": "eager",
        "init": "all weights and biases normal(0, 0.2); RMSNorm weights 1 + 0.1*normal; "
                "lora_A and lora_B normal(0, 0.1)",
        "lora": dict(spec["lora"], lora_dropout=0.0, bias="none", scaling=scaling),
        "rope": {"parameters": get_inner(load_reference(folder)).config.rope_parameters,
                 "inv_freq_used_in_forward": rope_inv_freq,
                 "attention_scaling": rope_attention_scaling},
        "loss_fp32_repr": repr(loss.item()),
        "files": "adapter/README.md (PEFT's model card) is deleted; target_modules in adapter_config.json is sorted (PEFT writes a set in hash order); generation_config.json is what save_pretrained writes",
        "forward_kwargs": "use_cache=False always (it only matters for packing, see llama_packed meta)",
        "padding": "none" if batch["attention_mask"] is None else "right padding; padded key positions are masked for every query; padded query positions "
                   "still produce logits (they attend to the non-pad keys before them, not to themselves) "
                   "and are included in `logits`, but have label -100",
    }
    if name == "llama_packed":
        meta["packing"] = packing_findings(folder, batch)
        meta["packing"]["conclusion"] = (
            "transformers 5.24 detects packed sequences from position_ids (masking_utils."
            "find_packed_sequence_indices: a new sequence starts wherever position_ids[t] != position_ids[t-1]+1) "
            "ONLY when attention_mask is None AND no cache object exists. LlamaModel.forward creates a DynamicCache "
            "whenever use_cache is true, and use_cache defaults to config.use_cache (True by default) even in "
            "train mode, so a plain forward with the default config does NOT isolate the sequences (the later "
            "sequences attend across the boundary). The fixture therefore sets use_cache=False (in config.json and "
            "in every forward call); then the mask is causal AND block-diagonal, identical to an explicit 4-D "
            "block-diagonal mask. With dynamic rope, the NTK scaling is decided by max(position_ids)+1 over the "
            "whole packed row (here 9 > 8), so ALL packed sequences (also those of length 7 and 4) use the scaled "
            "frequencies; run on their own, those two would use plain rope. With the rotary frozen to the packed "
            "row's inv_freq the separate runs match the packed run per sequence.")
    if name == "mistral_window":
        meta["sliding_window"] = sliding_window_check(folder, batch, logits)
    if name == "qwen2_bias":
        meta["notes"] = ("tie_word_embeddings=true: model.safetensors has no lm_head.weight, lm_head uses "
                         "model.embed_tokens.weight. q/k/v_proj have (random, non-zero) biases; o_proj and MLP "
                         "have none. LoRA does not touch the biases. use_rslora: scaling = lora_alpha/sqrt(r).")
    if name == "llama32_tied":
        meta["notes"] = ("Llama 3.2 style: tie_word_embeddings=true (no lm_head.weight), rope theta 500000 with "
                         "llama3 scaling (factor 32, low 1, high 4, original 8192), eos_token_id a list. Right padding.")
    if name == "qwen3_qknorm":
        meta["notes"] = ("Qwen3: q_norm and k_norm (RMSNorm over head_dim, weight [head_dim]) applied per head to "
                         "q_proj/k_proj outputs before RoPE; head_dim 16 != hidden/heads 8; no biases; tied embeddings.")
    if name == "phi3_fused":
        meta["notes"] = ("Phi-3: fused qkv_proj [q|k|v rows] and gate_up_proj [gate|up rows] (PEFT target names "
                         "qkv_proj, o_proj, gate_up_proj, down_proj); sliding_window 6 (mask as Mistral's); "
                         "plain rope; right padding.")
    if name in ("phi3_longrope", "phi3_longrope_short"):
        rp = meta["rope"]["parameters"]
        long = 12 > rp["original_max_position_embeddings"]
        meta["notes"] = ("Phi-3 longrope (modeling_rope_utils._compute_longrope_parameters): inv_freq = "
                         "1/(ext_factors * theta**(arange(0,d,2)/d)), ext_factors = long_factor when "
                         "max(position_ids)+1 > original_max_position_embeddings (the top-level config field, which "
                         "Phi3Config copies into rope_parameters), else short_factor; cos and sin times "
                         "attention_factor (given, else sqrt(1 + ln(factor)/ln(original)) with factor = "
                         "max_position_embeddings/original). This batch (12 positions) uses the "
                         + ("long" if long else "short") + " factors; one layer; right padding.")
        factors = rp["long_factor"] if long else rp["short_factor"]
        d = cfg.hidden_size // cfg.num_attention_heads
        want = [1.0 / (f * rp["rope_theta"] ** (i / d)) for f, i in zip(factors, range(0, d, 2))]
        assert max(abs(a - b) / b for a, b in zip(meta["rope"]["inv_freq_used_in_forward"], want)) < 1e-6, \
            "expected the " + ("long" if long else "short") + " factors in the forward"
    if name == "gemma2_softcap":
        meta["notes"] = ("Gemma 2: GeGLU (gelu_pytorch_tanh), RMSNorm x*rstd*(1+w) in f32, four norms per layer "
                         "(input, post_attention on the attention output, pre_feedforward, post_feedforward), "
                         "embeddings * sqrt(32), layer_types " + str(cfg.layer_types) + " (window 4), scores "
                         "s*24^-0.5 capped 2*tanh(s/2) before the mask, logits capped 3*tanh(z/3) before the loss; "
                         "tied; right padding.")
    if name == "gemma3_text":
        meta["notes"] = ("Gemma 3 text: as Gemma 2 without softcapping, with q_norm/k_norm ((1+w) RMSNorm per head "
                         "before RoPE), layer_types " + str(cfg.layer_types) + " (window 4); sliding layers rope "
                         "theta 10000, full layers theta 1e6 / linear factor 4; scale 20^-0.5; tied; right padding.")
    if name == "llama_gqa":
        meta["notes"] = ("llama3 rope scaling (factor 8, low 1, high 4, original_max_position_embeddings 8). "
                         "Row 1 is right-padded: last 5 tokens attention_mask 0 (input id 0), labels -100.")
    with open(folder / "meta.json", "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")

    print(f"{name}: loss={loss.item()!r} targets={num_targets} scaling={scaling} sgd_losses={sgd_losses}")
    return loss.item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "Tests" / "SwiftletTests" / "Fixtures"))
    ap.add_argument("--only", nargs="*", default=None, help="fixture names (default: all)")
    args = ap.parse_args()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.set_default_dtype(DTYPE)
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    for name, spec in FIXTURES.items():
        if args.only and name not in args.only:
            continue
        make_fixture(name, spec, out_root)


if __name__ == "__main__":
    main()
