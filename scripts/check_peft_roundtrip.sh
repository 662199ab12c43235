#!/usr/bin/env bash
# Trains an adapter with swiftlet on a fixture model, then checks that Python's PEFT loads it and
# gives the same eval loss as `swiftlet eval --json` (within 1e-5 relative).
# Usage: scripts/check_peft_roundtrip.sh [PYTHON] [SWIFTLET]   (PYTHON needs torch transformers peft)
# MODEL and TARGETS pick another fixture, e.g. a mixture of experts (experts and router as PEFT's
# target_parameters):  MODEL=Tests/SwiftletTests/Fixtures/mixtral_moe TARGETS=q_proj,k_proj,v_proj,o_proj,w1,w2,w3,gate
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3}
swiftlet=${2:-.build/release/swiftlet}
work=$(mktemp -d)
model=${MODEL:-Tests/SwiftletTests/Fixtures/mistral_window}
targets=${TARGETS:-q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj}
# 24 rows of random tokens (vocab 128) of varying length, some with masked prompts and padding.
"$python" - "$work/data.jsonl" <<'PY'
import json, random, sys
random.seed(0)
with open(sys.argv[1], "w") as f:
    for i in range(24):
        n = random.randint(6, 20)
        ids = [random.randrange(128) for _ in range(n)]
        row = {"input_ids": ids}
        if i % 3 == 0:
            row["labels"] = [-100] * (n // 2) + ids[n // 2:]
        if i % 4 == 1:
            pad = random.randint(1, 3)
            row["input_ids"] = ids + [0] * pad
            row["attention_mask"] = [1] * n + [0] * pad
            row["labels"] = ids + [-100] * pad
        f.write(json.dumps(row) + "\n")
PY
"$swiftlet" train --model "$model" --data "$work/data.jsonl" --output "$work/adapter" \
    --max-steps 10 --lr 1e-2 --lora-r 4 --lora-alpha 8 --target-modules "$targets" \
    --batch-size 4 --device cpu | tail -2
ours=$("$swiftlet" eval --model "$model" --adapter "$work/adapter" --data "$work/data.jsonl" --json --device cpu)
theirs=$("$python" scripts/peft_eval.py --model "$model" --adapter "$work/adapter" --data "$work/data.jsonl")
base=$("$python" scripts/peft_eval.py --model "$model" --data "$work/data.jsonl")
echo "swiftlet eval:      $ours"
echo "PEFT eval:          $theirs"
echo "base model (PEFT):  $base"
"$python" - "$ours" "$theirs" "$base" <<'PY'
import json, sys
ours, theirs, base = (json.loads(s) for s in sys.argv[1:])
assert ours["tokens"] == theirs["tokens"], (ours, theirs)
rel = abs(ours["loss"] - theirs["loss"]) / abs(theirs["loss"])
assert rel < 1e-5, f"loss differs: relative {rel}"
assert theirs["loss"] < base["loss"] - 0.1, "the adapter should have lowered the loss"
print(f"OK: PEFT loads the swiftlet adapter; eval loss agrees to {rel:.2e} relative")
PY
