#!/usr/bin/env python3
"""llama.cpp itself (llama-cpp-python, which compiles llama.cpp on install) on `swiftlet export
--format gguf` files.

For two tiny random Llama models with real tokenizers (the spm_bpe and byte_bpe fixture tokenizers,
a random PEFT adapter on all seven projections; built as check_gguf_export.py builds them), exports
the merged model as an f16 GGUF with the swiftlet binary, loads it in llama.cpp and checks:

- llama.cpp's tokenizer gives the HF tokenizer's ids on a few texts (printed; counted);
- llama.cpp's logits for the HF ids equal transformers' on the merged model with its 2-D weights
  rounded to f16 (as the GGUF stores them), within 1e-2 of the largest logit (llama.cpp computes in
  its own f16/f32 mix on the CPU);
- greedy decoding of 12 tokens in llama.cpp: at each step transformers, given the same prefix, picks
  the same token, or the two candidates are a near tie (logits within 1e-2 of the largest, the
  engines' agreement above: these random tiny models have flat distributions), after which the
  comparison stops.

Prints one line starting with RESULT (PASS or FAIL); exit status 1 on FAIL.

  pip install llama-cpp-python gguf
  python scripts/check_gguf_llamacpp.py [--swiftlet .build/release/swiftlet] [--family llama|qwen3|phi3|gemma2|gemma3|mixtral|qwen3_moe]

--family qwen3 / phi3 builds those models instead (Qwen3: head_dim 32, q/k norms; Phi-3: fused
qkv_proj / gate_up_proj, sliding window 64, wider than the sequences here: llama.cpp runs Phi-3 without
its window, so with window 8 positions from 8 on differ from transformers' while 0-7 agree to 2e-3).
--family gemma2 / gemma3: softcaps 2 and 3, window 8 on every other layer; 6 layers sliding 5 of 6, q/k norms.
--family mixtral / qwen3_moe: 4 experts top-2 (exported as llama) / 8 experts top-3 renormalised (qwen3moe),
LoRA on the attention, every expert and (Mixtral) the router, merged by PEFT.
"""
import argparse, os, shutil, subprocess, sys, tempfile

import numpy as np
import torch
from llama_cpp import Llama
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from check_gguf_export import FIX, ROOT, check, failures, make_model


def merged_f16(base, adapter):
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter)
    merged = model.merge_and_unload().eval()
    with torch.no_grad():
        for p in merged.parameters():
            if p.ndim == 2:
                p.copy_(p.half().float())
    return merged


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--swiftlet", default=os.path.join(ROOT, ".build/release/swiftlet"))
    p.add_argument("--family", default="llama", choices=["llama", "qwen3", "phi3", "gemma2", "gemma3", "mixtral", "qwen3_moe"])
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="gguf-llamacpp-")
    for tk in ["spm_bpe", "byte_bpe"]:
        print(tk)
        base, adapter = make_model(os.path.join(FIX, "tokenizers", tk), os.path.join(work, tk), args.family)
        out = os.path.join(work, f"{tk}.gguf")
        run = subprocess.run([args.swiftlet, "export", "--model", base, "--adapter", adapter, "--format", "gguf",
                              "--quant", "f16", "--out", out], capture_output=True, text=True)
        check(run.returncode == 0, f"{tk}: swiftlet export ({(run.stdout + run.stderr).strip()[-200:]})")
        if run.returncode != 0:
            continue
        llm = Llama(model_path=out, n_ctx=128, logits_all=True, verbose=False, n_threads=2, seed=0)
        hf_tok = AutoTokenizer.from_pretrained(base)
        texts = ["Hello world, this is a test.", "The quick brown fox jumps over the lazy dog.", "café naïve 12345"]
        same = 0
        for t in texts:
            ours, theirs = llm.tokenize(t.encode(), add_bos=True, special=False), hf_tok.encode(t)
            same += ours == theirs
            if ours != theirs:
                print("    llama.cpp:", ours, "\n    HF:       ", theirs)
        print(f"  llama.cpp's tokenizer equals HF's on {same}/{len(texts)} texts")
        check(same == len(texts), f"{tk}: llama.cpp tokenizes as HF ({same}/{len(texts)} texts)")

        merged = merged_f16(base, adapter)
        ids = hf_tok.encode("The quick brown fox jumps over the lazy dog.")
        llm.reset()
        llm.eval(ids)
        got = np.array(llm.scores[: len(ids)], dtype=np.float32)
        with torch.no_grad():
            ref = merged(torch.tensor([ids])).logits[0].numpy()
        rel = float(np.abs(got - ref).max() / np.abs(ref).max())
        print(f"  logits: llama.cpp vs transformers (merged, f16 weights): max diff {rel:.2e} of the largest logit")
        check(rel < 1e-2, f"{tk}: llama.cpp logits within 1e-2 ({rel:.2e})")

        # Greedy decoding in llama.cpp, each of its choices checked against transformers on the same
        # prefix: equal, or (on these random tiny models) a near tie within the logits' agreement above.
        prompt = hf_tok.encode("Once upon a time")
        llm.reset()
        cpp_out = []
        for token in llm.generate(prompt, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
            cpp_out.append(token)
            if len(cpp_out) == 12 or token == llm.token_eos():
                break
        agreed, tie = 0, None
        with torch.no_grad():
            for i, token in enumerate(cpp_out):
                logits = merged(torch.tensor([prompt + cpp_out[:i]])).logits[0, -1]
                best = int(logits.argmax())
                if best == token:
                    agreed += 1
                    continue
                gap = float(logits[best] - logits[token]) / float(logits.abs().max())
                tie = (i, gap)
                break
        print(f"  greedy: llama.cpp {cpp_out}; transformers picks the same next token at {agreed} of {len(cpp_out)} steps"
              + (f", then a near tie (gap {tie[1]:.1e} of the largest logit)" if tie else ""))
        check(agreed > 0 and (tie is None or tie[1] < 1e-2),
              f"{tk}: greedy tokens equal, up to near ties within 1e-2 of the largest logit")
    shutil.rmtree(work)
    print("RESULT", "PASS" if not failures else f"FAIL ({len(failures)} checks)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
