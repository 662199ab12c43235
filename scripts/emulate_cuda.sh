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
def nf4_codebook():
    # NF4.codebook from Quant/NF4.swift, for the source that interpolates it
    s = open(f"{kernels}/../../Quant/NF4.swift").read()
    body = s[s.index("static let codebook: [Float] = [") + len("static let codebook: [Float] = ["):]
    return ", ".join(v.strip() + "f" for v in body[:body.index("]")].split(",") if v.strip())
def interpolated(source):
    marker = '\\(NF4.codebook.map { String(format: "%.9ef", Double($0)) }.joined(separator: ", "))'
    return source.replace(marker, nf4_codebook()) if marker in source else source
parts = [swift_string(f"{kernels}/CUDACommon.swift", "bf16"), swift_string(f"{kernels}/CUDACommon.swift", "common"),
         swift_string(f"{kernels}/CUDAReductions.swift", "reductions")]
parts += [interpolated(swift_string(f"{kernels}/{f}", "source")) for f in files]
open(out, "w").write("".join(parts))
PY
g++ -std=c++20 -O1 -pthread -I"$work" -I"$here" "$here/$emulator" -o "$work/emulate"
"$work/emulate"
