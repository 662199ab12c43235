"""Causal attention in PyTorch on the GPU, forward and backward, per SDPA backend: the yardstick for
Swiftlet's attention kernels (the doctor times those at the same geometries).

    python3 bench/attention_baseline.py            # prints one RESULT line per backend and geometry

FLOPs are counted as the doctor counts them: causal forward 2·2·T²·d·H·B / 2, backward 2.5x that.
GQA: K and V are repeated to the query heads for the backends that need it (not timed).
"""
import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION}


def timed(fn, repeats):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    geometries = [(1, 2048, 32, 8, 128), (1, 2048, 32, 4, 64), (2, 2048, 32, 4, 64), (2, 2048, 32, 32, 128),
                  (1, 8192, 32, 8, 128)]
    for batch, seq, heads, kv_heads, dim in geometries:
        flops = 2 * 2 * seq * seq * dim * heads * batch / 2
        gen = torch.Generator(device="cuda").manual_seed(0)
        q = torch.randn(batch, heads, seq, dim, device="cuda", dtype=torch.bfloat16, generator=gen)
        k = torch.randn(batch, kv_heads, seq, dim, device="cuda", dtype=torch.bfloat16, generator=gen)
        v = torch.randn(batch, kv_heads, seq, dim, device="cuda", dtype=torch.bfloat16, generator=gen)
        k, v = (t.repeat_interleave(heads // kv_heads, dim=1) for t in (k, v))
        q, k, v = (t.requires_grad_() for t in (q, k, v))
        dout = torch.randn_like(q)
        for name, backend in BACKENDS.items():
            try:
                with sdpa_kernel(backend):
                    forward = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
                    out = forward()
                    fwd_ms = timed(forward, args.repeats)
                    backward = lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)
                    bwd_ms = timed(backward, args.repeats)
                print(f"RESULT attention backend={name} batch={batch} seq={seq} heads={heads}/{kv_heads} d={dim} "
                      f"fwd_ms={fwd_ms:.3f} fwd_tflops={flops / fwd_ms / 1e9:.1f} "
                      f"bwd_ms={bwd_ms:.3f} bwd_tflops={2.5 * flops / bwd_ms / 1e9:.1f}", flush=True)
            except Exception as error:  # a backend that refuses this geometry
                print(f"RESULT attention backend={name} batch={batch} seq={seq} d={dim} refused: "
                      f"{str(error).splitlines()[0][:120]}", flush=True)


if __name__ == "__main__":
    main()
