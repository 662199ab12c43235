#!/usr/bin/env python3
"""Reference values for Tests/SwiftletTests/{OptimizerTests,ScheduleTests}.swift.

Runs the real torch.optim.AdamW / torch.optim.SGD (CPU, float32, foreach=False),
transformers.get_scheduler and torch.nn.utils.clip_grad_norm_, and prints Swift array
literals that are pasted into the tests. Run with the fixtures venv:

    python scripts/make_optimizer_fixtures.py

(generated with torch 2.15 and transformers 5.24). Hyperparameters are rounded to float32
before they are handed to torch, so torch's Python-float scalars equal Swift's widened `Float`
hyperparameters bit for bit.
"""
import math
import numpy as np
import torch
import transformers
from transformers import get_scheduler

N = 10
STEPS = 5


def f32(x):
    return float(np.float32(x))


def lit(xs):
    """Swift literal of float32 values: shortest decimal that round-trips as Float."""
    return "[" + ", ".join(np.format_float_scientific(np.float32(x), unique=True, trim="-")
                           if x != 0 else "0" for x in xs) + "]"


def lit64(xs):
    return "[" + ", ".join(repr(float(x)) for x in xs) + "]"


torch.manual_seed(1234)
params0 = torch.randn(N, dtype=torch.float32)
grads = [torch.randn(N, dtype=torch.float32) for _ in range(STEPS)]

print(f"// torch {torch.__version__}, transformers {transformers.__version__}")
print(f"static let params0: [Float] = {lit(params0.tolist())}")
print("static let grads: [[Float]] = [")
for g in grads:
    print(f"    {lit(g.tolist())},")
print("]")


def run(make_opt, name, state_keys=()):
    p = params0.clone().requires_grad_(True)
    opt = make_opt([p])
    print(f"// {name}: parameter after each step" + (f"; then {', '.join(state_keys)} after the last" if state_keys else ""))
    print(f"static let {name}: [[Float]] = [")
    for g in grads:
        p.grad = g.clone()
        opt.step()
        print(f"    {lit(p.detach().tolist())},")
    print("]")
    for k in state_keys:
        print(f"static let {name}_{k}: [Float] = {lit(opt.state[p][k].tolist())}")


# AdamW with weight decay (and a second config with beta1 <= 0.5 to hit lerp's other branch).
a1 = dict(lr=f32(1e-2), betas=(f32(0.9), f32(0.999)), eps=f32(1e-8), weight_decay=f32(0.1))
print(f"// adamW1 hyper: {a1}")
run(lambda ps: torch.optim.AdamW(ps, foreach=False, **a1), "adamW1", ("exp_avg", "exp_avg_sq"))
a2 = dict(lr=f32(3e-3), betas=(f32(0.3), f32(0.95)), eps=f32(1e-6), weight_decay=f32(0.01))
print(f"// adamW2 hyper: {a2}")
run(lambda ps: torch.optim.AdamW(ps, foreach=False, **a2), "adamW2", ("exp_avg", "exp_avg_sq"))

# SGD: plain with weight decay, and with momentum + weight decay.
s1 = dict(lr=f32(0.1), weight_decay=f32(0.01))
print(f"// sgdPlain hyper: {s1}")
run(lambda ps: torch.optim.SGD(ps, foreach=False, **s1), "sgdPlain")
s2 = dict(lr=f32(0.05), momentum=f32(0.9), weight_decay=f32(0.01))
print(f"// sgdMomentum hyper: {s2}")
run(lambda ps: torch.optim.SGD(ps, foreach=False, **s2), "sgdMomentum", ("momentum_buffer",))

# clip_grad_norm_ on two small gradient tensors.
torch.manual_seed(99)
ga = torch.randn(6) * 3
gb = torch.randn(4) * 3
print(f"static let clipA: [Float] = {lit(ga.tolist())}")
print(f"static let clipB: [Float] = {lit(gb.tolist())}")
for max_norm, name in [(1.0, "clip1"), (100.0, "clip100")]:
    pa = torch.zeros(6, requires_grad=True)
    pb = torch.zeros(4, requires_grad=True)
    pa.grad = ga.clone()
    pb.grad = gb.clone()
    total = torch.nn.utils.clip_grad_norm_([pa, pb], max_norm)
    print(f"// max_norm {max_norm}: total norm (float32) and clipped grads")
    print(f"static let {name}Total: Float = {lit([total.item()])[1:-1]}")
    print(f"static let {name}A: [Float] = {lit(pa.grad.tolist())}")
    print(f"static let {name}B: [Float] = {lit(pb.grad.tolist())}")

# Schedules: warmup 3, total 10, lr read before each scheduler.step() (what the optimizer used).
BASE_LR = 1e-3
for kind in ["constant", "constant_with_warmup", "linear", "cosine"]:
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=BASE_LR)
    sch = get_scheduler(kind, opt, num_warmup_steps=3, num_training_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(sch.get_last_lr()[0])
        opt.step()
        sch.step()
    print(f'"{kind}": {lit64(lrs)},')

# Warmup steps from a ratio, via TrainingArguments.get_warmup_steps (warmup_steps < 1 is a ratio
# in transformers 5; older versions used warmup_ratio).
cases = [(0.1, 30), (0.03, 1000), (0.05, 7), (0.0, 10), (0.1, 10), (0.07, 100)]
out = []
for ratio, total in cases:
    try:
        args = transformers.TrainingArguments(output_dir="/tmp/swiftlet-fixtures", warmup_steps=ratio, report_to=[])
    except TypeError:
        args = transformers.TrainingArguments(output_dir="/tmp/swiftlet-fixtures", warmup_ratio=ratio, report_to=[])
    out.append(f"({ratio}, {total}, {args.get_warmup_steps(total)})")
print("static let warmupCases: [(ratio: Double, total: Int, steps: Int)] = [" + ", ".join(out) + "]")
