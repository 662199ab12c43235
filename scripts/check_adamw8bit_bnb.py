"""Checks our AdamW8bit against bitsandbytes' CUDA kernel, on a machine with a GPU.

Runs bnb.optim.AdamW8bit on CUDA for 5 steps on tensors of 3000 (32-bit state), 5000 (8-bit, last
block partial) and 65536 elements (8-bit, all-zero first gradient as LoRA A gets), writes the run to
a safetensors fixture (layout: Sources/Swiftlet/Train/AdamW8bitReplay.swift), then has
`swiftlet doctor --adamw8bit-fixture FILE` replay it on our CPU and CUDA backends and prints
PASS or FAIL.

Each step is checked from bnb's own state after the step before (see AdamW8bitReplay.swift).
Bounds: parameters within 1e-5 relative (of the largest), f32 moments and absmax within 1e-5,
8-bit codes never more than one apart and equal in >= 99.9% of entries on CUDA (same intrinsics as bnb;
a code on a rounding boundary may still flip through FMA contraction) and >= 99% on the CPU (exact
division and powf instead of __fdividef and __powf), all-zero blocks coded as bnb's kernel codes them.
The free-running trajectory's final parameter error is printed, not bounded.

Usage: python scripts/check_adamw8bit_bnb.py .build/release/swiftlet [--fixture PATH]"""
import argparse
import json
import subprocess
import sys

import torch

from make_adamw8bit_fixtures import record


def problems(result, code_fraction):
    found = []
    if result["paramMaxRelative"] > 1e-5:
        found.append(f"parameters off by {result['paramMaxRelative']:.2e}")
    if result["quantized"]:
        mismatches = result["state1Mismatches"] + result["state2Mismatches"]
        if mismatches > (1 - code_fraction) * 2 * result["count"]:
            found.append(f"{mismatches} of {2 * result['count']} codes differ")
        if result["maxCodeDistance"] > 1:
            found.append(f"a code {result['maxCodeDistance']} apart")
        if result["zeroBlockCodeMismatches"]:
            found.append(f"{result['zeroBlockCodeMismatches']} codes of all-zero blocks differ (bnb's kernel: 255 and 0)")
        if result["absmaxMaxRelative"] > 1e-5:
            found.append(f"absmax off by {result['absmaxMaxRelative']:.2e}")
    else:
        for key in ("state1MaxRelative", "state2MaxRelative"):
            if result[key] > 1e-5:
                found.append(f"{key} {result[key]:.2e}")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("swiftlet", help="the swiftlet binary")
    parser.add_argument("--fixture", default="adamw8bit_cuda.safetensors", help="where to write the bnb run")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("FAIL: no CUDA GPU for bitsandbytes")
    record("cuda", {"small": 3000, "large": 5000, "lora_a": 65536}, args.fixture)
    run = subprocess.run([args.swiftlet, "doctor", "--adamw8bit-fixture", args.fixture], capture_output=True, text=True)
    line = next((l for l in run.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        print(run.stdout, run.stderr)
        sys.exit("FAIL: swiftlet printed no RESULT line")
    result = json.loads(line[len("RESULT "):])
    failures = []
    if "cuda" not in result:
        failures.append(f"our CUDA backend did not run: {result.get('cuda_error')}")
    for backend, fraction in (("cpu", 0.99), ("cuda", 0.999)):
        for r in result.get(backend, []):
            found = problems(r, fraction)
            failures += [f"{backend} {r['name']}: {p}" for p in found]
            print(f"{backend:4} {r['name']:7} n={r['count']:6} {'8-bit' if r['quantized'] else '32-bit'}  "
                  f"param {r['paramMaxRelative']:.2e}  code mismatches {r['state1Mismatches']}/{r['state2Mismatches']} "
                  f"(max distance {r['maxCodeDistance']})  state {r['state1MaxRelative']:.2e}/{r['state2MaxRelative']:.2e}  "
                  f"absmax {r['absmaxMaxRelative']:.2e}  trajectory param {r['trajectoryParamMaxRelative']:.2e}  "
                  f"{'ok' if not found else 'FAIL'}")
    print("\n".join(failures))
    print("PASS" if not failures else "FAIL")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
