#!/usr/bin/env bash
# Issue 11's real-size lines: each family's preset beside its HF + PEFT baseline in the same call
# (random weights, 2 × 2048, LoRA r 16, checkpointing on; the mixtures in 4-bit). ARCHS picks them
# (default: every family preset); STEPS (4) the timed steps. Carry bench/bin and bench/carry (hf_peft.py,
# bnb). The mixtures run three times: their experts together (the default), one by one (SWIFTLET_MOE_GROUPED=0),
# and with their frozen GEMMs as one cuBLAS grouped GEMM (SWIFTLET_GROUPED_GEMM=1); NO_AB=1 skips the last two, the Gemmas' run with the d-256 dK/dV's pair split (SWIFTLET_FLASH_PAIR_SPLIT=1), and Phi-3's and Gemma 3's on cuDNN's attention (SWIFTLET_CUDNN_EXTENDED=1). NO_DOCTOR=1 skips the experts' doctor check; DEADLINE (s) starts no arch past it. Prints RESULT lines; logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/swiftlet-families}
mkdir -p "$out"
. bench/binary.sh
steps=${STEPS:-4}
# The mixtures' experts run together (one op a product over their row blocks): bit for bit against one by one first.
if [ -z "${NO_DOCTOR:-}" ]; then
  echo "== doctor --only experts ($(date +%T))"
  timeout 120 $swiftlet doctor --only experts 2>&1 | tee "$out/doctor-experts.log" | grep -E "PASS|FAIL|rror" | cut -c1-220
fi
start=$(date +%s)
for arch in ${ARCHS:-llama3-8b qwen3-8b phi3-mini gemma2-9b gemma3-4b mixtral-8x7b qwen3-30b-a3b}; do
  if [ -n "${DEADLINE:-}" ] && [ $(( $(date +%s) - start )) -gt "$DEADLINE" ]; then echo "== $arch: not run (past DEADLINE)"; continue; fi
  echo "== $arch ($(date +%T))"
  base=bench/carry/hf_peft.py; case $arch in qwen3-*|phi3-*|gemma*|mixtral-*) base=bench/hf_peft_family.py ;; esac
  four=0; case $arch in mixtral-*|qwen3-30b-*) four=1 ;; esac
  flag=(); [ $four = 1 ] && flag=(--load-in-4bit)
  timeout 400 python3 $base --arch "$arch" --steps $steps --gc 1 --fourbit $four 2>"$out/hf-$arch.err" | grep RESULT
  timeout 400 $swiftlet bench --arch "$arch" --steps $steps --device cuda --gradient-checkpointing on "${flag[@]}" 2>&1 \
      | tee "$out/swiftlet-$arch.log" | grep -E "RESULT|rror"
  if [ "${arch#gemma}" != "$arch" ] && [ -z "${NO_AB:-}" ]; then
    # head dim 256's dK/dV with each warp pair's scores split over d (opt-in until measured)
    echo "== $arch, SWIFTLET_FLASH_PAIR_SPLIT=1"
    SWIFTLET_FLASH_PAIR_SPLIT=1 timeout 400 $swiftlet bench --arch "$arch" --steps $steps --device cuda \
        --gradient-checkpointing on 2>&1 | grep -E "RESULT|rror"
  fi
  case $arch in phi3-*|gemma3-*) if [ -z "${NO_AB:-}" ]; then
    # head dims 96 and 256 and windows shorter than the row on cuDNN's fused attention (opt-in until measured)
    echo "== $arch, SWIFTLET_CUDNN_EXTENDED=1"
    SWIFTLET_CUDNN_EXTENDED=1 timeout 400 $swiftlet bench --arch "$arch" --steps $steps --device cuda \
        --gradient-checkpointing on 2>&1 | grep -E "RESULT|rror|cuDNN"
  fi ;; esac
  if [ $four = 1 ] && [ -z "${NO_AB:-}" ]; then
    for ab in SWIFTLET_MOE_GROUPED=0 SWIFTLET_GROUPED_GEMM=1; do
      echo "== $arch, $ab"
      env $ab timeout 400 $swiftlet bench --arch "$arch" --steps $steps --device cuda --gradient-checkpointing on \
          "${flag[@]}" 2>&1 | grep -E "RESULT|rror"
    done
  fi
done 2>&1 | tee "$out/families.log"
