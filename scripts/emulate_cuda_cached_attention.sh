#!/usr/bin/env bash
# Runs the CUDA cached-attention kernels on the CPU (emulate_cuda_cached_attention.cpp) against attention
# in double on decode, prefill, GQA, window, padding, key-split and softcap geometries. Needs g++ with C++20.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$here/../Sources/Swiftlet/CUDA/Kernels" "$work/kernel.inc" <<'PY'
import sys
def swift_string(path, name):
    s = open(path).read()
    start = s.index(f'static let {name} = """') + len(f'static let {name} = """')
    return s[start:s.index('"""', start)].replace('\\\\', '\\')
kernels, out = sys.argv[1], sys.argv[2]
parts = [swift_string(f"{kernels}/CUDACommon.swift", "bf16"), swift_string(f"{kernels}/CUDACommon.swift", "common"),
         swift_string(f"{kernels}/CUDAReductions.swift", "reductions"),
         swift_string(f"{kernels}/CachedAttentionKernels.swift", "source")]
open(out, "w").write("".join(parts))
PY
g++ -std=c++20 -O1 -pthread -I"$work" -I"$here" "$here/emulate_cuda_cached_attention.cpp" -o "$work/emulate"
"$work/emulate"
