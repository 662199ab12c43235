#!/usr/bin/env python3
"""Checks a `swiftlet export --format merged` folder against base + PEFT adapter in PyTorch.

Loads the base model with the adapter (float32), and the merged folder with plain transformers
(in its stored dtype, then .float()), runs the same token ids through both and compares logits:
max |diff| / max |logit|. The bound for a 16-bit export is set by PEFT's own merge rounded to the
same dtype (merge_and_unload().to(dtype)): ours may be at most 1.5x that error (plus 1e-6); for an
f32 export the bound is 1e-5. Also compares every merged tensor with PEFT's merged tensor cast to
the export dtype. Prints one line starting with RESULT (PASS or FAIL); exit status 1 on FAIL.

  python scripts/check_merged_export.py --base DIR --adapter DIR --merged DIR [--batch batch.json]
"""
import argparse, json, sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--adapter", required=True)
    p.add_argument("--merged", required=True)
    p.add_argument("--batch", help="batch.json with input_ids (and attention_mask); else random ids")
    p.add_argument("--seq", type=int, default=24)
    args = p.parse_args()
    torch.manual_seed(0)

    merged = AutoModelForCausalLM.from_pretrained(args.merged)  # dtype from config.json
    dtype = next(merged.parameters()).dtype
    merged = merged.float().eval()

    base = AutoModelForCausalLM.from_pretrained(args.base, dtype=torch.float32)
    peft = PeftModel.from_pretrained(base, args.adapter).eval()

    if args.batch:
        b = json.load(open(args.batch))
        ids = torch.tensor(b["input_ids"])
        mask = torch.tensor(b["attention_mask"]) if b.get("attention_mask") else torch.ones_like(ids)
    else:
        ids = torch.randint(0, merged.config.vocab_size, (2, args.seq))
        mask = torch.ones_like(ids)
    keep = mask.bool()
    with torch.no_grad():
        want = peft(input_ids=ids, attention_mask=mask).logits[keep]
        got = merged(input_ids=ids, attention_mask=mask).logits[keep]
        base_err = None
        with peft.disable_adapter():
            base_err = rel(peft(input_ids=ids, attention_mask=mask).logits[keep], want)

        # PEFT's own merge, cast to the export dtype: the reference for weights and rounding.
        ref = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(args.base, dtype=torch.float32), args.adapter
        ).merge_and_unload().to(dtype).float().eval()
        ref_err = rel(ref(input_ids=ids, attention_mask=mask).logits[keep], want)

        ours, theirs = merged.state_dict(), ref.state_dict()
        missing = sorted(set(theirs) ^ set(ours))
        weight_diff, mismatched, total = 0.0, 0, 0
        for name, t in theirs.items():
            if name not in ours:
                continue
            d = (ours[name] - t).abs()
            weight_diff = max(weight_diff, (d.max() / t.abs().max().clamp_min(1e-12)).item())
            mismatched += int((d > 0).sum())
            total += t.numel()

    err = rel(got, want)
    bound = 1e-5 if dtype == torch.float32 else 1.5 * ref_err + 1e-6
    ok = err <= bound and not missing and err < base_err
    print(f"RESULT {'PASS' if ok else 'FAIL'} merged={args.merged} dtype={str(dtype).replace('torch.', '')} "
          f"logit_rel_err={err:.3e} bound={bound:.3e} peft_merge_{str(dtype).replace('torch.', '')}_rel_err={ref_err:.3e} "
          f"base_without_adapter_rel_err={base_err:.3e} weights_vs_peft_merge: max_rel={weight_diff:.3e} "
          f"differing={mismatched}/{total} key_mismatch={missing[:3]}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
