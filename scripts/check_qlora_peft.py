#!/usr/bin/env python3
"""QLoRA on the GPU: Swiftlet against transformers + PEFT + bitsandbytes on the same 4-bit weights.

Run on the GPU machine (torch, transformers, peft, bitsandbytes on PYTHONPATH):
    python scripts/check_qlora_peft.py --swiftlet bench/bin/swiftlet [--arch tinyllama] [--seq 1024]

1. Bytes: a random-init Llama (bf16) is quantized by transformers + bitsandbytes on CUDA (NF4, double
   quantization; `save_pretrained` writes the pre-quantized layout) and by `swiftlet quantize`; every
   tensor of the two folders must be byte-identical (codes, absmax codes, nested absmax, offsets,
   quant-state JSON).
2. Training step: a PEFT LoRA (r 16, all seven projections, non-zero A and B) on the 4-bit model;
   loss and LoRA gradients with bf16 compute (PEFT + bitsandbytes) and, as the truth, in fp32 on the
   same dequantized weights; `swiftlet gradients --device cuda` on the pre-quantized folder and the
   same adapter. Passes when the loss is within bf16 rounding of PEFT's, the LoRA gradients are as
   close to the fp32 truth as PEFT's own bf16 gradients (25% slack), and the cosine of all LoRA
   gradients together against PEFT's is above 0.999. Prints one RESULT line.
"""
import argparse, json, subprocess, sys, tempfile
import torch
import bitsandbytes.functional as F
from transformers import BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM
from peft import PeftModel
from safetensors import safe_open
from safetensors.torch import load_file

from gpu_reference import SHAPES, attach_lora, loss_and_grads, random_batch, stats


def tensors(folder):
    import glob
    out = {}
    for path in sorted(glob.glob(f"{folder}/*.safetensors")):
        with safe_open(path, "pt") as f:
            for k in f.keys():
                out[k] = f.get_tensor(k)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--swiftlet", required=True)
    ap.add_argument("--arch", default="tinyllama")
    ap.add_argument("--bsz", type=int, default=2)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-6, **SHAPES[a.arch])
    with torch.device("cuda"):
        LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(f"{work}/model")

    # 1. Byte equality of the quantization.
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.bfloat16)
    base = LlamaForCausalLM.from_pretrained(f"{work}/model", quantization_config=q, dtype=torch.bfloat16,
                                            attn_implementation="sdpa", device_map="cuda")
    base.save_pretrained(f"{work}/model-bnb")
    r = subprocess.run([a.swiftlet, "quantize", "--model", f"{work}/model", "--out", f"{work}/model-swiftlet"],
                       capture_output=True, text=True)
    print(r.stdout.strip(), r.stderr.strip()[-2000:])
    theirs, ours_q = tensors(f"{work}/model-bnb"), tensors(f"{work}/model-swiftlet")
    differing = [k for k in theirs if k not in ours_q or theirs[k].dtype != ours_q[k].dtype
                 or theirs[k].shape != ours_q[k].shape or not torch.equal(theirs[k], ours_q[k])]
    missing = sorted(set(ours_q) - set(theirs))
    print(f"quantized tensors: {len(theirs)} from bitsandbytes (CUDA), {len(differing)} differ, {len(missing)} extra in ours")
    kinds = {}
    for k in theirs:
        if k + ".absmax" in theirs:
            kind = ".weight (packed 4-bit codes)"
        elif ".weight." in k:
            kind = "." + k.split(".weight.", 1)[1]
        else:
            kind = "16-bit tensors (embeddings, norms, lm_head)"
        entry = kinds.setdefault(kind, [0, 0, 0, 0])
        entry[0] += 1
        if k in differing:
            entry[1] += 1
            t, o = theirs[k], ours_q.get(k)
            if o is not None and t.shape == o.shape and t.dtype == o.dtype:
                entry[2] += (t != o).sum().item()
        entry[3] += theirs[k].numel()
    for kind, (n, bad, elements, total) in sorted(kinds.items()):
        print(f"  {kind:42s} {n:4d} tensors, {bad:4d} differ ({elements} of {total} elements)")
    # The double quantization's offset is torch's absmax.mean(): on CUDA a tree reduction in float32
    # whose order differs from the CPU's; how far apart are the two offsets, in float32 ulps?
    import json as _json
    ulps = []
    for k in theirs:
        if k.endswith("quant_state.bitsandbytes__nf4") and k in ours_q:
            a_off = _json.loads(bytes(theirs[k].tolist()).decode())["nested_offset"]
            b_off = _json.loads(bytes(ours_q[k].tolist()).decode())["nested_offset"]
            ia = torch.tensor([a_off], dtype=torch.float32).view(torch.int32).item()
            ib = torch.tensor([b_off], dtype=torch.float32).view(torch.int32).item()
            ulps.append(abs(ia - ib))
    if ulps:
        print(f"  nested_offset: {sum(u == 0 for u in ulps)} of {len(ulps)} equal, max {max(ulps)} ulp apart")
    bytes_ok = not differing and not missing

    # bitsandbytes' own dequantization of its weights, in fp32: the truth's weights below.
    import bitsandbytes as bnb
    dequantized = {}
    for name, module in base.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            w = F.dequantize_4bit(module.weight.data, module.weight.quant_state, quant_type="nf4").float()
            dequantized[name + ".weight"] = w.cpu()

    # 2. The training step, PEFT + bitsandbytes in bf16 compute.
    model = attach_lora(base, f"{work}/adapter")
    ids = random_batch(cfg.vocab_size, a.bsz, a.seq, f"{work}/data.jsonl")
    loss_bf16, g_bf16 = loss_and_grads(model, ids)

    # The truth: fp32 on exactly the dequantized weights (bitsandbytes' own dequantize, in fp32).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    base32 = LlamaForCausalLM.from_pretrained(f"{work}/model", dtype=torch.float32, attn_implementation="eager")
    state = base32.state_dict()
    for k, w in dequantized.items():
        assert k in state, k
        state[k].copy_(w)
    base32 = base32.cuda()
    model32 = PeftModel.from_pretrained(base32, f"{work}/adapter", is_trainable=True)
    loss_fp32, g_fp32 = loss_and_grads(model32, ids)

    r = subprocess.run([a.swiftlet, "gradients", "--model", f"{work}/model-swiftlet", "--adapter", f"{work}/adapter",
                        "--data", f"{work}/data.jsonl", "--out", f"{work}/swiftlet.safetensors", "--device", "cuda"],
                       capture_output=True, text=True)
    print(r.stdout.strip(), r.stderr.strip()[-2000:])
    if r.returncode != 0:
        print("RESULT", json.dumps({"ok": False, "bytes_identical": bytes_ok, "error": "swiftlet gradients failed"}))
        sys.exit(1)
    ours = load_file(f"{work}/swiftlet.safetensors")
    loss_ours = ours["loss"].item()

    def worst(ref):
        pairs = [stats(ours["grad." + n], gr) for n, gr in ref.items()]
        return min(c for c, _ in pairs), max(r for _, r in pairs)

    def overall(ref):
        names = sorted(ref)
        x = torch.cat([ours["grad." + n].flatten() for n in names])
        y = torch.cat([ref[n].flatten() for n in names])
        return stats(x, y)[0]

    cos_peft, rel_peft = worst(g_bf16)
    cos_true, rel_true = worst(g_fp32)
    peft_pairs = [stats(g_bf16[n], g_fp32[n]) for n in g_fp32]
    peft_cos, peft_rel = min(c for c, _ in peft_pairs), max(r for _, r in peft_pairs)
    res = dict(arch=a.arch, bsz=a.bsz, seq=a.seq, bytes_identical=bytes_ok, quantized_tensors=len(theirs),
               loss_swiftlet=loss_ours, loss_peft_bnb=loss_bf16, loss_fp32=loss_fp32,
               loss_rel_vs_peft=abs(loss_ours - loss_bf16) / loss_bf16,
               grad_cos_all_vs_peft=overall(g_bf16), grad_worst_cos_vs_peft=cos_peft, grad_worst_rel_vs_peft=rel_peft,
               grad_worst_cos_vs_fp32=cos_true, grad_worst_rel_vs_fp32=rel_true,
               peft_bnb_worst_cos_vs_fp32=peft_cos, peft_bnb_worst_rel_vs_fp32=peft_rel)
    res["ok"] = (bytes_ok and res["loss_rel_vs_peft"] < 1e-3 and res["grad_cos_all_vs_peft"] > 0.999
                 and rel_true <= 1.25 * peft_rel and 1 - cos_true <= 1.25 * (1 - peft_cos))
    print("RESULT", json.dumps(res))


if __name__ == "__main__":
    main()
