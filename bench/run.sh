#!/usr/bin/env bash
# Run on the GPU machine from the repository root, with bench/bin (bench/build.sh) and bench/carry
# (a copy of the baseline scripts, hf_peft.py) carried along:
#   doctor (every op against the CPU, the training step on the fixtures), the exactness comparison
#   against PyTorch + PEFT at a real size, then baseline and Swiftlet interleaved and repeated, and a
#   ratio table. ARCHS (default "tinyllama"), REPEATS (2) and STEPS (8) choose the runs; FOURBIT=1
#   benchmarks QLoRA (NF4 base) on both sides. STAGES (default "doctor compare train bench") picks
#   stages; also "issue7" (bench/issue7.sh: issue 7's rows beside their baselines, and the table of
#   ratios against the targets), "adamw8bit" (8-bit AdamW against bitsandbytes' CUDA kernel) and "qlora" (NF4 bytes
#   and the QLoRA training step against transformers + PEFT + bitsandbytes), which need
#   bench/carry/bnb (../shared/bench/get-bitsandbytes.sh bench/carry/bnb).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/swiftlet-bench}
mkdir -p "$out"
. bench/binary.sh
baseline=bench/carry/hf_peft.py
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader | tee "$out/gpu.txt"
stages=" ${STAGES:-doctor compare train bench} "
has() { [[ "$stages" == *" $1 "* ]]; }
if has issue7; then
echo "== issue 7: each row beside its baseline, and the targets"
OUT=$out/issue7 bash bench/issue7.sh 2>&1 | grep -E "^==|^\||^targets"
fi
if has adamw8bit; then
echo "== 8-bit AdamW against bitsandbytes' CUDA kernel"
(cd scripts && timeout 300 python3 check_adamw8bit_bnb.py ../$swiftlet --fixture /tmp/adamw8bit_cuda.safetensors) 2>&1 | grep -v Warning | tee "$out/adamw8bit.log"
fi
if has qlora; then
echo "== QLoRA: bytes and training step against transformers + PEFT + bitsandbytes"
PYTHONUNBUFFERED=1 timeout 400 python3 scripts/check_qlora_peft.py --swiftlet $swiftlet --arch ${COMPARE_ARCH:-tinyllama} \
    --work /tmp/swiftlet-qlora 2>&1 | grep -v Warning | tee "$out/qlora.log"
fi
if has doctor; then
echo "== doctor"
timeout 300 $swiftlet doctor --fixtures Tests/SwiftletTests/Fixtures 2>&1 | tee "$out/doctor.log"
fi
if has compare; then
echo "== exactness against PyTorch + PEFT"
mkdir -p /tmp/swiftlet-compare
PYTHONUNBUFFERED=1 timeout 300 python3 scripts/compare_hf_gpu.py --swiftlet $swiftlet --arch ${COMPARE_ARCH:-tinyllama} --cpu ${COMPARE_CPU:-0} \
    --work /tmp/swiftlet-compare 2>&1 | grep -v Warning | tee "$out/compare.log"
fi
if has train; then
echo "== training on the GPU: the TinyLlama-shape model learns to count (strides 1-3)"
python3 -c "
import json, random
random.seed(0)
with open('/tmp/swiftlet-count.jsonl', 'w') as f:
    for _ in range(512):
        s, d = random.randrange(32000), random.choice([1, 2, 3])
        f.write(json.dumps({'input_ids': [(s + i * d) % 32000 for i in range(256)]}) + chr(10))
"
timeout 300 $swiftlet train --model /tmp/swiftlet-compare/model --data /tmp/swiftlet-count.jsonl --device cuda \
    --max-steps ${TRAIN_STEPS:-100} --batch-size 8 --lr 1e-3 --warmup-steps 5 --output /tmp/swiftlet-adapter 2>&1 | tee "$out/train.log"
fi
if has bench; then
echo "== benchmarks"
fourbit=${FOURBIT:-0}
four=(); [ "$fourbit" = 1 ] && four=(--load-in-4bit)
for arch in ${ARCHS:-tinyllama}; do
  for rep in $(seq ${REPEATS:-2}); do
    # families that are not LlamaForCausalLM have their own baseline (the same loop and keys)
    base=$baseline; case $arch in qwen3-*|phi3-*|gemma2-*|mixtral-*) base=bench/hf_peft_family.py ;; esac
    timeout 300 python3 $base --arch "$arch" --steps ${STEPS:-8} --gc 1 --fourbit $fourbit 2>/dev/null | grep RESULT
    timeout 300 python3 $base --arch "$arch" --steps ${STEPS:-8} --gc 0 --fourbit $fourbit 2>/dev/null | grep RESULT
    timeout 300 $swiftlet bench --arch "$arch" --steps ${STEPS:-8} --device cuda "${four[@]}" --profile > "$out/swiftlet-$arch-$rep.log" 2>&1
    grep RESULT "$out/swiftlet-$arch-$rep.log"
    timeout 300 $swiftlet bench --arch "$arch" --steps ${STEPS:-8} --device cuda "${four[@]}" --gradient-checkpointing on 2>&1 | grep RESULT
    timeout 300 $swiftlet bench --arch "$arch" --steps ${STEPS:-8} --device cuda "${four[@]}" --gradient-checkpointing offload 2>&1 | grep RESULT
  done
done | tee "$out/bench.log"
python3 - "$out/bench.log" <<'PY'
import json, sys, statistics
rows = [json.loads(l.split("RESULT", 1)[1]) for l in open(sys.argv[1]) if "RESULT" in l]
print("\n| arch | system | gc (2 = offload) | 4-bit | tok/s (median of runs) | peak GiB | Swiftlet / this |")
print("|---|---|---|---|---|---|---|")
for arch in dict.fromkeys(r["arch"] for r in rows):
    groups = {}
    for r in rows:
        if r["arch"] == arch:
            groups.setdefault((r["system"], r["gc"] + r.get("offload", 0), r.get("fourbit", 0)), []).append(r)
    ours = [v for (s, g, f), v in groups.items() if s.startswith("swiftlet")]
    ours_tok = statistics.median(x["tok_s"] for x in ours[0]) if ours else None
    for (system, gc, fourbit), runs in groups.items():
        tok = statistics.median(x["tok_s"] for x in runs)
        peak = max(x["peak_gib"] for x in runs)
        ratio = f"{ours_tok / tok:.2f}x" if ours_tok else "-"
        print(f"| {arch} | {system} | {gc} | {fourbit} | {tok:,.0f} ({', '.join(f'{x['tok_s']:,.0f}' for x in runs)}) | {peak} | {ratio} |")
PY
echo "== per-op profile of one Swiftlet step"
cat "$out"/swiftlet-*-1.log | grep -v RESULT
fi
