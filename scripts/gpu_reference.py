"""What the GPU comparison scripts share (compare_hf_gpu.py, check_qlora_peft.py): the model shapes,
a PEFT LoRA with non-zero A and B on all seven projections, a random batch written as JSONL for
`swiftlet gradients`, the loss and LoRA gradients of one step, and how two gradients compare."""
import json

import torch
from peft import LoraConfig, get_peft_model

SHAPES = {
    "tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4),
    "tinyllama": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4),
    # Real widths of the new families, 4 layers: Phi-3-mini (head_dim 96: the simple attention kernels) and
    # Qwen3-0.6B (with --family qwen3: head_dim 128, q 2048 wide on a 1024 hidden state).
    "phi3-mini-4l": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=4, num_attention_heads=32, num_key_value_heads=32),
    "qwen3-0.6b-4l": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=4, num_attention_heads=16, num_key_value_heads=8),
    # Gemma 2 2B / Gemma 3 1B-like (with --family gemma2 / gemma3: head_dim 256, q 2048 wide on 2304).
    "gemma2-2b-4l": dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Mixtral's experts by PEFT's transformers-4 names (w1 w3 w2), which PEFT turns into target_parameters on
# the 3-D expert tensors, and its router ("gate"); Qwen3-MoE's experts keep the dense MLP's names.
MIXTRAL_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "w1", "w2", "w3", "gate"]
PHI3_TARGETS = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]  # Phi-3's fused linears, as PEFT names them


def attach_lora(base, adapter_dir, targets=TARGETS):
    """r 16 (alpha 16) on all seven projections (or `targets`); B drawn from N(0, 0.02) so that A
    gets gradients too; saved as a PEFT adapter folder."""
    config = LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM", target_modules=targets)
    model = get_peft_model(base, config)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    model.save_pretrained(adapter_dir)
    return model


def random_batch(vocab, bsz, seq, path):
    """Seeded random token rows, also written as JSONL of input_ids."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (bsz, seq), generator=g)
    with open(path, "w") as f:
        for row in ids.tolist():
            f.write(json.dumps({"input_ids": row}) + "\n")
    return ids


def loss_and_grads(model, ids, device="cuda"):
    """Loss and the LoRA gradients (f32, on the CPU) under PEFT's saved names (no `.default`)."""
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids.to(device), labels=ids.to(device), use_cache=False)
    out.loss.backward()
    return out.loss.item(), {n.replace(".default", ""): p.grad.detach().float().cpu()
                             for n, p in model.named_parameters() if p.requires_grad}


def stats(x, y):
    """Cosine and relative error of x against y."""
    x, y = x.flatten().double(), y.flatten().double()
    return (x @ y / (x.norm() * y.norm())).item(), ((x - y).norm() / y.norm()).item()
