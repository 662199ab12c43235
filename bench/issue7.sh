#!/usr/bin/env bash
# The rows of issue 7's table, each Swiftlet configuration beside its HF + PEFT baseline in the same
# call (random weights, 2 × 2048 tokens, LoRA r 16 on all seven projections), then the table with the ratios
# and targets (bench/issue7_table.py). ROWS picks groups:
# tiny (TinyLlama bf16 and QLoRA), tiny-gc (the same with checkpointing only: the targets' rows),
# 7b (llama2-7b bf16), 7b4 (llama2-7b QLoRA), mistral4 (mistral-7b QLoRA).
# Carry bench/bin and bench/carry (hf_peft.py, bnb). Prints RESULT lines; logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/swiftlet-issue7}
mkdir -p "$out"
. bench/binary.sh
steps=${STEPS:-6}
hf() { timeout 300 python3 bench/carry/hf_peft.py --steps $steps "$@" 2>/dev/null | grep RESULT; }
sw() { timeout 300 $swiftlet bench --steps $steps --device cuda "$@" 2>&1 | grep -E "RESULT|rror"; }
for row in ${ROWS:-tiny 7b 7b4 mistral4}; do
  echo "== $row ($(date +%T))"
  case $row in
    tiny)
      hf --arch tinyllama --gc 0; sw --arch tinyllama --gradient-checkpointing off
      hf --arch tinyllama --gc 1; sw --arch tinyllama --gradient-checkpointing on; sw --arch tinyllama --gradient-checkpointing offload
      hf --arch tinyllama --gc 1 --fourbit 1; sw --arch tinyllama --load-in-4bit --gradient-checkpointing on
      sw --arch tinyllama --load-in-4bit --gradient-checkpointing offload ;;
    tiny-gc)
      hf --arch tinyllama --gc 1; sw --arch tinyllama --gradient-checkpointing offload; sw --arch tinyllama --gradient-checkpointing on
      hf --arch tinyllama --gc 1 --fourbit 1; sw --arch tinyllama --load-in-4bit --gradient-checkpointing offload ;;
    7b)
      hf --arch llama2-7b --gc 1; sw --arch llama2-7b --gradient-checkpointing on; sw --arch llama2-7b --gradient-checkpointing offload ;;
    7b4)
      hf --arch llama2-7b --gc 1 --fourbit 1; sw --arch llama2-7b --load-in-4bit --gradient-checkpointing on
      sw --arch llama2-7b --load-in-4bit --gradient-checkpointing offload ;;
    mistral4)
      hf --arch mistral-7b --gc 1 --fourbit 1; sw --arch mistral-7b --load-in-4bit --gradient-checkpointing on
      sw --arch mistral-7b --load-in-4bit --gradient-checkpointing offload ;;
  esac
done 2>&1 | tee "$out/issue7.log"
python3 bench/issue7_table.py "$out/issue7.log" | tee "$out/issue7-table.md"
