# Baseline for `swiftlet bench --generate`: transformers' greedy generate (bf16, sdpa, KV cache) on a
# random-init Llama-family model built as ../shared/bench/hf_peft.py builds it (speed does not depend
# on the weights' values), batch `--bsz` of `--prompt` random tokens, exactly `--new` new tokens
# (min_new_tokens = max_new_tokens, so no EOS ends it early).
#   python3 generate_baseline.py --arch tinyllama --prompt 512 --new 128 --runs 5
# Prefill is timed as generate with one new token (the prompt's forward and the first token); decode
# as the rest of a full generate: (new - 1) tokens in (full - prefill) seconds. Medians of --runs
# after one warm-up, each bracketed by torch.cuda.synchronize(). Prints one line: RESULT {json}, with
# the keys of swiftlet bench --generate.
import argparse, json, time, torch
from transformers import LlamaConfig, LlamaForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--arch", default="tinyllama"); p.add_argument("--bsz", type=int, default=1)
p.add_argument("--prompt", type=int, default=512); p.add_argument("--new", type=int, default=128)
p.add_argument("--runs", type=int, default=5); p.add_argument("--attn", default="sdpa")
a = p.parse_args()
cfgs = {
 "tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4, vocab_size=32000),
 "tinyllama": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4, vocab_size=32000),
 "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32, vocab_size=32000),
 "mistral-7b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, vocab_size=32000),
 "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0),
}
torch.manual_seed(0)
c = LlamaConfig(max_position_embeddings=4096, **cfgs[a.arch]); c._attn_implementation = a.attn
with torch.device("cuda"):
    model = LlamaForCausalLM(c).to(torch.bfloat16)
model.eval()
g = torch.Generator(device="cuda").manual_seed(1)

def timed(new):
    x = torch.randint(0, c.vocab_size, (a.bsz, a.prompt), device="cuda", generator=g)
    mask = torch.ones_like(x)
    torch.cuda.synchronize(); t = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=x, attention_mask=mask, do_sample=False, max_new_tokens=new,
                             min_new_tokens=new, pad_token_id=0, use_cache=True)
    torch.cuda.synchronize()
    assert out.shape[1] == a.prompt + new, out.shape
    return time.perf_counter() - t

timed(a.new)  # warm-up: kernels, allocator
prefill, full = [], []
for _ in range(a.runs):
    prefill.append(timed(1)); full.append(timed(a.new))
med = lambda v: sorted(v)[len(v) // 2]
pre, tot = med(prefill), med(full)
dec = max(tot - pre, 1e-9)
torch.cuda.reset_peak_memory_stats(); timed(a.new)
res = dict(system="hf", mode="generate", arch=a.arch, bsz=a.bsz, prompt=a.prompt, new=a.new, fourbit=0, attn=a.attn,
           prefill_s=round(pre, 4), decode_s=round(dec, 4),
           prefill_tok_s=round(a.bsz * a.prompt / pre, 1), decode_tok_s=round(a.bsz * (a.new - 1) / dec, 1),
           peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2))
print("RESULT", json.dumps(res))
