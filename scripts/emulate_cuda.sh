#!/usr/bin/env bash
# Runs CUDA kernels on the CPU: extracts the prelude (bf16, or f16 with STORAGE=f16) and the named kernel files' sources from the
# Swift files into kernel.inc, compiles the emulator (it includes cuda_emulation.h) and runs it.
#   scripts/emulate_cuda.sh EMULATOR.cpp KernelFile.swift [KernelFile.swift ...] [-- emulator arguments]
# (kernel files under CUDA/Kernels)
# Needs python3 and a C++20 compiler ($CXX, else g++, else clang++).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
emulator="$1"; shift
files=(); while [ $# -gt 0 ] && [ "$1" != "--" ]; do files+=("$1"); shift; done
[ $# -gt 0 ] && shift  # the arguments after -- go to the emulator
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$here/../Sources/Swiftlet/CUDA/Kernels" "$work/kernel.inc" "${files[@]}" <<'PY'
import os, re, sys
included = set()
def swift_string(path, name):
    s = open(path).read()
    # `static let source = CUDAMultiTensor.header + """`: the multi-tensor table's C side comes first (once)
    prefix = re.search(rf'static let {name} = (?:\w+\.)?header \+ """', s)
    if prefix:
        header = "" if included else swift_string(f"{kernels}/MultiTensorKernels.swift", "header")
        included.add("header")
        return header + s[prefix.end():s.index('"""', prefix.end())].replace('\\\\', '\\')
    start = s.index(f'static let {name} = """') + len(f'static let {name} = """')
    return s[start:s.index('"""', start)].replace('\\\\', '\\')
kernels, out, files = sys.argv[1], sys.argv[2], sys.argv[3:]
def nf4_codebook():
    # NF4.codebook from Quant/NF4.swift, for the source that interpolates it
    s = open(f"{kernels}/../../Quant/NF4.swift").read()
    body = s[s.index("static let codebook: [Float] = [") + len("static let codebook: [Float] = ["):]
    return ", ".join(v.strip() + "f" for v in body[:body.index("]")].split(",") if v.strip())
def dynamic_maps(source):
    # AdamW8bit's code books (DynamicMap.signed/unsigned): zeros here, the emulator fills the arrays
    for kind in ("signed", "unsigned"):
        source = source.replace(f"\\(literals(DynamicMap.{kind}))", f"0 /* DynamicMap.{kind}: the emulator fills it */")
    return source
def interpolated(source):
    marker = '\\(NF4.codebook.map { String(format: "%.9ef", Double($0)) }.joined(separator: ", "))'
    return source.replace(marker, nf4_codebook()) if marker in source else source
def without_ptx(source):
    # Functions whose body is inline PTX (asm) are left out: the emulator defines them in C++
    # (cuda_emulation.h: ldmatrix, mma.sync, cvt, cp.async as the PTX ISA specifies them).
    out, i = [], 0
    while (start := source.find("__device__ __forceinline__", i)) >= 0:
        body, depth, j, quoted = source.index("{", start), 0, source.index("{", start), False
        while True:
            c = source[j]
            if c == '"': quoted = not quoted
            elif not quoted and c == "{": depth += 1
            elif not quoted and c == "}":
                depth -= 1
                if depth == 0: break
            j += 1
        keep = re.search(r"\basm\b", source[body:j]) is None
        out.append(source[i:j + 1] if keep else source[i:start])
        i = j + 1
    return "".join(out) + source[i:]
def dynamic_shared(source):
    # extern __shared__ arrays (dynamic shared memory) become one global buffer of the emulator's size
    return re.sub(r"extern __shared__ __align__\((\d+)\) (\w+) (\w+)\[\];",
                  r"alignas(\1) \2 \3[EMULATED_DYNAMIC_SHARED_BYTES / sizeof(\2)];", source)
def flash_tiles(source, swift):
    # CUDAFlashAttention.tiles as a C++ table; the emulator instantiates the templates with it
    if "\\(instantiations)" not in source: return source
    rows = re.findall(r"(\d+): Tiles\(keyTile: (\d+), queryTile: (\d+), stages: (\d+)\)", swift)
    table = ", ".join("{%s, %s, %s, %s}" % r for r in rows)
    return source.replace("\\(instantiations)", "struct FlashTiles { int headDim, keyTile, queryTile, stages; };\n"
                          f"constexpr FlashTiles flashTiles[] = {{{table}}};")
def kernel_source(f):
    path = f"{kernels}/{f}"
    source = dynamic_maps(interpolated(swift_string(path, "source")))
    return flash_tiles(dynamic_shared(without_ptx(source)), open(path).read())
storage = os.environ.get("STORAGE", "bf16")
parts = [without_ptx(swift_string(f"{kernels}/CUDACommon.swift", storage)), swift_string(f"{kernels}/CUDACommon.swift", "common"),
         swift_string(f"{kernels}/CUDAReductions.swift", "reductions")]
parts += [kernel_source(f) for f in files]
open(out, "w").write("".join(parts))
PY
compiler="${CXX:-$(command -v g++ || command -v clang++)}"
storage_flag=(); [ "${STORAGE:-bf16}" = f16 ] && storage_flag=(-DEMULATED_STORAGE_F16)
"$compiler" -std=c++20 -O1 -pthread "${storage_flag[@]}" -I"$work" -I"$here" "$here/$emulator" -o "$work/emulate"
"$work/emulate" "$@"
