#!/usr/bin/env bash
# Decode benchmark on the GPU machine: transformers' greedy generate (bench/generate_baseline.py) and
# `swiftlet bench --generate` side by side on random weights of the same shape, batch 1, a prompt of
# PROMPT tokens and NEW new tokens; then one profiled Swiftlet generation. Carry bench/bin (the binary,
# from bench/build.sh). Logs go to $OUT (default /tmp/swiftlet-generate).
#   ARCH=tinyllama PROMPT=512 NEW=128 RUNS=5 bench/generate-bench.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/swiftlet-generate}
mkdir -p "$out"
. bench/binary.sh
arch=${ARCH:-tinyllama}; prompt=${PROMPT:-512}; new=${NEW:-128}; runs=${RUNS:-5}
{
  for p in $prompt 2048; do
    timeout 300 python3 bench/generate_baseline.py --arch $arch --prompt $p --new $new --runs $runs 2>"$out/hf-$p.err" | grep RESULT
    timeout 300 $swiftlet bench --generate --arch $arch --batch-size 1 --seq $p --new-tokens $new --steps $runs \
        --device cuda 2>"$out/swiftlet-$p.err" | grep RESULT
  done
  timeout 300 $swiftlet bench --generate --arch $arch --batch-size 1 --seq $prompt --new-tokens $new --steps $runs \
      --device cuda --load-in-4bit 2>"$out/swiftlet-4bit.err" | grep RESULT
} | tee "$out/generate-bench.log"
timeout 300 $swiftlet bench --generate --arch $arch --batch-size 1 --seq $prompt --new-tokens $new --steps 1 \
    --device cuda --profile > "$out/generate-profile.log" 2>&1
grep -v RESULT "$out/generate-profile.log" | head -30
