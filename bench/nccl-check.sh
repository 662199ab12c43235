#!/usr/bin/env bash
# Data-parallel training over real NCCL. On one GPU: world size 1 through NCCL (started as torchrun
# starts it, and by `--gpus 1`) must give the adapter of the plain run bit for bit (an all-reduce over
# one rank is a copy). With 2+ GPUs also: `--gpus 2` against one GPU with 2x accumulation (equal to
# rounding: NCCL sums in its own order, bf16 activations), tokens/s of 1 vs 2 GPUs at the same
# per-GPU batch, and the gradient all-reduce's time against the step's. Carry bench/bin (swiftlet
# or swiftlet.xz). Logs and RESULT lines go to $OUT.
#   MODEL=dir DATA=file   train on these instead of the built-in demo (the demo's tiny model says
#                         little about scaling); STEPS (default 30), BATCH (default 8) per GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/swiftlet-nccl}
mkdir -p "$out"
swiftlet=$PWD/bench/bin/swiftlet
[ -x $swiftlet ] || python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('$swiftlet.xz'), open('$swiftlet', 'wb'))"
chmod +x $swiftlet
steps=${STEPS:-30}; batch=${BATCH:-8}
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
# NVLink multicast (NVLS) stays off on the lent machines.
export NCCL_NVLS_ENABLE=0
# Bitwise comparisons across processes: our deterministic attention kernels (cuDNN's backward adds
# dQ with atomics).
export SWIFTLET_ATTENTION=swiftlet
echo "GPUs: $gpus" | tee "$out/summary.log"
# Where libnccl.so.2 is (the loader path, or pip's nvidia-nccl-cu12 next to torch).
python3 - <<'EOF' 2>&1 | tee -a "$out/summary.log"
import glob, ctypes, site, sys
paths = [p for s in site.getsitepackages() + [site.getusersitepackages()] for p in glob.glob(s + "/nvidia/nccl/lib/libnccl.so.2")]
try:
    ctypes.CDLL("libnccl.so.2"); print("libnccl.so.2: on the loader path")
except OSError:
    print("libnccl.so.2: " + (paths[0] if paths else "NOT FOUND (pip install nvidia-nccl-cu12, or set LD_LIBRARY_PATH)"))
EOF

# The training command: the demo, or MODEL/DATA.
if [ -n "${MODEL:-}" ]; then
  train=(train --model "$MODEL" --data "$DATA" --max-seq-length ${SEQ:-512})
else
  $swiftlet train --device cuda --max-steps 1 --output "$out/seed" > "$out/seed.log" 2>&1 || { echo "FAIL: demo seed run"; tail -5 "$out/seed.log"; exit 1; }
  d=$out/seed/demo-data
  train=(train --model $d/model --data $d/chat.jsonl --train-on-responses-only --lr 3e-3 --lora-alpha 32 --max-seq-length 96)
fi
common=(--device cuda --batch-size $batch --max-steps $steps --scheduler constant --logging-steps 1)

# Compares two adapters: bitwise, or the largest |a-b| relative to each tensor's largest value.
compare() {
python3 - "$1" "$2" "$3" <<'EOF'
import json, struct, sys, array
def load(p):
    b = open(p + "/adapter_model.safetensors", "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); d = b[8 + n:]; out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        s, e = v["data_offsets"]; a = array.array("f"); a.frombytes(d[s:e]); out[k] = a
    return out
name, x, y = sys.argv[1], load(sys.argv[2]), load(sys.argv[3])
assert x.keys() == y.keys(), "different tensors"
differing = sum(1 for k in x for a, b in zip(x[k], y[k]) if a != b)
worst = max(max(abs(a - b) for a, b in zip(x[k], y[k])) / (max(abs(b) for b in y[k]) or 1) for k in x)
print("RESULT " + json.dumps({"check": name, "bitwise_equal": differing == 0, "differing": differing,
                              "max_rel_to_tensor_max": worst}))
EOF
}
tokens_per_second() {
python3 - "$1" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
tokens = max(r.get("num_tokens", 0) for r in rows); runtime = [r["train_runtime"] for r in rows if "train_runtime" in r][-1]
print(f"{tokens / runtime:.0f}")
EOF
}

# The gradient all-reduce against the step (docs/PERFORMANCE.md, "Data parallel: the gradient all-reduce"):
# metrics.jsonl's allreduce_ms (timed between two stream syncs), the first step left out as warm-up.
allreduce() {
python3 - "$1" "$2" <<'EOF'
import json, re, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
steps = [r for r in rows if "allreduce_ms" in r][1:]
summary = [r for r in rows if "train_runtime" in r][-1]
step_ms = 1000 * summary["train_runtime"] / max(summary["step"], 1)
ms = sum(r["allreduce_ms"] for r in steps) / max(len(steps), 1)
m = re.search(r"(\d+) trainable", open(sys.argv[2]).read())
mb = int(m.group(1)) * 4 / 1e6 if m else None
print("RESULT " + json.dumps({"check": "gradient all-reduce", "gradient_mb": mb, "allreduce_ms_mean": round(ms, 3),
                              "step_ms_mean": round(step_ms, 1), "share": round(ms / step_ms, 4),
                              "algbw_gb_s": round(mb / ms, 1) if mb and ms else None}))
EOF
}

run() {  # name, extra arguments...; environment from the caller
  local name=$1; shift
  timeout 600 $swiftlet "${train[@]}" "${common[@]}" "$@" --output "$out/$name" > "$out/$name.log" 2>&1
  local rc=$?
  [ $rc = 0 ] || { echo "FAIL: $name exited $rc"; tail -5 "$out/$name.log"; }
  grep -E "data parallel|NCCL" "$out/$name.log" | head -2
  return $rc
}

# 1. World size 1 over NCCL equals the plain run, bit for bit.
run single && \
RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29517 run ws1-env && \
  compare "world size 1 (torchrun variables, NCCL) vs plain" "$out/ws1-env" "$out/single" | tee -a "$out/summary.log"
run ws1-gpus --gpus 1 && compare "--gpus 1 vs plain" "$out/ws1-gpus" "$out/single" | tee -a "$out/summary.log"
# The same over the TCP collective (rules NCCL in or out when the above fails).
SWIFTLET_COLLECTIVE=tcp RANK=0 WORLD_SIZE=1 MASTER_PORT=29518 run ws1-tcp && \
  compare "world size 1 (TCP collective) vs plain" "$out/ws1-tcp" "$out/single" | tee -a "$out/summary.log"

# 2. Two GPUs: the global batch of one GPU with 2x accumulation, and the speed-up.
if [ "$gpus" -ge 2 ]; then
  run accum2 --grad-accum 2 && run gpus2 --gpus 2 && \
    compare "--gpus 2 vs 1 GPU with --grad-accum 2" "$out/gpus2" "$out/accum2" | tee -a "$out/summary.log"
  one=$(tokens_per_second "$out/single"); two=$(tokens_per_second "$out/gpus2")
  python3 -c "import json; print('RESULT ' + json.dumps({'check': 'scaling', 'tokens_per_s_1gpu': $one, 'tokens_per_s_2gpu': $two, 'speedup': round($two / $one, 3)}))" \
    | tee -a "$out/summary.log"
  allreduce "$out/gpus2" "$out/gpus2.log" | tee -a "$out/summary.log"
  grep -E "^step $steps/" "$out/single.log" "$out/accum2.log" "$out/gpus2.log"
else
  echo "one GPU: the 2-GPU comparison and scaling need nvidia-h200-x2 or larger" | tee -a "$out/summary.log"
fi
grep -E "^step $steps/" "$out/single.log" "$out/ws1-env.log" 2>/dev/null

# 3. dpo (with --precompute-ref-logps: the reference batches split over the ranks) and orpo through
# the same launch: --gpus 1 bit for bit against the plain run; with 2+ GPUs, --gpus 2 against one GPU
# with 2x accumulation (to rounding). PAIRS=file with MODEL, else pairs of the demo task.
if [ -z "${MODEL:-}" ]; then
  pairs=$out/pairs.jsonl; pref_model=$d/model
  python3 - "$pairs" <<'EOF'
import json, random, sys
random.seed(3); rows = []
for _ in range(64):
    start, by = random.randrange(100), random.randrange(1, 4)
    count = lambda step: " ".join(str(start + k * step) for k in range(8))
    rows.append(json.dumps({"prompt": [{"role": "user", "content": f"Count by {by} from {start}."}],
                            "chosen": [{"role": "assistant", "content": count(by)}],
                            "rejected": [{"role": "assistant", "content": count(by + 1)}]}))
open(sys.argv[1], "w").write("\n".join(rows) + "\n")
EOF
else
  pairs=${PAIRS:-}; pref_model=$MODEL
fi
if [ -n "$pairs" ]; then
  for objective in dpo orpo; do
    extra=(); [ $objective = dpo ] && extra=(--precompute-ref-logps)
    train=($objective --model "$pref_model" --data "$pairs" --max-length ${SEQ:-96} --lr 1e-3 "${extra[@]}")
    run $objective-single && run $objective-gpus1 --gpus 1 && \
      compare "$objective --gpus 1 vs plain" "$out/$objective-gpus1" "$out/$objective-single" | tee -a "$out/summary.log"
    if [ "$gpus" -ge 2 ]; then
      run $objective-accum2 --grad-accum 2 && run $objective-gpus2 --gpus 2 && \
        compare "$objective --gpus 2 vs 1 GPU with --grad-accum 2" "$out/$objective-gpus2" "$out/$objective-accum2" | tee -a "$out/summary.log"
    fi
  done
else
  echo "MODEL without PAIRS: the dpo/orpo checks need a preference file" | tee -a "$out/summary.log"
fi
