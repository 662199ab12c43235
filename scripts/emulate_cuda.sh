#!/usr/bin/env bash
# Runs CUDA kernels on the CPU: extracts the prelude (bf16) and the named kernel files' sources from the
# Swift files into kernel.inc, compiles the emulator (it includes cuda_emulation.h) and runs it.
#   scripts/emulate_cuda.sh EMULATOR.cpp KernelFile.swift [KernelFile.swift ...]   (files under CUDA/Kernels)
# Needs g++ with C++20.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
emulator="$1"; shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$here/../Sources/Swiftlet/CUDA/Kernels" "$work/kernel.inc" "$@" <<'PY'
import sys
def swift_string(path, name):
    s = open(path).read()
    start = s.index(f'static let {name} = """') + len(f'static let {name} = """')
    return s[start:s.index('"""', start)].replace('\\\\', '\\')
kernels, out, files = sys.argv[1], sys.argv[2], sys.argv[3:]
parts = [swift_string(f"{kernels}/CUDACommon.swift", "bf16"), swift_string(f"{kernels}/CUDACommon.swift", "common"),
         swift_string(f"{kernels}/CUDAReductions.swift", "reductions")]
parts += [swift_string(f"{kernels}/{f}", "source") for f in files]
open(out, "w").write("".join(parts))
PY
g++ -std=c++20 -O1 -pthread -I"$work" -I"$here" "$here/$emulator" -o "$work/emulate"
"$work/emulate"
