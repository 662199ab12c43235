#!/usr/bin/env python3
"""Checks `swiftlet export --format gguf` files with the real readers.

For each case (the llama_gqa, qwen2_bias, qwen3_qknorm and phi3_fused fixtures, two tiny random Llama
models built here with the spm_bpe and byte_bpe fixture tokenizers and a random PEFT adapter, and a random Gemma 2
and 6-layer Gemma 3 with the spm_bpe tokenizer, shaped as llama.cpp can run them: attention scaled by head_dim,
gemma3 sliding on 5 of every 6 layers), runs the swiftlet
binary for --quant f16 and q8_0, then reads the file with gguf-py's GGUFReader and checks:

- every expected metadata key and value (llama/qwen2 hyper-parameters, file type, tokenizer);
- every tensor's name, ggml shape and type;
- the data against PEFT's merge_and_unload() in f32, Q/K rows permuted as convert_hf_to_gguf's
  LlamaModel.permute: f32 tensors exact, f16 within one f16 ulp, q8_0 dequantized
  (gguf.quants.dequantize) within half a block scale; q8_0 bytes equal gguf.quants.quantize of the
  same values (exactly for tensors no adapter touches; merged ones may differ where Swift's and
  PyTorch's f32 merge round differently, so the count of differing blocks is printed);
- transformers' GGUF loader (from_pretrained(gguf_file=...)) on the f16 export of the tokenized
  models: logits against the merged model rounded to f16 (bound 1e-4 relative) and against
  the f32 merged model (printed), and its tokenizer's ids against the HF tokenizer's.

Prints one line starting with RESULT (PASS or FAIL); exit status 1 on FAIL.

  python scripts/check_gguf_export.py [--swiftlet .build/release/swiftlet]
"""
import argparse, json, os, shutil, subprocess, sys, tempfile

import numpy as np
import torch
import gguf
from gguf import GGUFReader, GGMLQuantizationType as QT
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, Phi3Config,
                          Phi3ForCausalLM, Qwen3Config, Qwen3ForCausalLM, Gemma2Config, Gemma2ForCausalLM,
                          Gemma3TextConfig, Gemma3ForCausalLM, MixtralConfig, MixtralForCausalLM, Qwen3MoeConfig,
                          Qwen3MoeForCausalLM)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "Tests/SwiftletTests/Fixtures")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("  FAIL", what)


def permute(w, n_head, n_head_kv):  # convert_hf_to_gguf.LlamaModel.permute
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_NAMES = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
              "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
              "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
              "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
              "self_attn.v_proj.bias": "attn_v.bias", "self_attn.o_proj.bias": "attn_output.bias",
              "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
              "mlp.down_proj.weight": "ffn_down.weight",
              "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
              "self_attn.qkv_proj.weight": "attn_qkv.weight", "mlp.gate_up_proj.weight": "ffn_up.weight"}


# Gemma's four norms (gguf-py's tensor_mapping for gemma2 / gemma3).
GEMMA_NAMES = dict(GGUF_NAMES, **{"post_attention_layernorm.weight": "post_attention_norm.weight",
                                  "pre_feedforward_layernorm.weight": "ffn_norm.weight",
                                  "post_feedforward_layernorm.weight": "post_ffw_norm.weight"})
ARCHS = {"qwen2": "qwen2", "qwen3": "qwen3", "phi3": "phi3", "gemma2": "gemma2", "gemma3_text": "gemma3"}


def gguf_name(hf, gemma=False):
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if hf in fixed:
        return fixed[hf]
    p = hf.split(".")
    return f"blk.{p[2]}.{(GEMMA_NAMES if gemma else GGUF_NAMES)['.'.join(p[3:])]}"


def make_model(tokenizer_dir, out, family="llama"):
    """A tiny random Llama (GQA, plain rope) with the vocabulary of `tokenizer_dir`, and a random adapter;
    `family` qwen3 (head_dim 32, q/k norms), phi3 (fused projections, sliding window 64), gemma2, gemma3, or a
    mixture (mixtral: 4 experts top-2; qwen3_moe: 8 experts top-3, renormalised as llama.cpp's qwen3moe always
    does) with LoRA on every expert and the router too, instead."""
    torch.manual_seed(7)
    base = os.path.join(out, "base")
    os.makedirs(base)
    for f in os.listdir(tokenizer_dir):
        if f.startswith("tokenizer"):
            shutil.copy(os.path.join(tokenizer_dir, f), base)
    tok = AutoTokenizer.from_pretrained(base)
    common = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                  initializer_range=0.2, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  tie_word_embeddings=False)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    if family == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(head_dim=32, **common)).float()
    elif family == "gemma2":
        # llama.cpp scales Gemma's attention by head_dim (query_pre_attn_scalar = head_dim); small caps, window 8.
        model = Gemma2ForCausalLM(Gemma2Config(head_dim=32, sliding_window=8, query_pre_attn_scalar=32,
                                               attn_logit_softcapping=2.0, final_logit_softcapping=3.0,
                                               pad_token_id=tok.eos_token_id, **dict(common, tie_word_embeddings=True))).float()
    elif family == "gemma3":
        # llama.cpp's gemma3 layout: 5 sliding layers then a global one (window 8).
        g3 = dict(common, num_hidden_layers=6, tie_word_embeddings=True)
        model = Gemma3ForCausalLM(Gemma3TextConfig(head_dim=32, sliding_window=8, query_pre_attn_scalar=32,
                                                   pad_token_id=tok.eos_token_id, **g3)).float()
    elif family == "phi3":
        # A window wider than the checks' sequences: llama.cpp runs Phi-3 without its window (positions past
        # it differ from transformers', seen with window 8), as it does Mistral's.
        model = Phi3ForCausalLM(Phi3Config(sliding_window=64, original_max_position_embeddings=128,
                                           pad_token_id=tok.eos_token_id, **common)).float()
        targets = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    elif family == "mixtral":
        model = MixtralForCausalLM(MixtralConfig(num_local_experts=4, num_experts_per_tok=2, sliding_window=None,
                                                 **common)).float()
        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "w1", "w2", "w3", "gate"]
    elif family == "qwen3_moe":
        model = Qwen3MoeForCausalLM(Qwen3MoeConfig(head_dim=32, num_experts=8, num_experts_per_tok=3,
                                                   moe_intermediate_size=48, norm_topk_prob=True, decoder_sparse_step=1,
                                                   mlp_only_layers=[], **common)).float()
    else:
        model = LlamaForCausalLM(LlamaConfig(**common)).float()
    model.save_pretrained(base)
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=targets))
    adapter = os.path.join(out, "adapter")
    lora.save_pretrained(adapter)
    return base, adapter


def field(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def check_file(path, base, adapter, quant, tokenized):
    name = os.path.basename(path)
    cfg = json.load(open(os.path.join(base, "config.json")))
    arch = ARCHS.get(cfg["model_type"], "llama")
    gemma = arch in ("gemma2", "gemma3")
    heads, kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    rope = rope.get("full_attention", rope)  # Gemma 3: the global layers' RoPE is rope.freq_base
    theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
    r = GGUFReader(path)
    expected = {"general.architecture": arch, "general.alignment": 32, "general.file_type": 1 if quant == "f16" else 7,
                f"{arch}.block_count": cfg["num_hidden_layers"], f"{arch}.context_length": cfg["max_position_embeddings"],
                f"{arch}.embedding_length": cfg["hidden_size"], f"{arch}.feed_forward_length": cfg["intermediate_size"],
                f"{arch}.attention.head_count": heads, f"{arch}.attention.head_count_kv": kv,
                f"{arch}.rope.dimension_count": head_dim, f"{arch}.vocab_size": cfg["vocab_size"]}
    if arch == "phi3":  # convert_hf_to_gguf.py's Phi3MiniModel
        expected["phi3.attention.sliding_window"] = cfg.get("sliding_window") or 0
        expected["phi3.rope.scaling.original_context_length"] = cfg["original_max_position_embeddings"]
    if gemma:  # convert_hf_to_gguf.py's Gemma2Model / Gemma3Model
        expected[f"{arch}.attention.sliding_window"] = cfg["sliding_window"]
        for key in ["attn_logit_softcapping", "final_logit_softcapping"]:
            if cfg.get(key) is not None:
                check(abs(field(r, f"{arch}.{key}") - cfg[key]) < 1e-6, f"{name}: {key}")
    for k, v in expected.items():
        check(field(r, k) == v, f"{name}: {k} = {field(r, k)!r}, expected {v!r}")
    check(abs(field(r, f"{arch}.rope.freq_base") - theta) < 1e-3 * theta, f"{name}: rope.freq_base")
    check(abs(field(r, f"{arch}.attention.layer_norm_rms_epsilon") - cfg["rms_norm_eps"]) < 1e-9, f"{name}: rms eps")
    if tokenized:
        tok = AutoTokenizer.from_pretrained(base)
        tokens = field(r, "tokenizer.ggml.tokens")
        check(len(tokens) == cfg["vocab_size"], f"{name}: {len(tokens)} tokens")
        tj = json.load(open(os.path.join(base, "tokenizer.json")))
        strings = {i: t for t, i in tj["model"]["vocab"].items()} | {a["id"]: a["content"] for a in tj["added_tokens"]}
        check(all(tokens[i] == s for i, s in strings.items()), f"{name}: token strings (tokenizer.json's)")
        check(field(r, "tokenizer.ggml.bos_token_id") == tok.bos_token_id, f"{name}: bos id")
        check(field(r, "tokenizer.ggml.eos_token_id") == tok.eos_token_id, f"{name}: eos id")
        check(field(r, "tokenizer.chat_template") == tok.chat_template, f"{name}: chat template")
        model_kind = field(r, "tokenizer.ggml.model")
        types = field(r, "tokenizer.ggml.token_type")
        check(len(types) == len(tokens), f"{name}: token types")
        if model_kind == "gpt2":
            merges = json.load(open(os.path.join(base, "tokenizer.json")))["model"]["merges"]
            merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
            check(field(r, "tokenizer.ggml.merges") == merges, f"{name}: merges")
        else:
            check(len(field(r, "tokenizer.ggml.scores")) == len(tokens), f"{name}: scores")
        print(f"  {name}: tokenizer.ggml.model={model_kind} pre={field(r, 'tokenizer.ggml.pre')} "
              f"{len(tokens)} tokens, add_bos={field(r, 'tokenizer.ggml.add_bos_token')}")

    base_model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft = PeftModel.from_pretrained(base_model, adapter)
    adapted = {n.replace("base_model.model.", "").replace(".base_layer", "")
               for n, _ in peft.named_parameters() if ".base_layer." in n}
    merged = peft.merge_and_unload()
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in merged.state_dict().items()}
    if cfg.get("tie_word_embeddings"):
        sd.pop("lm_head.weight", None)
    tensors = {t.name: t for t in r.tensors}
    want = {gguf_name(k, gemma) for k in sd} | ({"rope_freqs.weight"} if rope.get("rope_type") == "llama3" else set())
    check(set(tensors) == want, f"{name}: tensor names {sorted(set(tensors) ^ want)}")
    worst_f16, blocks_diff, blocks_all = 0.0, 0, 0
    for hf, w in sd.items():
        t = tensors.get(gguf_name(hf, gemma))
        if t is None:
            continue
        if gemma and hf.endswith("norm.weight"):
            w = w + 1  # the converter stores Gemma's (1 + w)
        if arch == "llama" and "q_proj" in hf:
            w = permute(w, heads, heads)
        elif arch == "llama" and "k_proj" in hf:
            w = permute(w, heads, kv)
        check(list(t.shape) == list(reversed(w.shape)), f"{name}: {t.name} shape {list(t.shape)}")
        if w.ndim == 1:
            check(t.tensor_type == QT.F32 and np.array_equal(np.asarray(t.data).reshape(-1), w), f"{name}: {t.name} f32 data")
        elif t.tensor_type == QT.F16:
            check(quant == "f16" or w.shape[1] % 32 != 0, f"{name}: {t.name} is f16 in a {quant} file")
            got = np.asarray(t.data).astype(np.float32).reshape(w.shape)
            ulp = np.abs(np.spacing(w.astype(np.float16)).astype(np.float32))
            err = float((np.abs(got - w) / ulp).max())
            worst_f16 = max(worst_f16, err)
            check(err <= 1.0, f"{name}: {t.name} f16 off by {err:.2f} ulp")
        else:
            check(t.tensor_type == QT.Q8_0 and quant == "q8_0", f"{name}: {t.name} type {t.tensor_type.name}")
            raw = np.asarray(t.data)
            deq = gguf.quants.dequantize(raw, QT.Q8_0).reshape(w.shape)
            d = np.abs(w.reshape(-1, 32)).max(axis=1) / 127
            err = np.abs(deq.reshape(-1, 32) - w.reshape(-1, 32)) / np.maximum(d, 1e-30)[:, None]
            # Half a step, plus up to 127 times the f16 rounding of the scale (2^-11 relative).
            check(err.max() <= 0.5 + 127 * 2**-11 + 1e-3, f"{name}: {t.name} q8_0 error {err.max():.3f} of a scale")
            ours = raw.reshape(-1, 34)
            ref = gguf.quants.quantize(w, QT.Q8_0).reshape(-1, 34)
            nd = int((ours != ref).any(axis=1).sum())
            blocks_all += ours.shape[0]
            blocks_diff += nd
            if hf.rsplit(".", 1)[0] not in adapted:
                check(nd == 0, f"{name}: {t.name} (no adapter) q8_0 bytes differ from gguf-py in {nd} blocks")
    summary = f"f16 worst {worst_f16:.2f} ulp" if quant == "f16" else \
        f"q8_0 blocks differing from gguf.quants.quantize: {blocks_diff}/{blocks_all} (merged weights only)"
    print(f"  {name}: {len(tensors)} tensors, {len(r.fields)} keys, {summary}")
    return merged


def check_transformers(path, base, merged, ids, load_kwargs=None, tokenizer=True):
    name = os.path.basename(path)
    try:
        g = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=name, dtype=torch.float32,
                                                 **(load_kwargs or {})).eval()
    except Exception as e:  # noqa: BLE001 -- report, do not hide
        check(False, f"{name}: transformers could not load it: {type(e).__name__}: {e}")
        return
    with torch.no_grad():
        x = torch.tensor([ids])
        got = g(x).logits
        ref32 = merged.eval()(x).logits
        # The GGUF rounds the 2-D weights to f16 and keeps norms in f32: so does the reference.
        for prm in merged.parameters():
            if prm.ndim == 2:
                prm.copy_(prm.half().float())
        ref16 = merged(x).logits
    rel = lambda a, b: ((a - b).abs().max() / b.abs().max()).item()  # noqa: E731
    e16, e32 = rel(got, ref16), rel(got, ref32)
    print(f"  {name}: transformers GGUF logits vs merged-in-f16 {e16:.2e}, vs merged f32 {e32:.2e} (bound 1e-4 vs f16)")
    check(e16 < 1e-4, f"{name}: transformers logits differ {e16:.2e}")
    if not tokenizer:
        return
    try:
        gt = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=name)
        ht = AutoTokenizer.from_pretrained(base)
        texts = ["Hello world, this is a test.", "  leading spaces and 12345 digits\nnew line", "café naïve ünïcode"]
        same = sum(gt.encode(t) == ht.encode(t) for t in texts)
        for t in texts[:2]:
            print("    gguf tokenizer:", gt.encode(t), "\n    hf tokenizer:  ", ht.encode(t))
        print(f"  {name}: transformers' GGUF tokenizer ids equal the HF tokenizer's on {same}/{len(texts)} texts")
    except Exception as e:  # noqa: BLE001
        print(f"  {name}: transformers' GGUF tokenizer not compared: {type(e).__name__}: {e}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--swiftlet", default=os.path.join(ROOT, ".build/release/swiftlet"))
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="gguf-check-")
    cases = [("llama_gqa", os.path.join(FIX, "llama_gqa"), os.path.join(FIX, "llama_gqa/adapter"), False),
             ("qwen2_bias", os.path.join(FIX, "qwen2_bias"), os.path.join(FIX, "qwen2_bias/adapter"), False),
             ("qwen3_qknorm", os.path.join(FIX, "qwen3_qknorm"), os.path.join(FIX, "qwen3_qknorm/adapter"), False),
             ("phi3_fused", os.path.join(FIX, "phi3_fused"), os.path.join(FIX, "phi3_fused/adapter"), False)]
    for tk in ["spm_bpe", "byte_bpe"]:
        base, adapter = make_model(os.path.join(FIX, "tokenizers", tk), os.path.join(work, tk))
        cases.append((f"random_{tk}", base, adapter, True))
    for family in ["gemma2", "gemma3"]:
        base, adapter = make_model(os.path.join(FIX, "tokenizers", "spm_bpe"), os.path.join(work, family), family=family)
        cases.append((f"random_{family}_spm_bpe", base, adapter, True))
    for case, base, adapter, tokenized in cases:
        print(case)
        for quant in ["f16", "q8_0"]:
            out = os.path.join(work, f"{case}-{quant}", f"{case}-{quant}.gguf")
            os.makedirs(os.path.dirname(out))
            run = subprocess.run([args.swiftlet, "export", "--model", base, "--adapter", adapter, "--format", "gguf",
                                  "--quant", quant, "--out", out], capture_output=True, text=True)
            print("  swiftlet:", (run.stdout + run.stderr).strip())
            check(run.returncode == 0, f"{case} {quant}: swiftlet exit {run.returncode}")
            if run.returncode != 0:
                continue
            merged = check_file(out, base, adapter, quant, tokenized)
            # transformers' GGUF loader reads neither Gemma's softcaps nor query_pre_attn_scalar (it takes
            # Gemma2Config's defaults 50, 30, 256; llama.cpp reads the softcaps and uses head_dim): pass them.
            cfg = json.load(open(os.path.join(base, "config.json")))
            gemma_kwargs = {k: cfg[k] for k in ["attn_logit_softcapping", "final_logit_softcapping",
                                                "query_pre_attn_scalar"] if k in cfg}
            if tokenized and quant == "f16":
                tok = AutoTokenizer.from_pretrained(base)
                check_transformers(out, base, merged, tok.encode("The quick brown fox jumps over the lazy dog."),
                                   load_kwargs=gemma_kwargs)
            elif case in ("qwen3_qknorm", "phi3_fused") and quant == "f16":
                # transformers' GGUF loader reads neither qwen3's key_length (head_dim) nor phi3's
                # sliding_window, and these files have no vocabulary (Phi3Config's pad id 32000 is then
                # outside it): pass those, and compare with the window off (llama.cpp reads both keys).
                cfg = json.load(open(os.path.join(base, "config.json")))
                kwargs = {"head_dim": cfg["head_dim"]} if case == "qwen3_qknorm" else {"pad_token_id": 0}
                merged.config.sliding_window = None
                ids = json.load(open(os.path.join(base, "batch.json")))["input_ids"][0]
                check_transformers(out, base, merged, ids, load_kwargs=kwargs, tokenizer=False)
    refused = subprocess.run([args.swiftlet, "export", "--model", cases[0][1], "--adapter", cases[0][2], "--format", "gguf",
                              "--quant", "q4_k_m", "--out", os.path.join(work, "x.gguf")], capture_output=True, text=True)
    # q4_k_m is built (check_gguf_q4km.py); this fixture's 32-wide rows are refused, as llama.cpp would fall back.
    check(refused.returncode != 0 and "multiple of 256" in refused.stderr, "q4_k_m of 32-wide rows is refused")
    # gemma2_softcap scales attention by query_pre_attn_scalar 24, not head_dim 16 as llama.cpp would: refused.
    refused = subprocess.run([args.swiftlet, "export", "--model", os.path.join(FIX, "gemma2_softcap"), "--adapter",
                              os.path.join(FIX, "gemma2_softcap/adapter"), "--format", "gguf", "--out",
                              os.path.join(work, "g.gguf")], capture_output=True, text=True)
    check(refused.returncode != 0 and "query_pre_attn_scalar" in refused.stderr, "gemma2_softcap's scalar is refused")
    shutil.rmtree(work)
    print("RESULT", "PASS" if not failures else f"FAIL ({len(failures)} checks)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
