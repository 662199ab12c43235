#!/usr/bin/env bash
# The longest row that trains within a memory budget, llama2-7b QLoRA, bsz 1, gradient checkpointing:
# HF + PEFT (bench/longest_seq_hf.py, one process trying longer rows) and Swiftlet (one process per
# length, checkpoint offload, one untimed-warm-up-free step: only the peak counts). A length fits if
# its peak allocated memory is within the budget. Carry bench/bin and bench/carry (bnb). Logs to $OUT.
#   BUDGET (GiB, 16), HF_SEQS, SWIFTLET_SEQS (comma-separated, ascending), ARCH (llama2-7b)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/swiftlet-longest}
mkdir -p "$out"
. bench/binary.sh
budget=${BUDGET:-16}; arch=${ARCH:-llama2-7b}
PYTHONUNBUFFERED=1 timeout 400 python3 bench/longest_seq_hf.py --arch $arch --fourbit 1 --budget-gib $budget \
    --seqs ${HF_SEQS:-8192,12288,16384,20480,24576} 2>&1 | grep -E "^(SEQ|RESULT)" | tee "$out/longest-hf.log"
longest=0
for seq in $(echo ${SWIFTLET_SEQS:-32768,65536} | tr , ' '); do
  line=$(timeout 300 $swiftlet bench --arch $arch --batch-size 1 --seq $seq --load-in-4bit --gradient-checkpointing offload \
      --steps 1 --warmup-steps 0 --device cuda 2>&1 | tee -a "$out/longest-swiftlet.log" | grep RESULT)
  echo "$line"
  peak=$(echo "$line" | python3 -c "import json,sys; l=sys.stdin.read(); print(json.loads(l.split('RESULT',1)[1])['peak_gib'] if 'RESULT' in l else 1e9)")
  python3 -c "import sys; sys.exit(0 if $peak <= $budget else 1)" || break
  longest=$seq
done
echo "RESULT {\"system\": \"swiftlet-cuda\", \"arch\": \"$arch\", \"fourbit\": 1, \"bsz\": 1, \"gc\": 2, \"budget_gib\": $budget, \"longest_seq\": $longest}" | tee -a "$out/longest-swiftlet.log"
