#!/usr/bin/env bash
# The longest row that trains within a memory budget, llama2-7b QLoRA, bsz 1, gradient checkpointing:
# HF + PEFT (bench/longest_seq_hf.py, one process trying longer rows) and Swiftlet (one process per
# length, checkpoint offload, one untimed-warm-up-free step: only the peak counts). A length fits if
# its peak allocated memory (requests, as torch counts them) is within the budget. Carry bench/bin and bench/carry (bnb). Logs to $OUT.
#   BUDGET (GiB, 16), HF_SEQS, SWIFTLET_SEQS (comma-separated, ascending), ARCH (llama2-7b)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/swiftlet-longest}
mkdir -p "$out"
. bench/binary.sh
budget=${BUDGET:-16}; arch=${ARCH:-llama2-7b}
# Both sides judged alike: peak allocated bytes (torch's max_memory_allocated; our requests rounded to
# 512, peak_requested_gib) within the budget, no cap on either (CAP=1 caps torch at the budget instead).
PYTHONUNBUFFERED=1 timeout 400 python3 bench/longest_seq_hf.py --arch $arch --fourbit 1 --budget-gib $budget --cap ${CAP:-0} \
    --seqs ${HF_SEQS:-8192,10240,12288,16384,20480} 2>&1 | grep -E "^(SEQ|RESULT)" | tee "$out/longest-hf.log"
longest=0
for seq in $(echo ${SWIFTLET_SEQS:-40960,49152,57344,65536} | tr , ' '); do
  line=$(timeout 300 $swiftlet bench --arch $arch --batch-size 1 --seq $seq --load-in-4bit --gradient-checkpointing offload \
      --steps 1 --warmup-steps 0 --device cuda 2>&1 | tee -a "$out/longest-swiftlet.log" | grep RESULT)
  echo "$line"
  peak=$(echo "$line" | python3 -c "import json,sys; l=sys.stdin.read(); print(json.loads(l.split('RESULT',1)[1])['peak_requested_gib'] if 'RESULT' in l else 1e9)")
  python3 -c "import sys; sys.exit(0 if $peak <= $budget else 1)" || break
  longest=$seq
done
echo "RESULT {\"system\": \"swiftlet-cuda\", \"arch\": \"$arch\", \"fourbit\": 1, \"bsz\": 1, \"gc\": 2, \"budget_gib\": $budget, \"longest_seq\": $longest}" | tee -a "$out/longest-swiftlet.log"
