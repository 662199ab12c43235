#!/usr/bin/env bash
# A short GPU check after a kernel change, for when device time is scarce: doctor (with the fixtures),
# the exactness comparison with PyTorch + PEFT, then HF + PEFT and Swiftlet side by side (bf16 and
# QLoRA, checkpointing off and on) and one profiled Swiftlet step. Carry bench/bin and bench/carry
# (hf_peft.py; bnb/ from ../shared/bench/get-bitsandbytes.sh for QLoRA). Logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/swiftlet-quick}
mkdir -p "$out"
. bench/binary.sh
arch=${ARCH:-tinyllama}; steps=${STEPS:-6}
timeout 200 $swiftlet doctor --fixtures Tests/SwiftletTests/Fixtures > "$out/doctor.log" 2>&1
grep -E "FAIL|all checks|SOME|^LoRA|time  (kernels: )?(down|up-add|gradient)" "$out/doctor.log"
PYTHONUNBUFFERED=1 timeout 200 python3 scripts/compare_hf_gpu.py --swiftlet $swiftlet --arch $arch \
    --work /tmp/swiftlet-compare > "$out/compare.log" 2>&1
grep RESULT "$out/compare.log"
{
  for four in 0 1; do
    flag=(); [ $four = 1 ] && flag=(--load-in-4bit)
    timeout 200 python3 bench/carry/hf_peft.py --arch $arch --steps $steps --gc 1 --fourbit $four 2>/dev/null | grep RESULT
    [ $four = 0 ] && timeout 200 python3 bench/carry/hf_peft.py --arch $arch --steps $steps --gc 0 2>/dev/null | grep RESULT
    timeout 200 $swiftlet bench --arch $arch --steps $steps --device cuda "${flag[@]}" --gradient-checkpointing on 2>&1 | grep RESULT
    timeout 200 $swiftlet bench --arch $arch --steps $steps --device cuda "${flag[@]}" --profile > "$out/profile-$four.log" 2>&1
    grep RESULT "$out/profile-$four.log"
  done
} | tee "$out/bench.log"
grep -v RESULT "$out/profile-0.log" | head -30
