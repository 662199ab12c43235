"""Checks that transformers + bitsandbytes load a folder written by `swiftlet quantize` and see
the same dequantized weights as their own 4-bit load of the source model.
Usage: python scripts/check_quantize_transformers.py SOURCE_MODEL QUANTIZED_DIR  (CPU is enough)"""
import sys

import bnb_reference  # noqa: F401  (exact CPU kernels)
import bitsandbytes
import bitsandbytes.functional as F
import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

source, quantized = sys.argv[1], sys.argv[2]
ours = AutoModelForCausalLM.from_pretrained(quantized, device_map="cpu")
config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)
theirs = AutoModelForCausalLM.from_pretrained(source, quantization_config=config, device_map="cpu")
checked = 0
for (name, a), (_, b) in zip(ours.named_modules(), theirs.named_modules()):
    if isinstance(a, bitsandbytes.nn.Linear4bit):
        wa = F.dequantize_4bit(a.weight.data, a.weight.quant_state, quant_type="nf4")
        wb = F.dequantize_4bit(b.weight.data, b.weight.quant_state, quant_type="nf4")
        assert torch.equal(wa, wb), f"{name}: dequantized weights differ"
        checked += 1
assert checked > 0, "no 4-bit modules found"
print(f"OK: {checked} 4-bit modules, dequantized weights identical")
