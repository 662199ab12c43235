#!/usr/bin/env python3
"""Evaluate a base model (+ optional PEFT LoRA adapter) on a JSONL file, the way `swiftlet eval --json` does.

Requirements:  pip install torch transformers peft safetensors

Usage:
    python scripts/peft_eval.py --model DIR [--adapter DIR] --data FILE.jsonl [--device cpu]

Each JSONL row: {"input_ids": [...], "labels": [...] (optional, default = input_ids),
                 "attention_mask": [...] (optional)}
Every row is evaluated on its own (batch 1), fp32, eager attention, use_cache=False. Prints one JSON line
    {"loss": L, "perplexity": exp(L), "tokens": N}
where N = number of target tokens (labels[1:] != -100, i.e. after the causal shift) over all rows and
L = (sum over rows of the summed token cross-entropies) / N.
"""

import argparse
import json
import math
import sys
import warnings

import torch
import transformers
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser(description="PEFT/transformers reference eval loss over a JSONL file")
    ap.add_argument("--model", required=True, help="base model folder (config.json + safetensors)")
    ap.add_argument("--adapter", default=None, help="PEFT adapter folder (adapter_config.json + adapter_model.safetensors)")
    ap.add_argument("--data", required=True, help="JSONL file")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager")
    if args.adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, args.adapter)
    model.to(args.device).eval()

    total_loss = 0.0  # float64 accumulation
    total_tokens = 0
    with open(args.data) as f, torch.no_grad():
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            row = json.loads(line)
            ids = torch.tensor([row["input_ids"]], dtype=torch.long, device=args.device)
            labels = row.get("labels")
            labels = ids.clone() if labels is None else torch.tensor([labels], dtype=torch.long, device=args.device)
            if labels.shape != ids.shape:
                sys.exit(f"line {lineno}: labels and input_ids differ in length")
            kw = dict(input_ids=ids, use_cache=False)
            if row.get("attention_mask") is not None:
                kw["attention_mask"] = torch.tensor([row["attention_mask"]], dtype=torch.long, device=args.device)
            shift_labels = labels[:, 1:].reshape(-1)
            n = int((shift_labels != -100).sum())
            if n == 0:
                continue
            logits = model(**kw).logits.float()
            V = logits.shape[-1]
            row_sum = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, V), shift_labels, ignore_index=-100, reduction="sum")
            total_loss += row_sum.item()
            total_tokens += n

    if total_tokens == 0:
        sys.exit("no target tokens")
    loss = total_loss / total_tokens
    print(json.dumps({"loss": loss, "perplexity": math.exp(loss), "tokens": total_tokens}))


if __name__ == "__main__":
    main()
