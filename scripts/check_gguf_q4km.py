#!/usr/bin/env python3
"""`swiftlet export --format gguf --quant q4_k_m` against llama.cpp's own Q4_K_M quantizer.

For tiny random models with 256-multiple rows (hidden 256, intermediate 512, 8 layers so that
llama.cpp's use_more_bits layer pattern shows; an untied Llama and a tied-embedding one, both with
the spm_bpe fixture tokenizer and a random PEFT adapter on all seven projections):

- exports the merged model twice with the swiftlet binary, as f16 and as q4_k_m;
- quantizes the f16 export with llama.cpp itself (llama-cpp-python's `llama_model_quantize`,
  LLAMA_FTYPE_MOSTLY_Q4_K_M, default parameters, no importance matrix), i.e. from the same f16
  values Swiftlet quantizes;
- compares every tensor: same names, shapes and types, and byte-identical data (printed per type);
- loads our q4_k_m file in llama.cpp and prints its logits' distance to the f16 file's logits
  (information: Q4_K_M's quantization error), and checks they are equal to the logits of llama.cpp's
  own Q4_K_M file (the same bytes must give the same numbers).

Prints one line starting with RESULT (PASS or FAIL); exit status 1 on FAIL.

  python scripts/check_gguf_q4km.py [--swiftlet .build/release/swiftlet]
"""
import argparse, os, shutil, subprocess, sys, tempfile

import numpy as np
import torch
import llama_cpp
from gguf import GGUFReader
from llama_cpp import Llama
from peft import LoraConfig, get_peft_model
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from check_gguf_export import FIX, ROOT, check, failures


def make_model(tokenizer_dir, out, tied):
    torch.manual_seed(11)
    base = os.path.join(out, "base")
    os.makedirs(base)
    for f in os.listdir(tokenizer_dir):
        if f.startswith("tokenizer"):
            shutil.copy(os.path.join(tokenizer_dir, f), base)
    tok = AutoTokenizer.from_pretrained(base)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=8,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      initializer_range=0.05, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      tie_word_embeddings=tied)
    model = LlamaForCausalLM(cfg).float()
    model.save_pretrained(base)
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    adapter = os.path.join(out, "adapter")
    lora.save_pretrained(adapter)
    return base, adapter


def export(swiftlet, base, adapter, quant, out):
    run = subprocess.run([swiftlet, "export", "--model", base, "--adapter", adapter, "--format", "gguf",
                          "--quant", quant, "--out", out], capture_output=True, text=True)
    check(run.returncode == 0, f"swiftlet export --quant {quant} ({(run.stdout + run.stderr).strip()[-160:]})")
    return run.returncode == 0


def logits(path, ids):
    llm = Llama(model_path=path, n_ctx=128, logits_all=True, verbose=False, n_threads=2, seed=0)
    llm.eval(ids)
    out = np.array(llm.scores[:len(ids)], dtype=np.float32)
    del llm
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--swiftlet", default=os.path.join(ROOT, ".build/release/swiftlet"))
    args = p.parse_args()
    for tied in (False, True):
        name = "tied" if tied else "untied"
        print(f"== llama, 8 layers, hidden 256, {name} embeddings")
        work = tempfile.mkdtemp()
        try:
            base, adapter = make_model(os.path.join(FIX, "tokenizers/spm_bpe"), work, tied)
            f16, ours, theirs = (os.path.join(work, n) for n in ("f16.gguf", "ours.gguf", "llamacpp.gguf"))
            if not (export(args.swiftlet, base, adapter, "f16", f16) and export(args.swiftlet, base, adapter, "q4_k_m", ours)):
                continue
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
            params.nthread = 2
            rc = llama_cpp.llama_model_quantize(f16.encode(), theirs.encode(), params)
            check(rc == 0, f"llama.cpp quantizes the f16 export to Q4_K_M (rc {rc})")
            a, b = GGUFReader(ours), GGUFReader(theirs)
            ta = {t.name: t for t in a.tensors}
            tb = {t.name: t for t in b.tensors}
            # llama.cpp writes the tensors in its own order (it sorts them by layer); names must match.
            check(sorted(ta) == sorted(tb), f"same {len(ta)} tensor names")
            per_type, bad = {}, []
            for n, t in tb.items():
                o = ta.get(n)
                if o is None:
                    continue
                same = (o.tensor_type == t.tensor_type and list(o.shape) == list(t.shape)
                        and bytes(o.data.tobytes()) == bytes(t.data.tobytes()))
                k = t.tensor_type.name
                per_type.setdefault(k, [0, 0, 0])
                per_type[k][0] += 1
                per_type[k][1] += same
                per_type[k][2] += int(t.n_bytes)
                if not same:
                    bad.append(f"{n} (ours {o.tensor_type.name}, llama.cpp {t.tensor_type.name})")
            for k, (n, s, nb) in sorted(per_type.items()):
                print(f"  {k:5s}: {s}/{n} tensors byte-identical ({nb} bytes)")
            q6 = sorted(n for n, t in tb.items() if t.tensor_type.name == "Q6_K")
            print(f"  llama.cpp's Q6_K tensors: {', '.join(q6)}")
            check(not bad, "every tensor byte-identical to llama.cpp's Q4_K_M" + (f"; differ: {bad[:6]}" if bad else ""))
            ft = a.fields["general.file_type"]
            check(int(ft.parts[ft.data[0]][0]) == 15, "general.file_type 15 (MOSTLY_Q4_K_M)")

            ids = AutoTokenizer.from_pretrained(base)("The quick brown fox jumps over the lazy dog.")["input_ids"]
            lf, lo, lt = logits(f16, ids), logits(ours, ids), logits(theirs, ids)
            scale = float(np.abs(lf).max())
            print(f"  logits (llama.cpp, {len(ids)} tokens): q4_k_m vs f16 max diff {float(np.abs(lo - lf).max()):.3e}, "
                  f"mean {float(np.abs(lo - lf).mean()):.3e} (largest f16 logit {scale:.3f}); "
                  f"greedy agreement {float((lo.argmax(-1) == lf.argmax(-1)).mean()):.2f}")
            check(np.array_equal(lo, lt), f"our q4_k_m file's logits equal llama.cpp's own Q4_K_M file's "
                                          f"(max diff {float(np.abs(lo - lt).max()):.1e})")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"RESULT {'PASS' if not failures else 'FAIL'}" + (f" ({len(failures)} failures)" if failures else ""))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
