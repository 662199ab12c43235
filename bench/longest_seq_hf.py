# The longest sequence HF + PEFT trains within a memory budget: the model of ../shared/bench/hf_peft.py
# (random init, the same config; QLoRA as it quantizes: save, reload in 4-bit, prepare_model_for_kbit_training;
# LoRA r 16 on all seven projections; gradient checkpointing), bsz 1, one process trying longer and
# longer rows. A length fits if a training step ran and its peak allocated memory stayed within the
# budget (torch's per-process fraction is set to the budget too, so a longer row fails fast).
#   python3 bench/longest_seq_hf.py --arch llama2-7b --fourbit 1 --budget-gib 16 --seqs 4096,8192,16384
import argparse, json, tempfile, time, torch
from transformers import LlamaConfig, LlamaForCausalLM
p = argparse.ArgumentParser()
p.add_argument("--arch", default="llama2-7b"); p.add_argument("--fourbit", type=int, default=1)
p.add_argument("--budget-gib", type=float, default=16)
# --cap 0: no per-process cap; a length fits when max_memory_allocated stays within the budget, the rule
# Swiftlet's side uses (its peak_requested_gib counts requests as torch's allocated bytes do)
p.add_argument("--cap", type=int, default=1); p.add_argument("--seqs", default="4096,8192,12288,16384,24576,32768")
p.add_argument("--r", type=int, default=16); p.add_argument("--attn", default="sdpa")
a = p.parse_args()
cfgs = {
 "tinyllama": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4, vocab_size=32000),
 "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32, vocab_size=32000),
 "mistral-7b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, vocab_size=32000),
}
torch.manual_seed(0)
seqs = [int(s) for s in a.seqs.split(",")]
c = LlamaConfig(max_position_embeddings=max(seqs), **cfgs[a.arch]); c._attn_implementation = a.attn
with torch.device("cuda"):
    model = LlamaForCausalLM(c).to(torch.bfloat16)
if a.fourbit:
    from transformers import BitsAndBytesConfig
    from peft import prepare_model_for_kbit_training
    d = tempfile.mkdtemp(); model.save_pretrained(d); del model; torch.cuda.empty_cache()
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
    model = LlamaForCausalLM.from_pretrained(d, quantization_config=q, dtype=torch.bfloat16, device_map={"": 0}, attn_implementation=a.attn)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
from peft import LoraConfig, get_peft_model
model = get_peft_model(model, LoraConfig(r=a.r, lora_alpha=a.r, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                       target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True}); model.enable_input_require_grads()
model.train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
total = torch.cuda.get_device_properties(0).total_memory
if a.cap:  # fail fast at the budget (torch's cap counts reserved memory, fragmentation included)
    torch.cuda.set_per_process_memory_fraction(min(1.0, a.budget_gib * 2**30 / total))
longest = 0
for seq in seqs:
    torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    x = torch.randint(0, c.vocab_size, (1, seq), device="cuda")
    try:
        t = time.perf_counter()
        out = model(input_ids=x, labels=x); out.loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize(); step = time.perf_counter() - t
        peak = torch.cuda.max_memory_allocated() / 2**30
        fits = peak <= a.budget_gib
    except torch.OutOfMemoryError:
        step, peak, fits = None, None, False
        opt.zero_grad(set_to_none=True); out = None
    print("SEQ", json.dumps(dict(system="hf+peft", arch=a.arch, fourbit=a.fourbit, seq=seq, fits=fits,
                                 peak_gib=None if peak is None else round(peak, 2), step_s=None if step is None else round(step, 3))), flush=True)
    if not fits: break
    longest = seq
print("RESULT", json.dumps(dict(system="hf+peft", arch=a.arch, fourbit=a.fourbit, bsz=1, gc=1, budget_gib=a.budget_gib, longest_seq=longest)))
