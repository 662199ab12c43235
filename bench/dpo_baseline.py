# Baseline for the DPO speed claim: one DPO step of Hugging Face transformers + PEFT LoRA on a random-init
# Llama-family model, built exactly as ../shared/bench/hf_peft.py builds it (same configs, bf16, SDPA, LoRA
# r on all seven projections, the same gradient-checkpointing flag), with the step DPOTrainer takes for a
# PEFT model and what `swiftlet bench --objective dpo` times: the reference log-probs from a forward with
# the adapters off under no_grad, then the policy's forward and backward on chosen and rejected rows
# concatenated into one batch, the sigmoid DPO loss written in plain torch, and AdamW. No trl needed.
#   python3 dpo_baseline.py --arch tinyllama --bsz 2 --seq 2048 --steps 8 [--gc 0] [--prompt 1024]
# --bsz counts pairs (2·bsz rows per forward). Prints one line: RESULT {json}.
import argparse, json, time
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM
from peft import LoraConfig, get_peft_model

p = argparse.ArgumentParser()
p.add_argument("--arch", default="tinyllama"); p.add_argument("--bsz", type=int, default=2, help="preference pairs per step")
p.add_argument("--seq", type=int, default=2048); p.add_argument("--steps", type=int, default=10)
p.add_argument("--gc", type=int, default=1); p.add_argument("--attn", default="sdpa")
p.add_argument("--r", type=int, default=16); p.add_argument("--beta", type=float, default=0.1)
p.add_argument("--prompt", type=int, default=None, help="prompt tokens of each row (default: half of --seq)")
p.add_argument("--device", default="cuda", help="cuda; cpu only to smoke-test this script")
a = p.parse_args()
cfgs = {  # as hf_peft.py
 "tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4, vocab_size=32000),
 "tinyllama": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4, vocab_size=32000),
 "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32, vocab_size=32000),
 "mistral-7b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, vocab_size=32000),
 "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0),
}
torch.manual_seed(0)
c = LlamaConfig(max_position_embeddings=4096, **cfgs[a.arch]); c._attn_implementation = a.attn
dev = torch.device(a.device)
sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
with dev:
    model = LlamaForCausalLM(c).to(torch.bfloat16)
lc = LoraConfig(r=a.r, lora_alpha=a.r, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                target_modules=["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"])
model = get_peft_model(model, lc)
if a.gc:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True}); model.enable_input_require_grads()
model.train()
opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=2e-4)
prompt = a.seq // 2 if a.prompt is None else min(max(a.prompt, 0), a.seq - 1)
g = torch.Generator(device=dev).manual_seed(1)


def batch():
    """Chosen rows then rejected rows (a pair shares its prompt), and the mask of completion targets."""
    ids = lambda n: torch.randint(0, c.vocab_size, (a.bsz, n), device=dev, generator=g)
    p_ = ids(prompt)
    x = torch.cat([torch.cat([p_, ids(a.seq - prompt)], 1), torch.cat([p_, ids(a.seq - prompt)], 1)], 0)
    mask = torch.zeros_like(x, dtype=torch.bool); mask[:, prompt:] = True
    return x, mask[:, 1:]


def sequence_logps(x, completion):
    """Σ log p of each row's completion tokens: fp32 gather − logsumexp (TRL's selective_log_softmax for fp32)."""
    logits = model(input_ids=x, use_cache=False).logits[:, :-1].float()
    tok = torch.gather(logits, 2, x[:, 1:, None]).squeeze(2) - torch.logsumexp(logits, dim=-1)
    return (tok * completion).sum(1)


if dev.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
times = []
for s in range(a.steps + 2):
    x, completion = batch(); sync(); t = time.perf_counter()
    with torch.no_grad(), model.disable_adapter():
        ref = sequence_logps(x, completion)
    logps = sequence_logps(x, completion)
    chosen, rejected = (logps - ref).chunk(2)
    loss = -F.logsigmoid(a.beta * (chosen - rejected)).mean()
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    sync(); times.append(time.perf_counter() - t)
tt = sorted(times[2:]); med = tt[len(tt)//2]
res = dict(system="hf+peft", objective="dpo", arch=a.arch, bsz=a.bsz, seq=a.seq, prompt=prompt, gc=a.gc, fourbit=0, attn=a.attn,
           r=a.r, step_s=round(med, 4), tok_s=round(2 * a.bsz * a.seq / med, 1),
           peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if dev.type == "cuda" else 0, loss=round(loss.item(), 4))
print("RESULT", json.dumps(res))
