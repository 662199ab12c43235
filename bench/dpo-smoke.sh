#!/usr/bin/env bash
# A small GPU smoke test of the training loop after changes to it: the demo (SFT), a DPO run on
# preference pairs built from the demo task (with a checkpoint and a resume), an ORPO run, all on CUDA, and
# greedy generation (CUDA = CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/swiftlet-smoke}
mkdir -p "$out"
. bench/binary.sh
work=$(mktemp -d)
$swiftlet train --device cuda --max-steps 60 --output "$work/sft" | tail -3
python3 - "$work" <<'PY'
import json, random, sys
random.seed(0)
with open(sys.argv[1] + "/prefs.jsonl", "w") as f:
    for _ in range(64):
        s, k = random.randint(1, 50), random.choice([2, 3])
        count = lambda d: " ".join(str(s + d * j) for j in range(5))
        f.write(json.dumps({"prompt": [{"role": "user", "content": f"Count by {k} from {s}."}],
                            "chosen": [{"role": "assistant", "content": count(k)}],
                            "rejected": [{"role": "assistant", "content": count(k + 1)}]}) + "\n")
PY
$swiftlet dpo --device cuda --model "$work/sft/demo-data/model" --adapter "$work/sft" --data "$work/prefs.jsonl" \
    --max-steps 10 --lr 5e-4 --batch-size 8 --save-steps 5 --output "$work/dpo" | tail -2
$swiftlet dpo --device cuda --model "$work/sft/demo-data/model" --adapter "$work/sft" --data "$work/prefs.jsonl" \
    --max-steps 20 --lr 5e-4 --batch-size 8 --output "$work/dpo" --resume | tail -2
cp "$work/dpo/metrics.jsonl" "$out/dpo-metrics.jsonl"
# The reference log-probs scored once before training (--precompute-ref-logps), on CUDA.
$swiftlet dpo --device cuda --model "$work/sft/demo-data/model" --adapter "$work/sft" --data "$work/prefs.jsonl" \
    --max-steps 10 --lr 5e-4 --batch-size 8 --precompute-ref-logps --output "$work/dpo-pre" | tail -2
$swiftlet orpo --device cuda --model "$work/sft/demo-data/model" --adapter "$work/sft" --data "$work/prefs.jsonl" \
    --eval-data "$work/prefs.jsonl" --max-steps 10 --lr 5e-4 --batch-size 8 --output "$work/orpo" | tail -3
cp "$work/orpo/metrics.jsonl" "$out/orpo-metrics.jsonl"
# Generation from the trained demo adapter: CUDA's greedy text must equal the CPU's.
gen=(generate --model "$work/sft/demo-data/model" --adapter "$work/sft" --chat --prompt "Count by 3 from 14." --max-new-tokens 24)
$swiftlet "${gen[@]}" --device cpu > "$out/generate-cpu.txt" 2> "$out/generate-cpu.err"
$swiftlet "${gen[@]}" --device cuda > "$out/generate-cuda.txt" 2> "$out/generate-cuda.err"
cat "$out/generate-cuda.txt" "$out/generate-cuda.err"
cmp -s "$out/generate-cpu.txt" "$out/generate-cuda.txt" && echo "generate: CUDA greedy = CPU greedy" || echo "generate: CUDA and CPU greedy DIFFER"
# The adapter merged into the weights on load (--merge-adapter), on CUDA: the same greedy text.
$swiftlet "${gen[@]}" --device cuda --merge-adapter > "$out/generate-cuda-merged.txt" 2> "$out/generate-cuda-merged.err"
cmp -s "$out/generate-cpu.txt" "$out/generate-cuda-merged.txt" && echo "generate: CUDA merged greedy = CPU greedy" || echo "generate: CUDA merged and CPU greedy DIFFER"
