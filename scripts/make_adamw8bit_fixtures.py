"""Writes Tests/SwiftletTests/Fixtures/bnb/adamw8bit_cpu.safetensors: bitsandbytes' AdamW8bit run on
the CPU for 5 steps on three tensors, for AdamW8bitTests (layout: Sources/Swiftlet/Train/AdamW8bitReplay.swift).

- "small" (3000 elements): under min_8bit_size, bnb's 32-bit path.
- "large" (5000 elements): 8-bit blockwise state, the last block partial (5000 = 19·256 + 136).
- "lora_a" (4096 elements): an all-zero gradient on step 1, as LoRA A gets (B starts at zero).

Note bnb's CPU backend is not its CUDA kernel (weight decay before the step, nearest-code quantization,
absmax clamped to ≥ 1e-38); scripts/check_adamw8bit_bnb.py records the CUDA kernel on a GPU.
Needs torch and bitsandbytes (the safetensors file is written here, so the GPU machine needs no
safetensors package). Run from the repository root:
python scripts/make_adamw8bit_fixtures.py"""
import json
import struct

import bitsandbytes
import torch

HYPER = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)


def save_file(tensors, path, metadata):
    """A safetensors file: 8-byte header length, JSON header (metadata, then tensors by name), data."""
    dtypes = {torch.float32: "F32", torch.uint8: "U8"}
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        data = t.numpy().tobytes()
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def record(device, sizes, path, steps=5, seed=0, zero_first_gradient=("lora_a",)):
    """Runs bnb.optim.AdamW8bit on `device` over tensors {name: numel} and saves initial values,
    per-step gradients, and bnb's parameters and state after each step to `path` (safetensors)."""
    generator = torch.Generator().manual_seed(seed)
    params, tensors = {}, {}
    for name, n in sizes.items():
        initial = torch.randn(n, generator=generator) * 0.1
        tensors[name + ".param0"] = initial.clone()
        params[name] = torch.nn.Parameter(initial.clone().to(device))
    optimizer = bitsandbytes.optim.AdamW8bit(list(params.values()), **HYPER)
    for step in range(1, steps + 1):
        for name, p in params.items():
            g = torch.randn(p.numel(), generator=generator) * 0.01
            if step == 1 and name in zero_first_gradient:
                g.zero_()
            tensors[f"{name}.grad{step}"] = g.clone()
            p.grad = g.to(device)
        optimizer.step()
        # bnb's parameters and state after every step, so each step can be checked on its own.
        for name, p in params.items():
            tensors[f"{name}.param.{step}"] = p.detach().cpu().clone()
            state = optimizer.state[p]
            for key in ("state1", "state2", "absmax1", "absmax2"):
                if key in state:
                    tensors[f"{name}.{key}.{step}"] = state[key].detach().cpu().clone().contiguous()
    f32 = lambda x: repr(float(torch.tensor(x, dtype=torch.float32)))
    metadata = {
        "names": ",".join(sizes), "steps": str(steps), "lr": f32(HYPER["lr"]), "beta1": f32(HYPER["betas"][0]),
        "beta2": f32(HYPER["betas"][1]), "eps": f32(HYPER["eps"]), "weight_decay": f32(HYPER["weight_decay"]),
        "bitsandbytes": bitsandbytes.__version__, "torch": torch.__version__, "device": str(device),
    }
    save_file(tensors, path, metadata=metadata)
    return tensors


if __name__ == "__main__":
    record("cpu", {"small": 3000, "large": 5000, "lora_a": 4096},
           "Tests/SwiftletTests/Fixtures/bnb/adamw8bit_cpu.safetensors")
