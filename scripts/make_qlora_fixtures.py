"""Writes Tests/SwiftletTests/Fixtures/llama_gqa_nf4/: the llama_gqa fixture quantized to NF4 with
double quantization by transformers + bitsandbytes (BitsAndBytesConfig(load_in_4bit=True, nf4,
double quant), then save_pretrained), with
    batch.json            llama_gqa's batch
    expected.json         the loss of that 4-bit model: transformers' forward (float32, eager
                          attention) of llama_gqa with every quantized weight replaced by its
                          bitsandbytes dequantization (Linear4bit's own CPU forward repacks weights
                          for a kernel that rejects rows shorter than a block)
    expected.safetensors  bitsandbytes' dequantize_4bit of every quantized weight (float32)
Needs torch, transformers and bitsandbytes 0.50.x (CPU is enough). bitsandbytes' CPU ops are routed
to its pure-torch reference kernels (scripts/bnb_reference.py says why).
Run from the repository root: python scripts/make_qlora_fixtures.py"""
import json
import shutil
from pathlib import Path

import bnb_reference  # noqa: F401  (routes the CPU ops; import before quantizing)
import bitsandbytes
import bitsandbytes.functional as F
import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

SOURCE = Path("Tests/SwiftletTests/Fixtures/llama_gqa")
OUT = Path("Tests/SwiftletTests/Fixtures/llama_gqa_nf4")

config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                            bnb_4bit_compute_dtype=torch.float32)
model = AutoModelForCausalLM.from_pretrained(SOURCE, quantization_config=config, device_map="cpu",
                                             attn_implementation="eager")
if OUT.exists():
    shutil.rmtree(OUT)
model.save_pretrained(OUT)
for extra in ["generation_config.json"]:
    if (SOURCE / extra).exists() and not (OUT / extra).exists():
        shutil.copy(SOURCE / extra, OUT / extra)
shutil.copy(SOURCE / "batch.json", OUT / "batch.json")

dequantized = {}
for name, module in model.named_modules():
    if isinstance(module, bitsandbytes.nn.Linear4bit):
        w = module.weight
        dequantized[name + ".weight"] = F.dequantize_4bit(w.data, w.quant_state, quant_type="nf4").float().contiguous()

dense = AutoModelForCausalLM.from_pretrained(SOURCE, dtype=torch.float32, attn_implementation="eager")
state = dense.state_dict()
for name, w in dequantized.items():
    state[name].copy_(w)
dense.eval()
batch = json.loads((SOURCE / "batch.json").read_text())
kw = dict(input_ids=torch.tensor(batch["input_ids"]), labels=torch.tensor(batch["labels"]), use_cache=False)
if batch.get("attention_mask") is not None:
    kw["attention_mask"] = torch.tensor(batch["attention_mask"])
if batch.get("position_ids") is not None:
    kw["position_ids"] = torch.tensor(batch["position_ids"])
with torch.no_grad():
    loss = dense(**kw).loss.item()

save_file(dequantized, OUT / "expected.safetensors")
(OUT / "expected.json").write_text(json.dumps({
    "loss": loss,
    "quantized_modules": len(dequantized),
    "bitsandbytes": bitsandbytes.__version__,
    "transformers": transformers.__version__,
    "notes": "loss = transformers float32 forward of llama_gqa with the dequantized NF4 weights, on batch.json",
}, indent=1))
print(loss, len(dequantized))
