#!/usr/bin/env bash
# DPO speed on the GPU: `swiftlet bench --objective dpo` and bench/dpo_baseline.py (transformers + PEFT,
# the same random-init shapes as hf_peft.py) side by side, interleaved, REPEATS times, checkpointing off
# and on, then one profiled Swiftlet DPO step. Both time one optimizer step: a reference forward with the
# adapters off, the policy's forward and backward over chosen and rejected rows, AdamW.
# Carry bench/bin (bench/build.sh). Logs go to $OUT; the last lines are the median tok/s per setting.
#   ARCH=tinyllama BSZ=2 SEQ=2048 STEPS=6 REPEATS=2 bench/dpo-bench.sh   (DEVICE=cpu: a dry run of the script)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/swiftlet-dpo-bench}
mkdir -p "$out"
swiftlet=${SWIFTLET:-bench/bin/swiftlet}
[ -x $swiftlet ] || python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('$swiftlet.xz'), open('$swiftlet', 'wb'))"
chmod +x $swiftlet
arch=${ARCH:-tinyllama}; bsz=${BSZ:-2}; len=${SEQ:-2048}; steps=${STEPS:-6}; repeats=${REPEATS:-2}; device=${DEVICE:-cuda}
shape=(--arch $arch --seq $len --steps $steps --device $device)
for rep in $(seq 1 "$repeats"); do
  for gc in 0 1; do
    mode=off; [ $gc = 1 ] && mode=on
    timeout 300 python3 bench/dpo_baseline.py "${shape[@]}" --bsz $bsz --gc $gc 2>>"$out/baseline.err" | grep RESULT
    timeout 300 $swiftlet bench --objective dpo "${shape[@]}" --batch-size $bsz \
        --gradient-checkpointing $mode 2>>"$out/swiftlet.err" | grep RESULT
  done
done | tee "$out/dpo-bench.log"
timeout 300 $swiftlet bench --objective dpo "${shape[@]}" --batch-size $bsz --profile > "$out/dpo-profile.log" 2>&1
grep -v RESULT "$out/dpo-profile.log" | head -30
python3 - "$out/dpo-bench.log" <<'PY' | tee "$out/dpo-summary.log"
import json, statistics, sys
runs = [json.loads(l.split("RESULT", 1)[1]) for l in open(sys.argv[1]) if "RESULT" in l]
for gc in (0, 1):
    tok = {s: statistics.median(r["tok_s"] for r in runs if r["system"] == s and r["gc"] == gc)
           for s in {r["system"] for r in runs if r["gc"] == gc}}
    peak = {s: max(r["peak_gib"] for r in runs if r["system"] == s and r["gc"] == gc) for s in tok}
    ours = [s for s in tok if s.startswith("swiftlet")]
    ratio = f"  swiftlet/hf {tok[ours[0]] / tok['hf+peft']:.2f}x" if ours and "hf+peft" in tok else ""
    print(f"dpo gc={gc}: " + "  ".join(f"{s} {tok[s]:.0f} tok/s {peak[s]:.2f} GiB" for s in sorted(tok)) + ratio)
PY
