#!/usr/bin/env bash
# Attention on the H200: PyTorch's SDPA backends (FlashAttention-2, cuDNN, memory-efficient) at the
# doctor's geometries, forward and backward (bench/attention_baseline.py), then Nsight Compute's
# summary of Swiftlet's own kernels in one TinyLlama-shaped training step (where ncu can read the
# counters). Carry bench/bin. Logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/swiftlet-attention}
mkdir -p "$out"
. bench/binary.sh
timeout 180 python3 bench/attention_baseline.py 2>&1 | tee "$out/attention-baseline.log" | grep RESULT
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$ncu" ] || { echo "no ncu"; exit 0; }
for kernel in flash_attention_forward_d64 flash_attention_backward_dq_d64 flash_attention_backward_dkdv_d64; do
  timeout 150 "$ncu" --clock-control none -k "$kernel" --launch-count 1 \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
      $swiftlet bench --arch tinyllama --steps 1 --warmup-steps 0 --device cuda --gradient-checkpointing off \
      > "$out/ncu-$kernel.log" 2>&1
  echo "ncu $kernel rc=$?"
  grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Theoretical Occupancy|Block Limit|Warp Cycles Per Issued|Issue Slots Busy|Shared Memory Configuration|Stall|Tensor|L1/TEX Hit|Bank" "$out/ncu-$kernel.log" | head -30
done
