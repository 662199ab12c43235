"""Routes bitsandbytes' CPU ops that Swiftlet is checked against to bitsandbytes' own pure-torch
reference kernels (its "default" backend, reached by redispatching to
CompositeExplicitAutograd), which compute what its CUDA kernels compute.

Why: in bitsandbytes 0.50.2 the native CPU library
  - quantize_blockwise (the 8-bit step of double quantization) finds levels with an approximate
    reciprocal, so values within ~1e-5 of a midpoint can take the other neighbour;
  - dequantize_4bit returns wrong values for some shapes (e.g. [17, 96]: max error 0.1 where the
    reference gives 0.019, on an AVX-512 machine).
Import this module before quantizing or dequantizing on the CPU."""
import bitsandbytes  # noqa: F401  (defines the ops)
import torch

REFERENCE = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)
_OPS = ["quantize_blockwise", "dequantize_4bit"]


def _route(name):
    op = getattr(torch.ops.bitsandbytes, name).default
    torch.library.register_kernel(f"bitsandbytes::{name}", "cpu", lambda *args: op.redispatch(REFERENCE, *args))


for _name in _OPS:
    _route(_name)


def reference(name, *args):
    """Calls the reference kernel of op `name` directly."""
    return getattr(torch.ops.bitsandbytes, name).default.redispatch(REFERENCE, *args)
