"""Writes Tests/SwiftletTests/Fixtures/bnb/nf4.{safetensors,json}: inputs and bitsandbytes'
quantize_4bit / dequantize_4bit outputs (NF4, block 64), with and without double quantization,
for bf16 and f32 inputs, shapes with partial blocks and odd counts, and a block of zeros.
Needs torch and bitsandbytes 0.50.x (CPU is enough).
Run from the repository root: python scripts/make_nf4_fixtures.py

The CPU ops go to bitsandbytes' pure-torch reference kernels (scripts/bnb_reference.py says
why); meta records how many values the native CPU library would give differently."""
import ctypes as ct
import json

import bitsandbytes
import bitsandbytes.functional as F
import torch
from bitsandbytes.cextension import lib
from bitsandbytes.functional import get_ptr
from safetensors.torch import save_file

from bnb_reference import reference

OUT = "Tests/SwiftletTests/Fixtures/bnb/nf4"

def nested_native_disagreements(absmax, offset):
    """How many nested codes bitsandbytes' native CPU kernel would choose differently (called
    directly: quantize_blockwise on the CPU is routed to the reference below)."""
    A = (absmax - offset).contiguous()
    code = F.create_dynamic_map()
    native = torch.empty(A.shape, dtype=torch.uint8)
    native_absmax = torch.empty((A.numel() + 255) // 256, dtype=torch.float32)
    lib.cquantize_blockwise_cpu_fp32(get_ptr(code), get_ptr(A), get_ptr(native_absmax), get_ptr(native),
                                     ct.c_longlong(256), ct.c_longlong(A.numel()))
    ref, _ = reference("quantize_blockwise", A, F.create_dynamic_map(), 256)
    return int((native != ref).sum())


def native_dequantize_disagreements(packed, absmax, shape, dtype):
    native = torch.empty(shape, dtype=dtype)
    fn = {torch.float32: lib.cdequantize_blockwise_cpu_nf4_fp32, torch.bfloat16: lib.cdequantize_blockwise_cpu_nf4_bf16}[dtype]
    m, n = (1, shape[0]) if len(shape) == 1 else (shape[0], shape[1])
    if n % 2:
        return 0  # bitsandbytes itself falls back to the reference for odd rows
    fn(get_ptr(packed), get_ptr(absmax.float().contiguous()), get_ptr(native), ct.c_longlong(64), ct.c_longlong(m), ct.c_longlong(n))
    return int((native != reference("dequantize_4bit", packed, absmax, 64, "nf4", shape, dtype)).sum())



torch.manual_seed(1234)


def weights(shape, dtype, zero_block=False, outliers=False):
    x = torch.randn(shape) * 0.05
    if outliers:
        x.view(-1)[::97] *= 40
    if zero_block:
        x.view(-1)[64:128] = 0  # a whole NF4 block of zeros: absmax 0
    return x.to(dtype)


cases = [
    # name, shape, dtype, double quant, zero block, outliers
    ("f32_partial_nested", [17, 96], torch.float32, True, True, False),   # 25.5 blocks
    ("f32_plain", [17, 96], torch.float32, False, True, True),
    ("bf16_odd_nested", [7, 37], torch.bfloat16, True, False, True),     # 259 elements: odd
    ("bf16_odd_plain", [7, 37], torch.bfloat16, False, True, False),
    ("bf16_many_blocks_nested", [150, 130], torch.bfloat16, True, True, True),  # 305 blocks: 2 nested
    ("f32_tiny_nested", [5], torch.float32, True, False, False),
]

tensors, meta = {}, {"bitsandbytes": bitsandbytes.__version__, "torch": torch.__version__,
                     "nf4_code": F.get_4bit_type("nf4", device="cpu").view(torch.int32).tolist(),
                     "cases": []}
for name, shape, dtype, nested, zero_block, outliers in cases:
    x = weights(shape, dtype, zero_block, outliers)
    packed, state = F.quantize_4bit(x, blocksize=64, compress_statistics=nested, quant_type="nf4")
    deq = F.dequantize_4bit(packed, state, quant_type="nf4")
    assert deq.dtype == dtype and list(deq.shape) == shape
    tensors[f"{name}.input"] = x.contiguous()
    tensors[f"{name}.packed"] = packed.reshape(-1).contiguous()
    tensors[f"{name}.absmax"] = state.absmax.contiguous()
    tensors[f"{name}.dequantized"] = deq.contiguous()
    case = {"name": name, "shape": shape, "dtype": str(dtype).removeprefix("torch."),
            "double_quant": nested, "blocksize": state.blocksize}
    if nested:
        tensors[f"{name}.nested_absmax"] = state.state2.absmax.contiguous()
        tensors[f"{name}.nested_offset"] = state.offset.reshape(1).float().contiguous()
        case["nested_blocksize"] = state.state2.blocksize
        plain = F.quantize_4bit(x, blocksize=64, compress_statistics=False, quant_type="nf4")[1].absmax
        case["native_nested_codes_differing"] = nested_native_disagreements(plain, state.offset)
    absmax = F.dequantize_blockwise(state.absmax, state.state2) + state.offset if nested else state.absmax
    case["native_dequantized_differing"] = native_dequantize_disagreements(packed, absmax, shape, dtype)
    meta["cases"].append(case)

save_file(tensors, OUT + ".safetensors")
with open(OUT + ".json", "w") as f:
    json.dump(meta, f, indent=1)
print({c["name"]: (c.get("native_nested_codes_differing"), c["native_dequantized_differing"]) for c in meta["cases"]})
