#!/usr/bin/env bash
# Every GPU check after a round of merges, in one device call (about 7 minutes on the H200): the doctor
# with the fixtures, the SFT/DPO/ORPO/generation smoke test, NCCL at world size 1, then side by side
# with the baselines in the same call: DPO steps, decode speed, and the TinyLlama LoRA step with and
# without checkpointing. Carry bench/bin and bench/carry (hf_peft.py). Logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/swiftlet-gpu-checks}
mkdir -p "$out"
. bench/binary.sh
section() { echo "== $1 ($(date +%T))"; }
section doctor
timeout 240 $swiftlet doctor --fixtures Tests/SwiftletTests/Fixtures > "$out/doctor.log" 2>&1
grep -E "FAIL|all checks|SOME|^  PASS  (DPO|ORPO)" "$out/doctor.log"
section smoke
timeout 120 bash bench/dpo-smoke.sh > "$out/smoke.log" 2>&1; echo "smoke rc=$?"; grep -E "^done|generate:" "$out/smoke.log"
section nccl
OUT=$out/nccl timeout 120 bash bench/nccl-check.sh > "$out/nccl.log" 2>&1; echo "nccl rc=$?"; grep -E "bitwise|FAIL|libnccl" "$out/nccl.log"
section dpo-bench
OUT=$out/dpo REPEATS=1 timeout 200 bash bench/dpo-bench.sh > "$out/dpo-bench.log" 2>&1; tail -4 "$out/dpo-bench.log"
section generate-bench
OUT=$out/gen RUNS=3 timeout 200 bash bench/generate-bench.sh > "$out/generate-bench.log" 2>&1; grep RESULT "$out/generate-bench.log"
section sft-bench
{
  for gc in 1 0; do
    timeout 100 python3 bench/carry/hf_peft.py --arch tinyllama --steps 6 --gc $gc 2>/dev/null | grep RESULT
    mode=off; [ $gc = 1 ] && mode=on
    timeout 100 $swiftlet bench --arch tinyllama --steps 6 --device cuda --gradient-checkpointing $mode 2>&1 | grep RESULT
  done
  timeout 100 python3 bench/carry/hf_peft.py --arch tinyllama --steps 6 --gc 1 --fourbit 1 2>/dev/null | grep RESULT
  timeout 100 $swiftlet bench --arch tinyllama --steps 6 --device cuda --load-in-4bit --gradient-checkpointing on 2>&1 | grep RESULT
} | tee "$out/sft-bench.log"
section end
