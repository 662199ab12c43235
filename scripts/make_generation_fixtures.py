#!/usr/bin/env python3
"""Greedy-decoding reference for Swiftlet's generation (Tests/SwiftletTests/GenerationTests.swift).

For eight fixture models of scripts/make_fixtures.py with their PEFT adapters (unmerged, fp32, CPU),
runs transformers' `generate(do_sample=False, max_new_tokens=12)` on one prompt alone and on a batch
of two prompts of different lengths, left-padded with attention mask 0 (as Swiftlet pads), and writes
the prompt ids and each row's generated ids (cut after the first EOS, as Swiftlet stops there).
The fixture models' vocabulary (128) fits no tokenizer, so prompts are raw ids.

Usage:  python scripts/make_generation_fixtures.py [--fixtures Tests/SwiftletTests/Fixtures]
Writes <fixtures>/generation/expected.json.
"""

import argparse
import json
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM
from peft import PeftModel

# phi3_longrope(_short): original contexts 8 and 16, so generation crosses from short to long factors
# (transformers picks them per forward by max(position_ids) + 1; cached keys keep their rotation).
# gemma2_softcap, gemma3_text: softcapping and per-layer windows (4) in the cached decode, Gemma 3's two RoPEs.
MODELS = ["llama_gqa", "qwen2_bias", "qwen3_qknorm", "phi3_fused", "phi3_longrope", "phi3_longrope_short",
          "gemma2_softcap", "gemma3_text"]
NEW_TOKENS = 12
PAD = 0


def eos_ids(model):
    eos = model.generation_config.eos_token_id
    if eos is None:
        return []
    return eos if isinstance(eos, list) else [eos]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", default="Tests/SwiftletTests/Fixtures")
    args = parser.parse_args()
    root = Path(args.fixtures)
    g = torch.Generator().manual_seed(1234)
    out = {"transformers": transformers.__version__, "torch": torch.__version__,
           "max_new_tokens": NEW_TOKENS, "pad_token_id": PAD, "cases": []}
    for name in MODELS:
        base = AutoModelForCausalLM.from_pretrained(root / name, dtype=torch.float32, attn_implementation="eager")
        model = PeftModel.from_pretrained(base, root / name / "adapter").eval()
        eos = eos_ids(base)
        vocab = base.config.vocab_size
        for lengths in ([7], [5, 9]):
            # Prompt tokens avoid the EOS and pad ids so a prompt never looks finished.
            prompts = [[int(x) for x in torch.randint(3, vocab, (n,), generator=g)] for n in lengths]
            width = max(lengths)
            ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
            with torch.no_grad():
                result = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                        max_new_tokens=NEW_TOKENS, pad_token_id=PAD)
            generated = []
            for row in result[:, width:].tolist():
                cut = []
                for t in row:
                    cut.append(t)
                    if t in eos:
                        break
                generated.append(cut)
            out["cases"].append({"model": name, "eos_token_ids": eos, "prompts": prompts, "generated": generated})
            print(name, lengths, generated)
    (root / "generation").mkdir(exist_ok=True)
    (root / "generation" / "expected.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
